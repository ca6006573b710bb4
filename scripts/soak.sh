#!/usr/bin/env bash
# soak: the switch on the demo's configuration (journal without fsync) with two bank simulators (`switch sim
# bank`) under an open-loop load of RATE purchases a second for DURATION from `switch loadtest`, each in its
# own process.
# Every INTERVAL the switch's admin /metrics is sampled into OUT/soak.csv (resident memory, Go heap,
# goroutines, open files, CPU, requests, journal and reversal queue backlogs); at the end a summary (achieved
# rate, latency, errors, memory and goroutines min/max/last) goes to standard output and OUT/summary.txt.
#
# Environment: RATE (10000), DURATION (30m), TERMINALS (100), INTERVAL (10, seconds), PAN (the card of every
# purchase; default the load generator's, the demo's bank A test card: the bank simulators run without rules,
# so they approve every purchase however long the run), OUT (a new temporary folder), KEEP=1 keeps the
# demo's journal and postings (they grow by about 1 KB a purchase), GO (go), BIN (bin/switch).
# Exit status: 0 when the run completed without errors, timeouts or invalid replies, 1 otherwise.
set -euo pipefail

RATE=${RATE:-10000}
DURATION=${DURATION:-30m}
TERMINALS=${TERMINALS:-100}
INTERVAL=${INTERVAL:-10}
PAN=${PAN:-}
GO=${GO:-go}
BIN=${BIN:-bin/switch}
OUT=${OUT:-$(mktemp -d -t soak.XXXXXX)}
KEEP=${KEEP:-}
mkdir -p "$OUT"

ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -z "$KEEP" ]; then rm -rf "$OUT/demo/journal" "$OUT/demo/postings.jsonl"; fi
}
trap cleanup EXIT

# field LOGFILE PATTERN COLUMN: the COLUMN-th word of the first line of LOGFILE matching PATTERN (30 s wait).
field() {
  for _ in $(seq 300); do
    v=$(awk -v pat="$2" -v col="$3" '$0 ~ pat { print $col; exit }' "$1" 2>/dev/null || true)
    if [ -n "$v" ]; then echo "$v"; return; fi
    sleep 0.1
  done
  echo "soak: no line matching '$2' in $1" >&2
  cat "$1" >&2
  exit 1
}

# jnum FILE KEY: the number of the first "KEY": in an indented JSON report.
jnum() {
  sed -n "s/^ *\"$2\": \([-0-9.e+]*\),\{0,1\}\$/\1/p" "$1" | head -n 1
}

echo "== building $BIN" >&2
"$GO" build -o "$BIN" ./cmd/switch

# The configuration: `switch run --demo --no-fsync` writes the demo's files, a fresh LMK and key store, and is
# stopped at once; its routes are then pointed at two bank simulators of their own processes, so that the
# switch's figures are its own (the demo runs its banks inside the switch's process). Their zone keys are the
# demo's (published test vectors, server/demo.go); without rules they approve every purchase.
demo="$OUT/demo"
mkdir -p "$demo"
"$BIN" run --demo --no-fsync --load-terminals "$TERMINALS" --dir "$demo" \
  --pos 127.0.0.1:0 --rail 127.0.0.1:0 --kiosk 127.0.0.1:0 --admin 127.0.0.1:0 > "$OUT/setup.log" 2>&1 &
setup_pid=$!
pids+=("$setup_pid")
field "$OUT/setup.log" "^admin" 2 > /dev/null
demo_a=$(field "$OUT/setup.log" "^bank A" 4)
demo_b=$(field "$OUT/setup.log" "^bank B" 4)
kill -TERM "$setup_pid"
wait "$setup_pid" 2>/dev/null || true
pids=()
rm -rf "$demo/journal" "$demo/reversals" "$demo/state" "$demo/postings.jsonl"

