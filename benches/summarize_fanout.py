"""Summarises a fan-out benchmark run (benches/fanout.sh) into summary.md and raw.csv."""

import json
import sys
from pathlib import Path

report = Path(sys.argv[1])
raw = report / "raw"
SERVERS = [("emostream", "EmoStream"), ("bun", "Bun server.publish"), ("node", "Node ws"), ("warp", "warp ws()")]
counts = sorted({int(p.name.split("-")[1].split(".")[0]) for p in raw.glob("*-*.memory.json")})

lines = ["# Fan-out benchmark", "", (report / "machine.txt").read_text().strip().replace("\n", "  \n"), "",
         "One client tool for every server (benches/fanout/clients.mjs, Node `ws` clients in one process over",
         "127.0.0.1 .. 127.0.0.16); every server sends an open update of the current 2 s window every 250 ms and",
         "each window's final. Completion: per frame, from the first client's arrival to the last's; send to last:",
         "from the server's send (`broadcast_at`; EmoStream's is when it took the message from Kafka) to the last",
         "arrival. Memory per connection: the server's resident memory with every client connected, minus before,",
         "over the clients. Server CPU per frame: its CPU time while the clients ran (their connections included)",
         "over the frames they measured.", "",
         "| clients | server | connected | frames (to every client) | completion p50 ms | p99 ms | max ms | send to last p50 ms | p99 ms | server CPU per frame | memory per connection | peak memory |",
         "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
def cpu_per_frame(m, r):
    """The server's CPU time over the measured run (connections included), per frame."""
    if "cpu_ms" not in m or not r["frames"]:
        return ""
    return f"{m['cpu_ms'] / r['frames']:.0f} ms"


rows = {}
for n in counts:
    for key, label in SERVERS:
        result, memory = raw / f"{key}-{n}.json", raw / f"{key}-{n}.memory.json"
        if not result.exists() or not result.read_text().strip():
            continue
        r = json.loads(result.read_text())
        m = json.loads(memory.read_text())
        per = (m["connected_kib"] - m["before_kib"]) / max(1, r["connected"])
        rows[(n, key)] = (r, m, per)
        lines.append(f"| {n} | {label} | {r['connected']} | {r['frames']} ({r['complete']}) | {r['completion_p50_ms']} | "
                     f"{r['completion_p99_ms']} | {r['completion_max_ms']} | {r['send_to_last_p50_ms']} | {r['send_to_last_p99_ms']} | "
                     f"{cpu_per_frame(m, r)} | {per:.1f} KiB | {m['peak_kib'] / 1024:.0f} MiB |")
ok = lambda c: "met" if c else "NOT met"
largest = max(counts) if counts else 0
lines += ["", f"Targets (2-core machine, clients on it) at {largest} clients:"]
mine = rows.get((largest, "emostream"))
if mine:
    for key, label in SERVERS[1:3]:
        peer = rows.get((largest, key))
        if peer:
            lines.append(f"- completion below {label}'s: median {mine[0]['completion_p50_ms']} against {peer[0]['completion_p50_ms']} ms, "
                         f"p99 {mine[0]['completion_p99_ms']} against {peer[0]['completion_p99_ms']} ms, "
                         f"{ok(mine[0]['completion_p50_ms'] < peer[0]['completion_p50_ms'] and mine[0]['completion_p99_ms'] < peer[0]['completion_p99_ms'])}")
    per_max = max(rows[(n, 'emostream')][2] for n in counts if (n, 'emostream') in rows)
    lines.append(f"- at most 8 KiB per idle connection: {per_max:.1f} KiB at most, {ok(per_max <= 8)}")
own = raw / f"own-{largest}.json"
if own.exists():
    w = json.loads(own.read_text())
    lines.append(f"- with the project's own load tool (`emostream wsload`, {w['connected']} clients, {w['windows']} messages, "
                 f"{w['complete_windows']} to every client): from the broadcaster taking a message from Kafka to the last client, "
                 f"p50 {w['completion_p50_ms']:.0f} ms, p99 {w['completion_p99_ms']:.0f} ms, max {w['completion_max_ms']:.0f} ms: "
                 f"p99 at most 100 ms {ok(w['completion_p99_ms'] <= 100)}")
floor_path = raw / "loopback-floor.json"
if floor_path.exists() and largest:
    floor = json.loads(floor_path.read_text())
    cpu_ms = largest * (floor["write_us"] + floor["read_us"]) / 1e3
    lines += ["", "Kernel floor on this machine (benches/loopback_floor.py, raw sockets, no WebSocket, no event loop): "
              f"one {floor['bytes']}-byte write to a loopback TCP socket costs {floor['write_us']} µs and its read "
              f"{floor['read_us']} µs, so {largest} clients cost at least {cpu_ms:.0f} ms of CPU per frame in the kernel, "
              f"{cpu_ms / 2:.0f} ms on 2 cores if perfectly shared between the server and the clients."]
with open(report / "raw.csv", "w") as f:
    f.write("clients,server,connected,frames,complete,completion_p50_ms,completion_p99_ms,completion_max_ms,"
            "send_to_last_p50_ms,send_to_last_p99_ms,kib_per_connection,peak_kib\n")
    for (n, key), (r, m, per) in sorted(rows.items()):
        f.write(f"{n},{key},{r['connected']},{r['frames']},{r['complete']},{r['completion_p50_ms']},{r['completion_p99_ms']},"
                f"{r['completion_max_ms']},{r['send_to_last_p50_ms']},{r['send_to_last_p99_ms']},{per:.2f},{m['peak_kib']}\n")
(report / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
