#!/usr/bin/env bash
# bench-switch: the load generator against `switch run --demo` (two bank simulators in the switch's process)
# and, in the same run, against a bank simulator alone (the no-switch ceiling). Each runs as its own process.
# Prints a summary table (median of REPEAT runs per setting); the JSON reports stay in OUT.
#
# Environment: TERMINALS (64), DURATION (10s), RATES ("2000 10000", open-loop rates; empty: none),
# REPEAT (3), MIX (purchase=100), FSYNC (both: the demo's journal with fsync on and off, each its own switch;
# or on, or off), OUT (a new temporary folder), PROFILE=1 (CPU profiles of the switch process, via
# SWITCH_CPUPROFILE: the closed loop and the open loops then run on switch processes of their own, and each
# profile is split between the switch's own code, the demo's in-process bank simulators and the garbage
# collector's background workers, see profile_split), GO (go).
# CONNS=N (e.g. 10000) adds one run with N terminals, each on its own connection: CONNS_RATE (2000; "max" for
# closed loop), CONNS_DURATION (DURATION), journal fsync off unless FSYNC=on. It reports whether every terminal
# signed on and stayed connected, and the switch's resident memory.
# SWITCH_BIN=FILE runs that binary instead of building bin/switch (to compare two builds under the same load).
# REPORT_ONLY=1 runs nothing and prints the summary of the reports already in OUT (same FSYNC, RATES, CONNS).
set -euo pipefail

TERMINALS=${TERMINALS:-64}
DURATION=${DURATION:-10s}
RATES=${RATES-2000 10000}
REPEAT=${REPEAT:-3}
MIX=${MIX:-purchase=100}
GO=${GO:-go}
FSYNC=${FSYNC:-both}
CONNS=${CONNS:-}
CONNS_RATE=${CONNS_RATE:-2000}
CONNS_DURATION=${CONNS_DURATION:-$DURATION}
OUT=${OUT:-$(mktemp -d -t bench-switch.XXXXXX)}
mkdir -p "$OUT"
BIN=${SWITCH_BIN:-bin/switch}
case $FSYNC in
  both) FSYNCS="on off" ;;
  on | off) FSYNCS=$FSYNC ;;
  *) echo "bench-switch: FSYNC must be on, off or both" >&2; exit 2 ;;
esac

# Every terminal holds a connection in the load generator and in the switch: raise the open-file limit for
# both (the switch, a Go program, also raises its own soft limit to the hard one at start).
ulimit -n "$(ulimit -Hn)"
if [ -n "$CONNS" ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
  echo "bench-switch: open-file limit $(ulimit -n) is too low for CONNS=$CONNS" >&2
  exit 2
fi

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

if [ -n "${REPORT_ONLY:-}" ]; then
  :
elif [ -z "${SWITCH_BIN:-}" ]; then
  echo "== building $BIN" >&2
  "$GO" build -o "$BIN" ./cmd/switch
fi

# 1. The ceiling: the bank simulator alone, driven with the host spec.
if [ -z "${REPORT_ONLY:-}" ]; then
  "$BIN" sim bank --listen 127.0.0.1:0 --control 127.0.0.1:0 --spec iso87-ascii > "$OUT/bank.log" 2>&1 &
  pids+=($!)
  bank=$(field "$OUT/bank.log" "listening on" 6)
  bankctl=$(field "$OUT/bank.log" "^control on" 3)
  wait_http "$bankctl/metrics"
  loadtest ceiling --target "$bank" --spec iso87-ascii --max --metrics "$bankctl/metrics"
  kill "${pids[0]}"
  wait "${pids[0]}" 2>/dev/null || true
  pids=()
fi

# start_switch NAME FSYNC N: the demo with N load-test terminals (LT000001...), its journal fsync on or off,
# files in OUT/NAME; sets pos and admin.
start_switch() {
  local nofsync=""
  if [ "$2" = off ]; then nofsync=--no-fsync; fi
  mkdir -p "$OUT/$1"
  SWITCH_CPUPROFILE=$profile "$BIN" run --demo $nofsync --load-terminals "$3" --dir "$OUT/$1" \
    --pos 127.0.0.1:0 --rail 127.0.0.1:0 --kiosk 127.0.0.1:0 --admin 127.0.0.1:0 \
    > "$OUT/$1.log" 2> "$OUT/$1.err" &
  pids+=($!)
  pos=$(field "$OUT/$1.log" "^channel pos" 3)
  admin=$(field "$OUT/$1.log" "^admin" 2)
  wait_http "$admin/readyz"
}

stop_switch() {
  kill -TERM "${pids[0]}"
  wait "${pids[0]}" 2>/dev/null || true
  pids=()
}

# rss: the switch's resident memory in MB, from its /metrics.
rss() {
  curl -fsS "$admin/metrics" | awk '/^process_resident_memory_bytes / { printf "%.0f", $2 / 1048576 }'
}

# profile_split PROFILE: the shares of the profile's CPU samples, "switch bank gc": samples with a frame in
# simulators/bank are the demo's bank simulators' (they run in the switch's process); samples of the garbage
# collector's background workers (gcBgMarkWorker, bgsweep, bgscavenge) are the GC's, which both allocate
# into; the rest is the switch's own.
profile_split() {
  "$GO" tool pprof -raw "$BIN" "$1" 2>/dev/null | awk '
    /^Samples:/ { sec = "s"; next }
    /^Locations/ { sec = "l"; next }
    /^Mappings/ { sec = "m"; next }
    sec == "s" && $2 ~ /:$/ { n++; v[n] = $2 + 0; st[n] = ""; for (i = 3; i <= NF; i++) st[n] = st[n] " " $i; next }
    sec == "l" && $1 ~ /^[0-9]+:$/ { id = $1 + 0; f = $4 }
    sec == "l" && $1 !~ /^[0-9]+:$/ { f = $1 }
    sec == "l" {
      if (f ~ /simulators\/bank/) bank[id] = 1
      if (f ~ /^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)/) gc[id] = 1
    }
    END {
      for (i = 1; i <= n; i++) {
        k = split(st[i], ids, " "); c = "sw"
        for (j = 1; j <= k; j++) if (ids[j] in bank) { c = "bank"; break }
        if (c == "sw") for (j = 1; j <= k; j++) if (ids[j] in gc) { c = "gc"; break }
        t[c] += v[i]; tot += v[i]
      }
      if (tot) printf "%.4f %.4f %.4f\n", t["sw"] / tot, t["bank"] / tot, t["gc"] / tot
    }'
}

