#!/usr/bin/env bash
# Live pipeline benchmark on one machine with the broker on it: ingest requests/s and
# events/s at fixed offered loads (open loop, latency from the scheduled send time), and
# the Kafka-to-Kafka dataflow next to a consume-only baseline. Writes
# benches/reports/<date>-live/ with the commands, machine, raw results and summary.md.
#
# Run through scripts/with-broker.sh (make bench-live does) or with EMOSTREAM_BROKERS set.
# Environment: EVENTS (1000000), DURATION (10s), REPORT_NAME (live), LINGER (the ingest's
# --linger; its default when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"

events=${EVENTS:-1000000}
duration=${DURATION:-10s}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-live}
bin=target/release/emostream
mkdir -p "$report/raw"
cargo build --release --bin emostream
cargo bench --no-run --bench kafka_dataflow 2>/dev/null

machine_info > "$report/machine.txt"

topic=bench-ingest-$$
# Throughput of the API and the producer: the prepared bodies repeat their users far more
# often than an audience would, so the per-user rate limit is off here.
"$bin" ingest --listen 127.0.0.1:0 --user-rate-limit 0 --events-topic "$topic" ${LINGER:+--linger "$LINGER"} \
  --ready-file "$report/raw/ingest.ready.json" > "$report/raw/ingest.out" 2> "$report/raw/ingest.log" &
ingest=$!
trap 'kill $ingest 2>/dev/null || true' EXIT
target=$(ready_addr "$report/raw/ingest.ready.json" ingest)

: > "$report/commands.txt"
echo "$bin ingest --listen 127.0.0.1:0 --user-rate-limit 0 --events-topic $topic ${LINGER:+--linger $LINGER}" >> "$report/commands.txt"
# Server-stamped bodies made before the clock starts, so the simulator spends its time sending.
load() {
  local name=$1; shift
  echo "$bin simulate --target http://$target --duration $duration --body-pool 256 $*" >> "$report/commands.txt"
  "$bin" simulate --target "http://$target" --duration "$duration" --body-pool 256 "$@" --summary-json "$report/raw/$name.json"
}
load single-20k --rate 20000/s --connections 64 --max-connections 128
load single-50k --rate 50000/s --connections 128 --max-connections 128
load single-60k --rate 60000/s --connections 128 --max-connections 128
load batch-500k --rate 500000/s --batch 1000 --connections 16 --max-connections 16
load batch-1m --rate 1000000/s --batch 1000 --connections 16 --max-connections 16
load batch-1.2m --rate 1200000/s --batch 1000 --connections 16 --max-connections 16
curl -s "http://$target/metrics" > "$report/raw/ingest-metrics.txt"
kill $ingest; wait $ingest 2>/dev/null || true
trap - EXIT

echo "cargo bench --bench kafka_dataflow -- $events $report/raw" >> "$report/commands.txt"
cargo bench --bench kafka_dataflow -- "$events" "$report/raw"

python3 benches/summarize_live.py "$report"
echo "report: $report/summary.md"
