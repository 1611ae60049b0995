#!/usr/bin/env bash
# Chaos run: the fault scenarios at full length (EMOSTREAM_CHAOS_LONG=1) against a fresh
# broker, on release builds, one at a time:
#   - broker outage: an own sqlite broker stopped 30 s under acknowledged and 202 traffic;
#   - dataflow SIGKILL: killed every 10 s under 25,000 events/s over HTTP, compared with an
#     uninterrupted dataflow over the same events;
#   - broadcaster SIGKILL: 1000 load-tool clients and the web page (headless Chromium)
#     reconnect to the restarted broadcaster and resume;
#   - SIGTERM: every service under traffic exits 0 within 10 s, nothing accepted lost.
# Each scenario is a test of the suite (make test runs them short) that writes its figures;
# the report goes to benches/reports/<date>-chaos/. Run through scripts/with-broker.sh
# (make chaos does, with a broker of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"

report=benches/reports/$(date -u +%F)-chaos
mkdir -p "$report/raw"
rm -f "$report"/raw/*.json
machine_info | sed 's/(memory storage)/(memory storage; sqlite for the outage)/' > "$report/machine.txt"
export EMOSTREAM_CHAOS_LONG=1 EMOSTREAM_CHAOS_OUT=$PWD/$report/raw
tests=(--features emostream/broker-tests --test integration)
filters=(a_broker_outage a_dataflow_killed_again the_load_tool_reconnects every_service_stops_cleanly)
cargo build --release --bin emostream
cargo test --release --no-run "${tests[@]}"
echo "EMOSTREAM_CHAOS_LONG=1 cargo test --release ${tests[*]} -- --test-threads=1 ${filters[*]}" > "$report/commands.txt"
echo "EMOSTREAM_BIN=target/release/emostream node --test --test-name-pattern=restarted tests/browser/" >> "$report/commands.txt"
status=0
cargo test --release "${tests[@]}" -- --test-threads=1 --nocapture "${filters[@]}" \
  > "$report/raw/tests.log" 2>&1 || status=$?
grep -E '^test |^test result' "$report/raw/tests.log" > "$report/raw/tests.txt" || true
scripts/browser-deps.sh
EMOSTREAM_BIN=target/release/emostream node --test --test-name-pattern=restarted tests/browser/ \
  > "$report/raw/page.log" 2>&1 || status=$?
python3 benches/summarize_chaos.py "$report"
cat "$report/summary.md"
exit "$status"
