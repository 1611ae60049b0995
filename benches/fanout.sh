#!/usr/bin/env bash
# Fan-out benchmark: one broadcaster, WebSocket clients of the project's own load tool bound
# to several 127.0.0.x source addresses, a synthetic window (about 600 bytes) every 2 s.
# Records memory per idle connection and fan-out completion (from the broadcaster taking a
# window from Kafka to the last client having it) for each client count. Writes
# benches/reports/<date>-fanout/. Run through scripts/with-broker.sh (make bench-fanout does).
#
# One process holds at most 20,000 open files here (hard limit), so 50,000 clients on one
# broadcaster cannot be run on this machine: the largest count is 19,000.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"
ulimit -n "$(ulimit -Hn)"

counts=${COUNTS:-"1000 10000 19000"}
duration=${DURATION:-20s}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-fanout}
bin=target/release/emostream
mkdir -p "$report/raw"
cargo build --release --bin emostream

{
  machine_info
  echo "open files per process: $(ulimit -Hn)"
  echo "layout: broadcaster, load tool and broker on the same machine"
} > "$report/machine.txt"
: > "$report/commands.txt"

for n in $counts; do
  prefix=fanout-$$-$n
  "$bin" broadcast --listen 127.0.0.1:0 --cluster-prefix "$prefix" --registry-topic "$prefix-registry" \
    --token-secret bench --max-connections-per-ip 0 --ready-file "$report/raw/broadcast-$n.ready.json" \
    > "$report/raw/broadcast-$n.out" 2> "$report/raw/broadcast-$n.log" &
  broadcaster=$!
  addr=$(ready_addr "$report/raw/broadcast-$n.ready.json" broadcast)
  rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$broadcaster/status")
  cmd="$bin wsload --register http://$addr --clients $n --sources 127.0.0.1,127.0.0.2,127.0.0.3 --duration $duration --feed-topic ${prefix}1 --brokers \$EMOSTREAM_BROKERS"
  echo "$cmd" >> "$report/commands.txt"
  "$bin" wsload --register "http://$addr" --clients "$n" --sources 127.0.0.1,127.0.0.2,127.0.0.3 \
    --duration "$duration" --feed-topic "${prefix}1" --brokers "$EMOSTREAM_BROKERS" \
    --summary-json "$report/raw/wsload-$n.json" 2> "$report/raw/wsload-$n.log" &
  load=$!
  # Idle memory: once every client is connected, before the first measured window lands.
  for _ in $(seq 1 600); do
    connected=$(curl -s "http://$addr/metrics" | awk '/^broadcast_connections / {print $2}')
    [ "${connected:-0}" -ge "$n" ] && break
    sleep 0.05
  done
  rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$broadcaster/status")
  wait "$load"
  rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$broadcaster/status")
  echo "{\"clients\":$n,\"rss_before_kib\":$rss_before,\"rss_idle_kib\":$rss_idle,\"rss_peak_kib\":$rss_peak}" > "$report/raw/memory-$n.json"
  kill "$broadcaster"; wait "$broadcaster" 2>/dev/null || true
done

# The kernel's share alone: raw writes to loopback sockets, no WebSocket, no event loop.
echo "python3 benches/loopback_floor.py 9000 600" >> "$report/commands.txt"
python3 benches/loopback_floor.py 9000 600 > "$report/raw/loopback-floor.json"

python3 - "$report" <<'PY'
import json, sys
from pathlib import Path
report = Path(sys.argv[1])
lines = ["# Fan-out benchmark", "", (report / "machine.txt").read_text().strip().replace("\n", "  \n"), "",
         "| clients | connected | memory per idle connection | windows | fan-out completion p50 | p99 | max | delivery p99 |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
rows = []
for path in sorted((report / "raw").glob("wsload-*.json"), key=lambda p: int(p.stem.split("-")[1])):
    n = int(path.stem.split("-")[1])
    w = json.loads(path.read_text())
    m = json.loads((report / "raw" / f"memory-{n}.json").read_text())
    per = (m["rss_idle_kib"] - m["rss_before_kib"]) / max(1, w["connected"])
    rows.append((n, w, per))
    lines.append(f"| {n} | {w['connected']} | {per:.1f} KiB | {w['windows']} ({w['complete_windows']} to every client) | "
                 f"{w['completion_p50_ms']:.0f} ms | {w['completion_p99_ms']:.0f} ms | {w['completion_max_ms']:.0f} ms | {w['delivery_p99_ms']:.0f} ms |")
big = max(rows, key=lambda r: r[0])
lines += ["", "Targets (2-core machine):",
          f"- at most 16 KiB per connection: {max(r[2] for r in rows):.1f} KiB at most, {'met' if max(r[2] for r in rows) <= 16 else 'NOT met'}",
          f"- p99 fan-out at most 150 ms with 20k clients: {big[1]['completion_p99_ms']:.0f} ms with {big[0]} clients "
          f"({'met' if big[1]['completion_p99_ms'] <= 150 else 'NOT met'}; 20,000 sockets in one process exceed this machine's open-file limit)",
          "- 50k clients on one broadcaster: not runnable here (20,000 open files per process).",
          ""]
floor = json.loads((report / "raw" / "loopback-floor.json").read_text())
cpu_ms = big[0] * (floor["write_us"] + floor["read_us"]) / 1e3
lines += ["Kernel floor on this machine (benches/loopback_floor.py, raw sockets, no WebSocket, no event loop): "
          f"one {floor['bytes']}-byte write to a loopback TCP socket costs {floor['write_us']} µs (the receiver's TCP "
          f"processing runs in the writer's system call on loopback) and its read {floor['read_us']} µs, so "
          f"{big[0]} clients cost at least {cpu_ms:.0f} ms of CPU per window in the kernel alone, "
          f"{cpu_ms / 2:.0f} ms on 2 cores if perfectly shared between broadcaster and clients.",
          "", "Memory per idle connection is the broadcaster's resident memory with every client connected",
          "minus before, divided by the clients. Fan-out completion is, per window, the delay from the",
          "broadcaster taking it from Kafka to the last client receiving it (clients on the same machine, same clock)."]
with open(report / "raw.csv", "w") as f:
    f.write("clients,connected,kib_per_idle_connection,windows,complete_windows,completion_p50_ms,completion_p99_ms,completion_max_ms,delivery_p99_ms\n")
    for n, w, per in rows:
        f.write(f"{n},{w['connected']},{per:.2f},{w['windows']},{w['complete_windows']},{w['completion_p50_ms']},"
                f"{w['completion_p99_ms']},{w['completion_max_ms']},{w['delivery_p99_ms']}\n")
(report / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
