#!/usr/bin/env bash
# The two brokers EmoStream is tested on, side by side: how long each holds an empty fetch
# (benches/brokers/fetch_wait.py, a standard client), whether each serves Kafka transactions
# and what a commit costs (benches/brokers/transactions.py), and what an idle `dataflow -w 2`
# costs on each. Report under benches/reports/DATE-brokers/.
#
#   benches/brokers.sh     (make bench-brokers)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

seconds=20
bin=target/release/emostream
cargo build --release --bin emostream
venv=$(scripts/python-env.sh tests/requirements.txt tests)
out=benches/reports/$(date -u +%F)-brokers
mkdir -p "$out"
rm -f "$out/transactions.jsonl"
rows=()
for kind in tansu noida; do
  dir=target/bench-broker-$kind
  address=$(EMOSTREAM_BROKER_KIND=$kind scripts/broker.sh start "$dir")
  trap 'scripts/broker.sh stop "$dir"' EXIT
  fetch=$("$venv/bin/python" benches/brokers/fetch_wait.py "$address")
  echo "$fetch" >&2
  transactions=$("$venv/bin/python" benches/brokers/transactions.py "$address" 2>/dev/null | tail -n 1)
  echo "$transactions" >> "$out/transactions.jsonl"
  echo "$kind: $transactions" >&2
  transactions=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("no: " + r["unsupported"] if "unsupported" in r else
      "%s ms per commit of one record; a zombie %s" % (r["ms_per_commit"], "fenced" if r.get("zombie_fenced") else "NOT fenced"))
' "$transactions")
  run=idle-$kind-$$
  rm -f "$dir/ready.json"
  EMOSTREAM_BROKERS=$address NO_COLOR=1 "$bin" dataflow -w 2 --metrics-listen 127.0.0.1:0 \
    --events-topic "$run-events" --windows-topic "$run-windows" --late-topic "$run-late" \
    --cluster-prefix "$run-cluster" --group "$run" --ready-file "$dir/ready.json" \
    > "$dir/dataflow.log" 2>&1 &
  pid=$!
  ready_addr "$dir/ready.json" dataflow > /dev/null
  # Settled (topics made, partitions assigned), then its CPU over the next $seconds s.
  sleep 5
  before=$(cpu "$pid")
  sleep "$seconds"
  ticks=$(( $(cpu "$pid") - before ))
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  scripts/broker.sh stop "$dir"
  trap - EXIT
  share=$(python3 -c "print(round($ticks / $(getconf CLK_TCK) / $seconds * 100, 1))")
  echo "$kind: idle dataflow -w 2, $ticks ticks in $seconds s: $share% of a core" >&2
  rows+=("| $kind | ${fetch#*: } | $transactions | $share% |")
done

{
  echo "# The two brokers"
  echo
  machine_info | sed 's/$/  /'
  echo "noida-db: $(grep -i '^noida-db==' tests/requirements.txt | cut -d= -f3); confluent-kafka: $(grep -i '^confluent-kafka==' tests/requirements.txt | cut -d= -f3)"
  echo
  echo "How long a broker holds an empty fetch: a confluent-kafka consumer reads an idle partition"
  echo "with fetch.wait.max.ms=500 and counts the Fetch requests it sent (its own statistics); a"
  echo "broker that waits as the protocol says answers about 2 a second. Kafka transactions: a"
  echo "confluent-kafka transactional producer commits 500 single-record transactions in a row,"
  echo "then a second one with the same transactional.id starts and the first must be fenced"
  echo "(transactions.jsonl). And the CPU of an idle \`emostream dataflow -w 2\` on each broker"
  echo "over $seconds s (after 5 s to settle)."
  echo
  echo "| broker | empty fetches | transactions | idle dataflow -w 2, CPU |"
  echo "| --- | --- | --- | ---: |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Command: \`make bench-brokers\` (benches/brokers.sh)."
} > "$out/summary.md"
cat "$out/summary.md"
