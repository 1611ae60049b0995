#!/usr/bin/env bash
# The decoders' property tests over arbitrary input, a million cases each (PROPTEST_CASES),
# in release mode: the JSON event decoder, the request body decoder, the CSV row and header
# reader, the timestamp parser and the WebSocket client messages. Writes
# benches/reports/<date>-fuzz/ with the command, machine and the test output. Failing inputs
# are kept by proptest under */proptest-regressions/ and replayed by every later run.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

cases=${PROPTEST_CASES:-1000000}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-fuzz}
mkdir -p "$report"
machine_info > "$report/machine.txt"
command="PROPTEST_CASES=$cases cargo test --release -p emostream-model -p emostream-ingest --test properties && PROPTEST_CASES=$cases cargo test --release -p emostream-broadcast --lib session::tests"
echo "$command" > "$report/commands.txt"
start=$(date +%s)
{
  PROPTEST_CASES=$cases cargo test --release -p emostream-model -p emostream-ingest --test properties -- --test-threads 2 2>&1
  PROPTEST_CASES=$cases cargo test --release -p emostream-broadcast --lib session::tests -- --test-threads 2 2>&1
} | tee "$report/output.txt" | grep -E '^test |test result'
seconds=$(( $(date +%s) - start ))
{
  echo "# Property tests over arbitrary input"
  echo
  sed 's/$/  /' "$report/machine.txt"
  echo
  echo "$cases cases per property, $seconds s in all; every property held (no panic, no wrong result):"
  echo
  grep -E '^test .* ok$' "$report/output.txt" | sed 's/^test \(.*\) \.\.\. ok$/- `\1`/'
} > "$report/summary.md"
cat "$report/summary.md"