zone_a=0123456789ABCDEFFEDCBA9876543210
zone_b=70F2A84CCBC2AE8625CBB0F2C22AB923
bank_addrs=()
for z in "$zone_a" "$zone_b"; do
  n=${#bank_addrs[@]}
  SIM_BANK_ZPK=$z SIM_BANK_ZAK=$z SIM_BANK_ZMK=$z "$BIN" sim bank --listen 127.0.0.1:0 --spec iso87-ascii \
    > "$OUT/bank-$n.log" 2>&1 &
  pids+=($!)
  bank_addrs+=("$(field "$OUT/bank-$n.log" "listening on" 6)")
done
sed -i -e "s/$demo_a/${bank_addrs[0]}/" -e "s/$demo_b/${bank_addrs[1]}/" "$demo/routes.yaml"
grep -q "${bank_addrs[0]}" "$demo/routes.yaml" && grep -q "${bank_addrs[1]}" "$demo/routes.yaml" ||
  { echo "soak: could not point $demo/routes.yaml at the bank simulators" >&2; exit 1; }
grep -q 'journal: {dir: journal, fsync: false}' "$demo/config.yaml" ||
  { echo "soak: $demo/config.yaml does not journal without fsync" >&2; exit 1; }

SWITCH_ADMIN_TOKEN=${SWITCH_ADMIN_TOKEN:-demo-admin-token} "$BIN" run --config "$demo/config.yaml" \
  > "$OUT/switch.log" 2> "$OUT/switch.err" &
switch_pid=$!
pids+=("$switch_pid")
pos=$(field "$OUT/switch.log" "^channel pos" 3)
admin=http://$(field "$OUT/switch.log" "^admin" 2 | sed 's,^http://,,')
for _ in $(seq 300); do
  if curl -fsS -o /dev/null "$admin/readyz" 2>/dev/null; then break; fi
  sleep 0.1
done
curl -fsS -o /dev/null "$admin/readyz" || { echo "soak: the switch never became ready" >&2; exit 1; }

# sample T0: one CSV line of the switch's metrics, T0 the run's start in epoch seconds. cpu_pct is the
# switch's CPU over the last interval (100 = one core).
csv="$OUT/soak.csv"
echo "t_s,rss_mb,heap_alloc_mb,heap_inuse_mb,gc_goal_mb,goroutines,open_fds,cpu_pct,requests_total,journal_unshipped_bytes,saf_depth" > "$csv"
prev_cpu=""
prev_t=""
sample() {
  local now m
  now=$(date +%s.%N)
  m=$(curl -fsS --max-time 5 "$admin/metrics" 2>/dev/null) || { echo "soak: /metrics did not answer" >&2; return; }
  echo "$m" | awk -v t="$now" -v t0="$1" -v pcpu="$prev_cpu" -v pt="$prev_t" '
    /^process_resident_memory_bytes / { rss = $2 }
    /^go_memstats_heap_alloc_bytes / { ha = $2 }
    /^go_memstats_heap_inuse_bytes / { hi = $2 }
    /^go_memstats_next_gc_bytes / { goal = $2 }
    /^go_goroutines / { g = $2 }
    /^process_open_fds / { fds = $2 }
    /^process_cpu_seconds_total / { cpu = $2 }
    /^railswitch_channel_requests_total/ { req += $NF }
    /^railswitch_journal_unshipped_bytes/ { unsh += $NF }
    /^railswitch_saf_depth/ { saf += $NF }
    END {
      pct = (pcpu != "" && t > pt) ? sprintf("%.1f", 100 * (cpu - pcpu) / (t - pt)) : ""
      printf "%.0f,%.1f,%.1f,%.1f,%.1f,%d,%d,%s,%d,%d,%d\n", t - t0, rss / 1048576, ha / 1048576, hi / 1048576, goal / 1048576, g, fds, pct, req, unsh, saf
      printf "%s %s\n", cpu, t > "/dev/stderr"
    }' >> "$csv" 2> "$OUT/.cpu"
  read -r prev_cpu prev_t < "$OUT/.cpu" || true
}

t0=$(date +%s.%N)
sample "$t0"
echo "== soak: $RATE/s for $DURATION, $TERMINALS terminals, switch pid $switch_pid, samples every ${INTERVAL}s in $csv" >&2
"$BIN" loadtest --target "$pos" --spec cup-pos --terminals "$TERMINALS" --rate "$RATE" --duration "$DURATION" \
  ${PAN:+--pan "$PAN"} --metrics "$admin/metrics" --json "$OUT/loadtest.json" > "$OUT/loadtest.txt" 2>&1 &
load_pid=$!
pids+=("$load_pid")
while kill -0 "$load_pid" 2>/dev/null; do
  for _ in $(seq "$((INTERVAL * 10))"); do
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.1
  done
  sample "$t0"
done
load_rc=0
wait "$load_pid" || load_rc=$?
sample "$t0"
du_demo=$(du -sm "$demo" | awk '{ print $1 }')
kill -TERM "$switch_pid"
switch_rc=0
wait "$switch_pid" || switch_rc=$?

f="$OUT/loadtest.json"
if [ ! -s "$f" ]; then
  echo "soak: the load generator wrote no report (exit $load_rc):" >&2
  cat "$OUT/loadtest.txt" >&2
  exit 1
fi
sent=$(jnum "$f" sent)
completed=$(jnum "$f" completed)
timeouts=$(jnum "$f" timeouts)
errors=$(jnum "$f" errors)
invalid=$(jnum "$f" invalid)
approved=$(sed -n 's/^ *"00": \([0-9]*\),\{0,1\}$/\1/p' "$f" | head -n 1)
# stats COLUMN: min max last of a CSV column (rows with a value; the first row is before the load).
stats() {
  awk -F, -v c="$1" 'NR > 1 && $c != "" { v = $c + 0; if (n == 0 || v < mn) mn = v; if (v > mx) mx = v; last = v; n++ }
    END { if (n) printf "min %s, max %s, last %s", mn, mx, last; else printf "no samples" }' "$csv"
}
{
  echo
  echo "soak: $RATE/s asked for $DURATION, $TERMINALS terminals, journal fsync off (files in $OUT)"
  printf 'achieved    %.0f purchases/s over %ss (%s sent, %s answered, %s approved)\n' "$(jnum "$f" tps)" \
    "$(jnum "$f" duration_s)" "$sent" "$completed" "${approved:-0}"
  printf 'latency     p50 %s ms, p99 %s ms, p99.9 %s ms, max %s ms\n' "$(jnum "$f" p50)" "$(jnum "$f" p99)" \
    "$(jnum "$f" p999)" "$(jnum "$f" max)"
  echo "errors      timeouts $timeouts, errors $errors, invalid $invalid, declined $((completed - ${approved:-0}))"
  echo "rss_mb      $(stats 2)"
  echo "heap_mb     $(stats 3) (heap alloc)"
  echo "gc_goal_mb  $(stats 5) (next GC target: about twice the live heap)"
  echo "goroutines  $(stats 6)"
  echo "open_fds    $(stats 7)"
  echo "cpu_pct     $(stats 8)"
  echo "disk        ${du_demo} MB in the demo folder at the end (journal and postings.jsonl)"
  echo "exit        loadtest $load_rc, switch $switch_rc (graceful stop)"
} | tee "$OUT/summary.txt"

if [ "$load_rc" != 0 ] || [ "$switch_rc" != 0 ] || [ "$timeouts" != 0 ] || [ "$errors" != 0 ] || [ "$invalid" != 0 ]; then
  exit 1
fi
