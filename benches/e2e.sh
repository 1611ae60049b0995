#!/usr/bin/env bash
# End-to-end latency: `emostream up` (ingest, dataflow publishing open windows every 250 ms,
# one broadcaster) with the simulator offering realistic traffic over HTTP and 10 viewers
# measuring, per window, the delay from the window's end to its final's arrival, and per
# accepted tap the delay from its 2xx answer to the first frame counting it at each viewer
# (tap to swarm). Several offered loads, and the original system's
# load-test contract (single events from 100 clients at 1000 events/s each). Writes
# benches/reports/<date>-e2e/. Run through scripts/with-broker.sh (make bench-e2e does).
#
# Environment: DURATION (30s), REPORT_NAME (e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"

duration=${DURATION:-30s}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-e2e}
bin=target/release/emostream
mkdir -p "$report/raw"
cargo build --release --bin emostream
machine_info > "$report/machine.txt"
: > "$report/commands.txt"

scenario() {
  local name=$1; shift
  local prefix=e2e-$$-$name
  local up=(up --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --broadcast-listen 127.0.0.1:0 --clusters 1
    --updates 250ms
    --events-topic "$prefix-events" --windows-topic "$prefix-windows" --late-topic "$prefix-late"
    --cluster-prefix "$prefix-cluster" --registry-topic "$prefix-registry" --group "$prefix")
  local ready=$report/raw/up-$name.ready.json
  "$bin" "${up[@]}" --ready-file "$ready" > "$report/raw/up-$name.out" 2> "$report/raw/up-$name.log" &
  local pid=$!
  local ingest broadcaster
  ingest=http://$(ready_addr "$ready" ingest)
  broadcaster=http://$(ready_addr "$ready" broadcast)
  echo "$bin ${up[*]}" >> "$report/commands.txt"
  echo "$bin simulate --target INGEST --watch BROADCASTER --viewers 10 --duration $duration $*" >> "$report/commands.txt"
  "$bin" simulate --target "$ingest" --watch "$broadcaster" --viewers 10 --duration "$duration" "$@" \
    --summary-json "$report/raw/$name.json" 2> "$report/raw/simulate-$name.log"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

scenario steady-10k --rate 10000/s
scenario steady-30k --rate 30000/s
scenario match-20k --rate 20000/s --profile match
scenario steady-50k-batch10 --rate 50000/s --batch 10
scenario steady-50k --rate 50000/s
scenario contract-100x1000 --rate 100000/s --connections 100 --max-connections 100

python3 benches/summarize_e2e.py "$report"
echo "report: $report/summary.md"