# 2. The switch, once per FSYNC setting; with PROFILE=1 the closed loop and the open loops each on a switch
# process (and profile) of their own.
if [ -z "${REPORT_ONLY:-}" ]; then
  profile=""
  for fs in $FSYNCS; do
    if [ "${PROFILE:-}" = 1 ]; then profile="$OUT/closed-$fs.cpu.pprof"; fi
    start_switch "demo-fsync-$fs" "$fs" "$TERMINALS"
    loadtest "closed-$fs" --target "$pos" --spec cup-pos --max --metrics "$admin/metrics"
    if [ -n "$profile" ] && [ -n "$RATES" ]; then
      stop_switch
      profile="$OUT/open-$fs.cpu.pprof"
      start_switch "demo-fsync-$fs-open" "$fs" "$TERMINALS"
    fi
    for r in $RATES; do
      loadtest "open-$r-$fs" --target "$pos" --spec cup-pos --rate "$r" --metrics "$admin/metrics"
    done
    stop_switch
  done
  profile=""

  # 3. CONNS terminals at once, the peak RSS sampled every second while they run.
  if [ -n "$CONNS" ]; then
    conns_fsync=off
    if [ "$FSYNC" = on ]; then conns_fsync=on; fi
    profile=""
    start_switch demo-conns "$conns_fsync" "$CONNS"
    rss_idle=$(rss)
    mode=(--rate "$CONNS_RATE")
    if [ "$CONNS_RATE" = max ]; then mode=(--max); fi
    echo "== conns: $CONNS terminals, ${mode[*]}, $CONNS_DURATION, fsync $conns_fsync" >&2
    (while sleep 1; do rss; echo; done > "$OUT/conns-rss.txt") &
    sampler=$!
    "$BIN" loadtest --terminals "$CONNS" --duration "$CONNS_DURATION" --mix "$MIX" --json "$OUT/conns.json" \
      --target "$pos" --spec cup-pos "${mode[@]}" --metrics "$admin/metrics" > "$OUT/conns.txt"
    kill "$sampler" 2>/dev/null || true
    sed 's/^/   /' "$OUT/conns.txt" >&2
    rss_peak=$(sort -n "$OUT/conns-rss.txt" | tail -n 1)
    stop_switch
  fi
fi

