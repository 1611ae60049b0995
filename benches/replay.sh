#!/usr/bin/env bash
# Replay benchmark: a generated 10M-event match log (skewed mix, bursts, 200k users,
# disorder, a few late events) through the plain single-threaded loop and through the
# dataflow (timely and differential engines, 1 and 2 workers). Writes
# benches/reports/<date>-replay/ with the commands, machine, raw CSV and summary.md.
#
# Environment: EVENTS (10000000), RUNS (3), REPORT_NAME (replay).
set -euo pipefail
cd "$(dirname "$0")/.."

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
} > "$report/commands.txt"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  grep -A1 -E '^name = "(timely|differential-dataflow)"$' Cargo.lock | paste - - - | sed 's/name = //; s/version = //'
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
done

python3 benches/summarize_replay.py "$report" target/bench
echo "report: $report/summary.md"
