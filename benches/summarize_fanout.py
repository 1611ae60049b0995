"""Summarises a fan-out benchmark run (benches/fanout.sh) into summary.md, raw.csv (each
server's median over the rounds) and rounds.csv (every run)."""

import json
import re
import statistics
import sys
from pathlib import Path

report = Path(sys.argv[1])
raw = report / "raw"
# The revision BASELINE named (benches/fanout.sh), if any.
baseline_file = raw / "baseline.txt"
machine_text = (report / "machine.txt").read_text()
baseline_match = re.search(r"baseline: the broadcaster of (\w+)", machine_text)
BASELINE = (baseline_file.read_text().strip() if baseline_file.exists()
            else baseline_match[1] if baseline_match else "before")
SERVERS = [("emostream", "EmoStream"), ("emostream-1", "EmoStream, 1 shard"),
           ("baseline", f"EmoStream at {BASELINE}"), ("baseline-1", f"EmoStream at {BASELINE}, 1 shard"),
           ("bun", "Bun server.publish"), ("node", "Node ws"), ("warp", "warp ws()")]
PEERS = ["bun", "node"]
RUN = re.compile(r"^(?P<server>.+)-r(?P<round>\d+)-(?P<n>\d+)\.json$")
OWN = re.compile(r"^own-(?P<server>.+)-(?P<n>\d+)-r(?P<round>\d+)\.json$")

runs = {}  # (n, server) -> [(round, result, memory)]
for path in sorted(raw.glob("*.json")):
    match = RUN.match(path.name)
    if not match or path.name.startswith("own-") or not path.read_text().strip():
        continue
    memory = raw / path.name.replace(".json", ".memory.json")
    if not memory.exists():
        continue
    key = (int(match["n"]), match["server"])
    runs.setdefault(key, []).append((int(match["round"]), json.loads(path.read_text()), json.loads(memory.read_text())))
own = {}  # server -> [result]
for path in sorted(raw.glob("own-*.json")):
    match = OWN.match(path.name)
    if match:
        own.setdefault(match["server"], []).append(json.loads(path.read_text()))
counts = sorted({n for n, _ in runs})
rounds = max((r for v in runs.values() for r, _, _ in v), default=0)


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def per_connection(r, m):
    return (m["connected_kib"] - m["before_kib"]) / max(1, r["connected"])


def cpu_per_frame(r, m):
    return m["cpu_ms"] / r["frames"] if r["frames"] and "cpu_ms" in m else None


rows = {}
for (n, server), v in runs.items():
    results = [r for _, r, _ in v]
    rows[(n, server)] = {
        "rounds": len(v),
        "connected": min(r["connected"] for r in results),
        "frames": min(r["frames"] for r in results),
        "complete": min(r["complete"] for r in results),
        **{k: median([r[k] for r in results]) for k in
           ["completion_p50_ms", "completion_p99_ms", "completion_max_ms", "send_to_last_p50_ms", "send_to_last_p99_ms"]},
        "p50_range": (min(r["completion_p50_ms"] for r in results), max(r["completion_p50_ms"] for r in results)),
        "cpu_ms_per_frame": median([cpu_per_frame(r, m) for _, r, m in v]),
        "kib_per_connection": median([per_connection(r, m) for _, r, m in v]),
        "peak_kib": max(m["peak_kib"] for _, _, m in v),
        "by_round": {rnd: r for rnd, r, _ in v},
    }