# 3. The summary.
ceiling_tps=$(stat ceiling tps)
bank_cpu=$(stat ceiling cpu_us_per_txn)
{
  echo
  echo "bench-switch: $TERMINALS terminals, $DURATION per run, mix $MIX, median of $REPEAT runs (reports in $OUT)"
  printf '%-16s %10s %9s %9s %12s %14s %14s %9s %9s\n' setting tps p50_ms p99_ms cpu_us/txn switch_est_us \
    switch_own_us ratio invalid
  for name in ceiling $(for fs in $FSYNCS; do echo "closed-$fs"; for r in $RATES; do echo "open-$r-$fs"; done; done); do
    tps=$(stat "$name" tps)
    cpu=$(stat "$name" cpu_us_per_txn)
    shares=""
    prof="$OUT/${name%%-*}-${name##*-}.cpu.pprof"
    if [ "$name" != ceiling ] && [ -f "$prof" ]; then shares=$(profile_split "$prof"); fi
    bad=$(for f in "$OUT/$name"-*.json; do
      echo $(($(jnum "$f" timeouts) + $(jnum "$f" errors) + $(jnum "$f" invalid) + $(jnum "$f" sign_on_failures)))
    done | median)
    awk -v n="$name" -v tps="$tps" -v p50="$(stat "$name" p50)" -v p99="$(stat "$name" p99)" -v cpu="$cpu" \
      -v bank="$bank_cpu" -v ceil="$ceiling_tps" -v bad="$bad" -v shares="$shares" 'BEGIN {
        est = (n == "ceiling" || cpu == "" || bank == "") ? "-" : sprintf("%.1f", cpu - bank)
        own = "-"
        if (shares != "" && cpu != "") {
          split(shares, f, " ") # switch bank gc; the GC share goes to the switch and the banks pro rata
          if (f[1] + f[2] > 0) own = sprintf("%.1f", cpu * (f[1] + f[3] * f[1] / (f[1] + f[2])))
        }
        printf "%-16s %10.0f %9.3f %9.3f %12.1f %14s %14s %9.2f %9d\n", n, tps, p50, p99, cpu, est, own, tps / ceil, bad
      }'
  done
  echo
  echo "ceiling: the bank simulator alone (iso87-ascii, closed loop); ratio: tps / ceiling tps."
  echo "cpu_us/txn: the target process's CPU per reply. The demo's switch process also runs its two bank"
  echo "simulators, so its figure includes theirs; switch_est_us subtracts the bank simulator's own CPU per"
  echo "transaction from the ceiling run (a rough estimate: through the switch the bank also checks a PIN"
  echo "and a MAC). switch_own_us (PROFILE=1): cpu_us/txn times the switch's share of its CPU profile: samples"
  echo "with a frame in simulators/bank are the banks', the GC's background workers are shared pro rata. The"
  echo "open-loop rows share one profile. invalid: timeouts + errors + invalid replies + failed sign-ons (median"
  echo "per run)."
  echo "-on / -off: the demo's journal fsync (off: switch run --demo --no-fsync, which also keeps no intent"
  echo "records). open-R: R requests a second asked for; tps is what was achieved."
  if [ -n "$CONNS" ]; then
    echo
    f="$OUT/conns.json"
    echo "conns: $CONNS terminals ($CONNS_RATE/s, $CONNS_DURATION, fsync $conns_fsync): sign_ons $(jnum "$f" sign_ons)," \
      "sign_on_failures $(jnum "$f" sign_on_failures), errors $(jnum "$f" errors), timeouts $(jnum "$f" timeouts)," \
      "tps $(printf '%.0f' "$(jnum "$f" tps)"), p99 $(jnum "$f" p99) ms; switch RSS ${rss_idle:-?} MB idle, ${rss_peak:-?} MB peak"
    if [ "$(jnum "$f" sign_ons)" = "$CONNS" ] && [ "$(jnum "$f" sign_on_failures)" = 0 ] &&
      [ "$(jnum "$f" errors)" = 0 ] && [ "$(jnum "$f" timeouts)" = 0 ]; then
      echo "conns: all $CONNS terminals signed on once and stayed connected"
    else
      echo "conns: NOT all $CONNS terminals signed on and stayed connected (a dropped connection re-signs on)"
    fi
  fi
} | tee "$OUT/summary.txt"

if [ "${PROFILE:-}" = 1 ]; then
  for fs in $FSYNCS; do
    prof="$OUT/closed-$fs.cpu.pprof"
    [ -f "$prof" ] || continue
    read -r sw bk gc <<< "$(profile_split "$prof")"
    # The switch's own code only: -ignore drops the samples of the bank simulators.
    "$GO" tool pprof -top -nodecount=40 -ignore='simulators/bank' "$BIN" "$prof" > "$OUT/closed-$fs.cpu.top" 2>/dev/null
    echo
    echo "CPU profile of the switch process, closed loop, fsync $fs: $prof"
    echo "samples: switch $(awk -v x="$sw" 'BEGIN{printf "%.1f", 100*x}')%," \
      "bank simulators $(awk -v x="$bk" 'BEGIN{printf "%.1f", 100*x}')%, GC workers $(awk -v x="$gc" 'BEGIN{printf "%.1f", 100*x}')%;" \
      "top of the switch's own (bank simulators ignored; top 40 in $OUT/closed-$fs.cpu.top):"
    sed -n '/flat%/,$p' "$OUT/closed-$fs.cpu.top" | head -n 21
  done
fi
