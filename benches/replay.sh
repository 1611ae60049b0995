#!/usr/bin/env bash
# Replay benchmark: a generated 10M-event match log (skewed mix, bursts, 200k users,
# disorder, a few late events) through the plain single-threaded loop and through the
# dataflow (timely and differential engines, 1 and 2 workers). Writes
# benches/reports/<date>-replay/ with the commands, machine, raw CSV and summary.md.
#
# Environment: EVENTS (10000000), RUNS (3), REPORT_NAME (replay).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

events=${EVENTS:-10000000}
runs=${RUNS:-3}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-replay}
log=target/bench/replay-$events.csv
bin=target/release/emostream

cargo build --release --bin emostream
cargo bench --no-run --bench replay_baseline 2>/dev/null
baseline=$(ls -t target/release/deps/replay_baseline-* | grep -v '\.d$' | head -n 1)

mkdir -p target/bench "$report/raw"
generate="$bin generate --events $events --users 200000 --rate 10000/s --profile match --disorder 500ms --late-fraction 0.00005 --late-delay 5s --seed 42 --out $log"
[ -f "$log" ] || $generate
# Steady logs of a tenth and all of the events: memory against the length of the log,
# without the match's bursts (whose windows are larger) in the way.
for n in $((events / 10)) "$events"; do
  [ -f "target/bench/steady-$n.csv" ] || $bin generate --events "$n" --users 200000 --rate 10000/s \
    --profile steady --seed 3 --out "target/bench/steady-$n.csv"
done

{
  echo "# generate the log (once)"
  echo "$generate"
  echo "# each variant, $runs runs"
  echo "cargo bench --bench replay_baseline -- $log --out OUT --summary-json JSON"
  for engine in timely differential; do
    for w in 1 2; do
      echo "$bin replay $log -w $w --engine $engine --out OUT --summary-json JSON"
    done
  done
  echo "$bin replay $log -w 1|2 --window 2s,60s --out OUT --summary-json JSON"
  echo "# memory against log length: steady logs of a tenth and all of the events"
  echo "$bin generate --events N --users 200000 --rate 10000/s --profile steady --seed 3 --out target/bench/steady-N.csv"
  echo "$bin replay target/bench/steady-N.csv -w 1|2 --out /dev/null --summary-json JSON"
} > "$report/commands.txt"

{
  machine_info
  echo "kernel: $(uname -r)"
  awk '/^name = "(timely|differential-dataflow)"$/ {n=$3; getline; print "crate: " n " " $3}' Cargo.lock | tr -d '"'
  echo "log: $log, $(stat -c %s "$log") bytes, $events events"
} > "$report/machine.txt"

for run in $(seq 1 "$runs"); do
  "$baseline" "$log" --out "target/bench/out-baseline.csv" --summary-json "$report/raw/baseline-1-$run.json"
  for engine in timely differential; do
    for w in 1 2; do
      "$bin" replay "$log" -w "$w" --engine "$engine" --out "target/bench/out-$engine-$w.csv" \
        --summary-json "$report/raw/$engine-$w-$run.json"
    done
  done
  # A second window size in the same run: the per-minute windows next to the live ones.
  for w in 1 2; do
    "$bin" replay "$log" -w "$w" --window 2s,60s --out "target/bench/out-sizes-$w.csv" \
      --summary-json "$report/raw/timely_2s+60s-$w-$run.json"
  done
done

for n in $((events / 10)) "$events"; do
  for w in 1 2; do
    "$bin" replay "target/bench/steady-$n.csv" -w "$w" --out /dev/null --summary-json "$report/raw/steady_$n-$w-1.json"
  done
done

python3 benches/summarize_replay.py "$report" target/bench
echo "report: $report/summary.md"