lines = ["# Fan-out benchmark", "", (report / "machine.txt").read_text().strip().replace("\n", "  \n"), "",
         "One client tool for every server (benches/fanout/clients.mjs, Node `ws` clients in one process over",
         "127.0.0.1 .. 127.0.0.16); every server sends an open update of the current 2 s window every 250 ms and",
         "each window's final, on a fixed schedule (EmoStream's through Kafka). Completion: per frame, from the first",
         "client's arrival to the last's; send to last: from the server's send (`broadcast_at`; EmoStream's is when",
         "it took the message from Kafka) to the last arrival. Memory per connection: the server's resident memory",
         "with every client connected, minus before, over the clients. Server CPU per frame: its CPU time while the",
         "clients ran over the frames they measured.", "",
         f"Each figure is the server's median over {rounds} rounds (every server once per round, the order turning",
         "from round to round: the machine is shared and its speed drifts); the p50 range is the lowest and highest",
         "round. \"EmoStream\" runs a shard per core (the default), \"EmoStream, 1 shard\" `--shards 1`.", "",
         "| clients | server | rounds | frames (to every client) | completion p50 ms (range) | p99 ms | max ms | send to last p50 ms | p99 ms | server CPU per frame | memory per connection | peak memory |",
         "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
label = dict(SERVERS)
for n in counts:
    for server, name in SERVERS:
        row = rows.get((n, server))
        if not row:
            continue
        cpu = f"{row['cpu_ms_per_frame']:.0f} ms" if row["cpu_ms_per_frame"] is not None else ""
        lines.append(f"| {n} | {name} | {row['rounds']} | {row['frames']} ({row['complete']}) | {row['completion_p50_ms']} "
                     f"({row['p50_range'][0]}-{row['p50_range'][1]}) | {row['completion_p99_ms']} | {row['completion_max_ms']} | "
                     f"{row['send_to_last_p50_ms']} | {row['send_to_last_p99_ms']} | {cpu} | "
                     f"{row['kib_per_connection']:.1f} KiB | {row['peak_kib'] / 1024:.0f} MiB |")


def wins(mine, peer, key):
    """Rounds in which `mine` had a lower `key` than `peer` in the same round, of the rounds both ran."""
    both = sorted(set(mine["by_round"]) & set(peer["by_round"]))
    return sum(mine["by_round"][r][key] < peer["by_round"][r][key] for r in both), len(both)


ok = lambda c: "met" if c else "NOT met"
largest = max(counts) if counts else 0
lines += ["", f"Targets (2-core machine, clients on it) at {largest} clients:"]
for variant in ["emostream", "emostream-1"]:
    mine = rows.get((largest, variant))
    if not mine:
        continue
    for key in PEERS:
        peer = rows.get((largest, key))
        if not peer:
            continue
        below = mine["completion_p50_ms"] < peer["completion_p50_ms"] and mine["completion_p99_ms"] < peer["completion_p99_ms"]
        w50, both = wins(mine, peer, "completion_p50_ms")
        w99, _ = wins(mine, peer, "completion_p99_ms")
        lines.append(f"- {label[variant]}, completion below {label[key]}'s: median {mine['completion_p50_ms']} against "
                     f"{peer['completion_p50_ms']} ms, p99 {mine['completion_p99_ms']} against {peer['completion_p99_ms']} ms "
                     f"(lower in {w50} and {w99} of {both} rounds): {ok(below)}")
for variant, base in [("emostream", "baseline"), ("emostream-1", "baseline-1")]:
    for n in counts:
        mine, before = rows.get((n, variant)), rows.get((n, base))
        if not mine or not before:
            continue
        w50, both = wins(mine, before, "completion_p50_ms")
        ratio = mine["completion_p50_ms"] / before["completion_p50_ms"]
        ratio99 = mine["completion_p99_ms"] / before["completion_p99_ms"]
        lines.append(f"- {label[variant]} against {label[base]}, same run, {n} clients: completion p50 {mine['completion_p50_ms']} "
                     f"against {before['completion_p50_ms']} ms ({ratio:.2f}x), p99 {mine['completion_p99_ms']} against "
                     f"{before['completion_p99_ms']} ms ({ratio99:.2f}x); lower in {w50} of {both} rounds")
idle = [rows[(n, s)]["kib_per_connection"] for n in counts for s in ["emostream", "emostream-1"] if (n, s) in rows]
if idle:
    lines.append(f"- at most 8 KiB per idle connection: {max(idle):.1f} KiB at most, {ok(max(idle) <= 8)}")
for variant in ["emostream", "emostream-1"]:
    results = own.get(variant)
    if not results:
        continue
    p50 = median([w["completion_p50_ms"] for w in results])
    p99 = median([w["completion_p99_ms"] for w in results])
    each = ", ".join(f"{w['completion_p99_ms']:.0f}" for w in results)
    lines.append(f"- {label[variant]} with the project's own load tool (`emostream wsload`, {results[0]['connected']} clients, "
                 f"{results[0]['windows']} messages, {min(w['complete_windows'] for w in results)} to every client in every round): "
                 f"from the broadcaster taking a message from Kafka to the last client, median over {len(results)} rounds "
                 f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (rounds: {each} ms): p99 at most 100 ms {ok(p99 <= 100)}")
STORM = re.compile(r"^storm-(?P<server>[a-z]+)-(?P<n>\d+)-r(?P<round>\d+)\.json$")
storms = {}  # server -> [result]
for path in sorted(raw.glob("storm-*.json")):
    match = STORM.match(path.name)
    if match and path.read_text().strip():
        storms.setdefault(match["server"], []).append(json.loads(path.read_text()))
if storms:
    names = dict(SERVERS)
    clients = max(r["clients"] for v in storms.values() for r in v)
    lines += ["", f"Reconnect storm: {clients} clients opened at once against a fresh server (benches/fanout/burst.mjs), each",
              "trying again as the client library does: after a 503, as its Retry-After asks (1 to 2 times it); after",
              "a connection closed without an answer, 0.5 to 2 s on. Median over the rounds, and each round.", "",
              "| server | rounds | all connected after, s (rounds) | answered 503 | hang-ups | retries | most attempts |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for server in ["emostream", "baseline", "bun", "node"]:
        results = storms.get(server)
        if not results:
            continue
        each = ", ".join("-" if r["seconds_to_all"] is None else f"{r['seconds_to_all']}" for r in results)
        lines.append(f"| {names[server]} | {len(results)} | {median([r['seconds_to_all'] for r in results])} ({each}) | "
                     f"{median([r['answered_503'] for r in results])} | {median([r['hang_ups'] for r in results])} | "
                     f"{median([r['retries'] for r in results])} | {max(r['most_attempts'] for r in results)} |")
    mine = storms.get("emostream", [])
    every = all(r["connected"] == r["clients"] for r in mine)
    lines.append(f"- every EmoStream round ended with all {clients} connected: {ok(bool(mine) and every)}; "
                 f"none hung up on: {ok(bool(mine) and all(r['hang_ups'] == 0 for r in mine))}")
    if "baseline" in storms and mine:
        before = median([r["seconds_to_all"] for r in storms["baseline"]])
        now = median([r["seconds_to_all"] for r in mine])
        if before is not None and now is not None:
            lines.append(f"- all connected in less time than before: {now} s against {before} s: {ok(now < before)}")
floor_path = raw / "loopback-floor.json"
if floor_path.exists() and largest:
    floor = json.loads(floor_path.read_text())
    cpu_ms = largest * (floor["write_us"] + floor["read_us"]) / 1e3
    lines += ["", "Kernel floor on this machine (benches/loopback_floor.py, raw sockets, no WebSocket, no event loop): "
              f"one {floor['bytes']}-byte write to a loopback TCP socket costs {floor['write_us']} µs and its read "
              f"{floor['read_us']} µs, so {largest} clients cost at least {cpu_ms:.0f} ms of CPU per frame in the kernel, "
              f"{cpu_ms / 2:.0f} ms on 2 cores if perfectly shared between the server and the clients."]
with open(report / "raw.csv", "w") as f:
    f.write("clients,server,rounds,connected,frames,complete,completion_p50_ms,completion_p99_ms,completion_max_ms,"
            "send_to_last_p50_ms,send_to_last_p99_ms,cpu_ms_per_frame,kib_per_connection,peak_kib\n")
    for (n, server), row in sorted(rows.items()):
        cpu = "" if row["cpu_ms_per_frame"] is None else f"{row['cpu_ms_per_frame']:.1f}"
        f.write(f"{n},{server},{row['rounds']},{row['connected']},{row['frames']},{row['complete']},{row['completion_p50_ms']},"
                f"{row['completion_p99_ms']},{row['completion_max_ms']},{row['send_to_last_p50_ms']},{row['send_to_last_p99_ms']},"
                f"{cpu},{row['kib_per_connection']:.2f},{row['peak_kib']}\n")
with open(report / "rounds.csv", "w") as f:
    f.write("clients,server,round,connected,frames,complete,completion_p50_ms,completion_p99_ms,send_to_last_p50_ms,"
            "send_to_last_p99_ms,cpu_ms,kib_per_connection\n")
    for (n, server), v in sorted(runs.items()):
        for rnd, r, m in sorted(v, key=lambda x: x[0]):
            f.write(f"{n},{server},{rnd},{r['connected']},{r['frames']},{r['complete']},{r['completion_p50_ms']},"
                    f"{r['completion_p99_ms']},{r['send_to_last_p50_ms']},{r['send_to_last_p99_ms']},{m.get('cpu_ms', '')},"
                    f"{per_connection(r, m):.2f}\n")
(report / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
