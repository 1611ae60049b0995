"""Summarises a fleet benchmark run (benches/fleet.sh) into summary.md and raw.csv."""

import json
import sys
from pathlib import Path

report = Path(sys.argv[1])
raw = report / "raw"
connected = json.loads((raw / "connected.json").read_text())
kill = json.loads((raw / "kill.json").read_text())
after = json.loads((raw / "after.json").read_text())
loads = [json.loads(p.read_text()) for p in sorted(raw.glob("wsload-*.json"))]

counts = [b["connections"] for b in connected["broadcasters"]]
total = sum(counts)
even = total / len(counts)
spread = max(abs(c - even) / even for c in counts) if even else 0
per_kib = [(b["rss_connected_kib"] - b["rss_before_kib"]) / max(1, b["connections"]) for b in connected["broadcasters"]]
viewers = sum(w["connected"] for w in loads)
finals = min((w["finals"] for w in loads), default=0)
complete = min((w["complete_finals"] for w in loads), default=0)
missed = sum(w["finals"] - w["complete_finals"] for w in loads)
reconnects = sum(w["reconnects"] for w in loads)
back_ms = max((w["reconnect_max_ms"] for w in loads), default=0)
p99 = max((w["completion_p99_ms"] for w in loads), default=0)
p50 = max((w["completion_p50_ms"] for w in loads), default=0)
ok = lambda c: "met" if c else "NOT met"

lines = ["# Fleet benchmark", "", (report / "machine.txt").read_text().strip().replace("\n", "  \n"), "",
         f"{len(counts)} broadcasters of one cluster, {viewers} viewers registered one by one "
         f"(all connected {connected['connect_seconds']} s after the first registration).", "",
         "| broadcaster | viewers | memory per connection |", "| --- | ---: | ---: |"]
for b, per in zip(connected["broadcasters"], per_kib):
    lines.append(f"| {b['addr']} | {b['connections']} | {per:.1f} KiB |")
lines += ["",
          f"- Spread: at most {spread * 100:.1f}% from even ({even:.0f} each): within 5% {ok(spread <= 0.05)}.",
          f"- Fan-out completion across the fleet (each load process's p50 and p99, the worst of them): "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms.",
          f"- Memory per connection: {min(per_kib):.1f} to {max(per_kib):.1f} KiB.",
          f"- Killed {kill['killed']} (SIGKILL): {reconnects} viewers connected again, the last "
          f"{back_ms / 1000:.1f} s after its drop; then on the others: "
          + ", ".join(f"{b['connections']}" for b in after["broadcasters"]) + ".",
          f"- Final windows: {finals} measured per load process, {complete} of them at every viewer; "
          f"finals missed by some viewer: {missed} ({ok(missed == 0)}).", ""]
with open(report / "raw.csv", "w") as f:
    f.write("process,connected,reconnects,reconnect_max_ms,windows,complete_windows,finals,complete_finals,completion_p50_ms,completion_p99_ms\n")
    for i, w in enumerate(loads, 1):
        f.write(f"{i},{w['connected']},{w['reconnects']},{w['reconnect_max_ms']},{w['windows']},{w['complete_windows']},"
                f"{w['finals']},{w['complete_finals']},{w['completion_p50_ms']},{w['completion_p99_ms']}\n")
(report / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
