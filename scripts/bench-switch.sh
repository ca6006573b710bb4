#!/usr/bin/env bash
# bench-switch: the load generator against `switch run --demo` (two bank simulators in the switch's process)
# and, in the same run, against a bank simulator alone (the no-switch ceiling). Each runs as its own process.
# Prints a summary table (median of REPEAT runs per setting); the JSON reports stay in OUT.
#
# Environment: TERMINALS (64), DURATION (10s), RATES ("2000 10000", open-loop rates; empty: none),
# REPEAT (3), MIX (purchase=100), OUT (a new temporary folder), PROFILE=1 (CPU profile of the switch
# process, via SWITCH_CPUPROFILE, summarised with go tool pprof), GO (go).
set -euo pipefail

TERMINALS=${TERMINALS:-64}
DURATION=${DURATION:-10s}
RATES=${RATES-2000 10000}
REPEAT=${REPEAT:-3}
MIX=${MIX:-purchase=100}
GO=${GO:-go}
OUT=${OUT:-$(mktemp -d -t bench-switch.XXXXXX)}
mkdir -p "$OUT"
BIN=bin/switch

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# field LOGFILE PATTERN COLUMN: the COLUMN-th word of the first line of LOGFILE matching PATTERN, waiting up
# to 30 s for it to appear.
field() {
  for _ in $(seq 300); do
    v=$(awk -v pat="$2" -v col="$3" '$0 ~ pat { print $col; exit }' "$1" 2>/dev/null || true)
    if [ -n "$v" ]; then echo "$v"; return; fi
    sleep 0.1
  done
  echo "bench-switch: no line matching '$2' in $1" >&2
  cat "$1" >&2
  exit 1
}

# wait_http URL: until URL answers 200 (30 s at most).
wait_http() {
  for _ in $(seq 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "bench-switch: $1 never became ready" >&2
  exit 1
}

# jnum FILE KEY: the number of "KEY": in an indented JSON report (the first occurrence; null -> empty).
jnum() {
  sed -n "s/^ *\"$2\": \([-0-9.e+]*\),\{0,1\}\$/\1/p" "$1" | head -n 1
}

# median of the numbers on standard input (empty when there are none).
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# loadtest NAME ARGS...: REPEAT runs of the load generator, reports in OUT/NAME-i.json.
loadtest() {
  local name=$1
  shift
  for i in $(seq "$REPEAT"); do
    echo "== $name run $i/$REPEAT" >&2
    "$BIN" loadtest --terminals "$TERMINALS" --duration "$DURATION" --mix "$MIX" --json "$OUT/$name-$i.json" "$@" \
      > "$OUT/$name-$i.txt"
    sed 's/^/   /' "$OUT/$name-$i.txt" >&2
  done
}

# stat NAME KEY: the median of KEY over the runs of NAME.
stat() {
  for f in "$OUT/$1"-*.json; do jnum "$f" "$2"; done | median
}

echo "== building $BIN" >&2
"$GO" build -o "$BIN" ./cmd/switch

# 1. The ceiling: the bank simulator alone, driven with the host spec.
"$BIN" sim bank --listen 127.0.0.1:0 --control 127.0.0.1:0 --spec iso87-ascii > "$OUT/bank.log" 2>&1 &
pids+=($!)
bank=$(field "$OUT/bank.log" "listening on" 6)
bankctl=$(field "$OUT/bank.log" "^control on" 3)
wait_http "$bankctl/metrics"
loadtest ceiling --target "$bank" --spec iso87-ascii --max --metrics "$bankctl/metrics"
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
pids=()

# 2. The switch: the demo with TERMINALS load-test terminals (LT000001...).
profile=""
if [ "${PROFILE:-}" = 1 ]; then profile="$OUT/switch.cpu.pprof"; fi
mkdir -p "$OUT/demo"
SWITCH_CPUPROFILE=$profile "$BIN" run --demo --load-terminals "$TERMINALS" --dir "$OUT/demo" \
  --pos 127.0.0.1:0 --rail 127.0.0.1:0 --admin 127.0.0.1:0 > "$OUT/switch.log" 2> "$OUT/switch.err" &
pids+=($!)
pos=$(field "$OUT/switch.log" "^channel pos" 3)
admin=$(field "$OUT/switch.log" "^admin" 2)
wait_http "$admin/readyz"
loadtest closed --target "$pos" --spec cup-pos --max --metrics "$admin/metrics"
for r in $RATES; do
  loadtest "open-$r" --target "$pos" --spec cup-pos --rate "$r" --metrics "$admin/metrics"
done
kill -TERM "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
pids=()

# 3. The summary.
ceiling_tps=$(stat ceiling tps)
bank_cpu=$(stat ceiling cpu_us_per_txn)
{
  echo
  echo "bench-switch: $TERMINALS terminals, $DURATION per run, mix $MIX, median of $REPEAT runs (reports in $OUT)"
  printf '%-14s %10s %9s %9s %12s %14s %9s %9s\n' setting tps p50_ms p99_ms cpu_us/txn switch_est_us ratio invalid
  for name in ceiling closed $(for r in $RATES; do echo "open-$r"; done); do
    tps=$(stat "$name" tps)
    cpu=$(stat "$name" cpu_us_per_txn)
    bad=$(for f in "$OUT/$name"-*.json; do
      echo $(($(jnum "$f" timeouts) + $(jnum "$f" errors) + $(jnum "$f" invalid) + $(jnum "$f" sign_on_failures)))
    done | median)
    awk -v n="$name" -v tps="$tps" -v p50="$(stat "$name" p50)" -v p99="$(stat "$name" p99)" -v cpu="$cpu" \
      -v bank="$bank_cpu" -v ceil="$ceiling_tps" -v bad="$bad" 'BEGIN {
        est = (n == "ceiling" || cpu == "" || bank == "") ? "-" : sprintf("%.1f", cpu - bank)
        printf "%-14s %10.0f %9.3f %9.3f %12.1f %14s %9.2f %9d\n", n, tps, p50, p99, cpu, est, tps / ceil, bad
      }'
  done
  echo
  echo "ceiling: the bank simulator alone (iso87-ascii, closed loop); ratio: tps / ceiling tps."
  echo "cpu_us/txn: the target process's CPU per reply. The demo's switch process also runs its two bank"
  echo "simulators, so its figure includes theirs; switch_est_us subtracts the bank simulator's own CPU per"
  echo "transaction from the ceiling run (a rough estimate: through the switch the bank also checks a PIN"
  echo "and a MAC). invalid: timeouts + errors + invalid replies + failed sign-ons (median per run)."
  echo "The demo journals with fsync on."
} | tee "$OUT/summary.txt"

if [ -n "$profile" ]; then
  "$GO" tool pprof -top -nodecount=30 "$BIN" "$profile" > "$OUT/switch.cpu.top" 2>/dev/null
  echo
  echo "CPU profile of the switch process: $profile (top 30 in $OUT/switch.cpu.top)"
  head -n 20 "$OUT/switch.cpu.top"
fi
