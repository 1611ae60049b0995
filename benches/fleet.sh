#!/usr/bin/env bash
# Fleet benchmark: BROADCASTERS (6) broadcaster processes of one cluster and VIEWERS (100,000)
# registered viewers (as many `emostream wsload --register-each` processes, each over its own
# 127.0.x.y source addresses), on one machine with the broker. Every viewer registers on its
# own and connects where it is sent. Reports the spread over the broadcasters, fan-out
# completion across the fleet (from a broadcaster taking a message from Kafka to the last
# viewer), memory per connection; then one broadcaster is killed (SIGKILL) KILL_AFTER
# seconds in: its viewers register again, land on the others and resume from the ring; the
# report says how many came back, the longest time until one did, and whether any final
# window was missed. Writes benches/reports/<date>-fleet/. Run through
# scripts/with-broker.sh (make bench-fleet does).
#
# One process holds at most 20,000 open files here, hence several processes on each side.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"
ulimit -n "$(ulimit -Hn)"

broadcasters=${BROADCASTERS:-6}
viewers=${VIEWERS:-100000}
seconds=${SECONDS_PER_RUN:-60}
kill_after=${KILL_AFTER:-20}
# Six broadcasters on two cores: one shard each (a shard per core each would be twelve
# threads taking turns on two cores).
shards=${SHARDS:-1}
# Finals only by default (one window every 2 s): at 100,000 viewers the kernel alone needs
# about half a second of CPU per frame here (see the fan-out report's floor), so 4 frames a
# second would be over the machine's two cores. FEED_UPDATES=250ms feeds open updates too.
feed_updates=${FEED_UPDATES:-}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-fleet}
bin=target/release/emostream
# A report of the same name and day is made again from scratch.
rm -rf "$report/raw"
mkdir -p "$report/raw"
cargo build --release --bin emostream
{
  machine_info
  echo "open files per process: $(ulimit -Hn)"
  echo "layout: $broadcasters broadcasters, $broadcasters load-tool processes and the broker on the same machine"
} > "$report/machine.txt"
: > "$report/commands.txt"

prefix=fleet-$$
pids=()
bases=()
for i in $(seq 1 "$broadcasters"); do
  "$bin" broadcast --listen 127.0.0.1:0 --cluster 1 --cluster-prefix "$prefix" --registry-topic "$prefix-registry" \
    --token-secret bench --max-connections-per-ip 0 --shards "$shards" --ready-file "$report/raw/broadcast-$i.ready.json" \
    > /dev/null 2> "$report/raw/broadcast-$i.log" &
  pids+=($!)
done
for i in $(seq 1 "$broadcasters"); do
  bases+=("http://$(ready_addr "$report/raw/broadcast-$i.ready.json" broadcast)")
done
echo "$bin broadcast --listen 127.0.0.1:0 --cluster 1 --cluster-prefix $prefix --registry-topic $prefix-registry --token-secret bench --max-connections-per-ip 0 --shards $shards  # x $broadcasters" >> "$report/commands.txt"
register=$(IFS=,; echo "${bases[*]}")
before=()
for pid in "${pids[@]}"; do before+=("$(rss "$pid")"); done
# Every broadcaster has heard the others before viewers register (heartbeats every 500 ms).
sleep 5

feed_args=(--feed-topic "${prefix}1" --brokers "$EMOSTREAM_BROKERS")
[ -n "$feed_updates" ] && feed_args+=(--feed-updates "$feed_updates")
echo "$bin wsload --register ${bases[0]} --clients 1 --duration $((seconds + 120))s ${feed_args[*]}" >> "$report/commands.txt"
"$bin" wsload --register "${bases[0]}" --clients 1 --duration "$((seconds + 120))s" "${feed_args[@]}" \
  > /dev/null 2> "$report/raw/feed.log" &
feeder=$!

per=$(( (viewers + broadcasters - 1) / broadcasters ))
loads=()
for i in $(seq 1 "$broadcasters"); do
  sources=$(seq -s, -f "127.0.$i.%g" 1 8)
  echo "$bin wsload --register $register --register-each --clients $per --sources $sources --duration ${seconds}s" >> "$report/commands.txt"
  "$bin" wsload --register "$register" --register-each --clients "$per" --sources "$sources" \
    --duration "${seconds}s" --summary-json "$report/raw/wsload-$i.json" 2> "$report/raw/wsload-$i.log" &
  loads+=($!)
done

# The open connections BASE reports, or 0 when it does not answer within 5 s (busy).
connections_of() {
  curl -s --max-time 5 "$1/metrics" 2>/dev/null | awk '/^broadcast_connections / {print $2}' || true
}

connections() {
  local total=0 n
  for base in "${bases[@]}"; do
    n=$(connections_of "$base")
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
started=$(date +%s)
for _ in $(seq 1 1200); do
  [ "$(connections)" -ge "$viewers" ] && break
  sleep 0.5
done
connected_at=$(date +%s)
{
  echo "{\"connect_seconds\":$((connected_at - started)),\"broadcasters\":["
  for i in $(seq 0 $((broadcasters - 1))); do
    n=$(connections_of "${bases[$i]}")
    [ "$i" -gt 0 ] && echo ","
    echo "{\"addr\":\"${bases[$i]}\",\"connections\":${n:-0},\"rss_before_kib\":${before[$i]},\"rss_connected_kib\":$(rss "${pids[$i]}")}"
  done
  echo "]}"
} > "$report/raw/connected.json"

sleep "$kill_after"
victim=${pids[0]}
kill -KILL "$victim"
killed_at=$(date +%s%3N)
echo "{\"killed\":\"${bases[0]}\",\"killed_at_ms\":$killed_at}" > "$report/raw/kill.json"
# Where the viewers are once they had time to come back (the loads still running).
sleep "${SETTLE:-20}"
{
  echo "{\"broadcasters\":["
  for i in $(seq 1 $((broadcasters - 1))); do
    n=$(connections_of "${bases[$i]}")
    [ "$i" -gt 1 ] && echo ","
    echo "{\"addr\":\"${bases[$i]}\",\"connections\":${n:-0},\"rss_peak_kib\":$(hwm "${pids[$i]}")}"
  done
  echo "]}"
} > "$report/raw/after.json"
for load in "${loads[@]}"; do wait "$load" || true; done
kill "$feeder" 2>/dev/null || true
for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true

python3 benches/summarize_fleet.py "$report"
echo "report: $report/summary.md"
