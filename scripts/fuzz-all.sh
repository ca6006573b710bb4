#!/usr/bin/env bash
# Runs every fuzz target of the module for the given time each (default 5m): go test -fuzz takes one target
# per run, so this lists them and runs them one after another. Failures leave their input in testdata/fuzz.
# FUZZPKGS narrows the packages (default ./...).
set -euo pipefail
time=${1:-5m}
status=0
for pkg in $(go list ${FUZZPKGS:-./...}); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== $pkg $target ($time)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"; then status=1; fi
  done
done
exit $status
