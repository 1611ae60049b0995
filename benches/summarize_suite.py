"""The benchmark suite's summary: the headline figure of each latest report next to its
target, written to benches/reports/<date>-suite/summary.md and into the README between the
bench-summary markers."""

import csv
import datetime
import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benches" / "reports"


def latest(kind):
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}-" + re.escape(kind))
    found = sorted(p for p in REPORTS.iterdir() if pattern.fullmatch(p.name))
    return found[-1] if found else None


def link(report):
    return f"[{report.name}](benches/reports/{report.name}/summary.md)"


rows = []


def row(figure, measured, target, met, report):
    rows.append((figure, measured, target, "met" if met else "**not met**", link(report)))


replay = latest("replay")
if replay:
    runs = {}
    for r in csv.DictReader(open(replay / "raw.csv", encoding="utf-8")):
        runs.setdefault((r["variant"], int(r["workers"])), []).append(r)
    rate = lambda v, w: statistics.median(float(r["events_per_second"]) for r in runs[(v, w)])
    w2, loop = rate("timely", 2), rate("baseline", 1)
    peak = max(int(r["peak_memory_bytes"]) for rs in runs.values() for r in rs) / 2**20
    row("Replay, timely -w 2", f"{w2 / 1e6:.2f} M events/s ({w2 / loop:.2f}x the loop)", ">= 4 M/s and >= half the loop",
        w2 >= 4e6 and w2 >= loop / 2, replay)
    row("Replay, peak memory", f"{peak:.0f} MiB", "< 1 GiB", peak < 1024, replay)

live = latest("live")
if live:
    raw = live / "raw"
    flow = [json.loads(l) for l in (raw / "kafka_dataflow.jsonl").read_text().splitlines() if l.strip()]
    base = next(f["events_per_second"] for f in flow if f["variant"] == "consume-only")
    w1 = next(f["events_per_second"] for f in flow if f["variant"] == "dataflow" and f.get("workers") == 1)
    row("Kafka to Kafka, -w 1", f"{w1 / 1e3:.0f} k events/s ({w1 / base:.2f}x consume-only)", ">= 0.8x consume-only",
        w1 >= 0.8 * base, live)

    def traffic(name):
        data = json.loads((raw / f"{name}.json").read_text())
        return data.get("traffic", data)

    single, batch = traffic("single-50k"), traffic("batch-1m")
    # Rates over the offered schedule's length (the run's total time also holds warm-up).
    schedule = lambda t: t["events_offered"] / t["offered_rate"]
    answered = sum(single["statuses"].values()) / schedule(single)
    accepted = batch["events_accepted"] / schedule(batch)
    row("Ingest, single events", f"{answered:.0f} req/s, p99 {single['p99_ms']:.1f} ms", "50,000 req/s",
        answered >= 0.99 * 50000 and set(single["statuses"]) <= {"202"}, live)
    row("Ingest, batches of 1000", f"{accepted / 1e6:.2f} M events/s, p99 {batch['p99_ms']:.0f} ms",
        "1,000,000 events/s", accepted >= 0.99e6 and set(batch["statuses"]) <= {"202"}, live)

e2e = latest("e2e")
if e2e:
    for name, label in [("steady-50k-batch10", "50k events/s, 10 per request"), ("steady-50k", "50k events/s, one per request")]:
        path = e2e / "raw" / f"{name}.json"
        if path.exists():
            r = json.loads(path.read_text())
            t, v = r["traffic"], r.get("viewers") or {}
            row(f"Window end to viewer, {label}", f"p99 {v.get('p99_ms', 0):.0f} ms ({t['accepted_rate'] / 1e3:.1f} k events/s accepted)",
                "p99 <= 1750 ms", v.get("p99_ms", 1e9) <= 1750 and t["accepted_rate"] >= 0.95 * t["offered_rate"], e2e)

fanout = latest("fanout")
if fanout:
    loads = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in (fanout / "raw").glob("wsload-*.json")}
    memory = {n: json.loads((fanout / "raw" / f"memory-{n}.json").read_text()) for n in loads}
    kib = max((m["rss_idle_kib"] - m["rss_before_kib"]) / max(1, loads[n]["connected"]) for n, m in memory.items())
    big = max(loads)
    row("Fan-out, memory per idle connection", f"{kib:.1f} KiB", "<= 16 KiB", kib <= 16, fanout)
    row(f"Fan-out completion, {big} clients", f"p99 {loads[big]['completion_p99_ms']:.0f} ms", "p99 <= 150 ms at 20k",
        loads[big]["completion_p99_ms"] <= 150, fanout)

micro = latest("micro")
if micro:
    est = {(r["group"], r["benchmark"]): r for r in csv.DictReader(open(micro / "raw" / "estimates.csv", encoding="utf-8"))}
    pick = lambda g, b: float(est[(g, b)]["median_ns"]) / float(est[(g, b)]["elements"]) if (g, b) in est else float("nan")
    rows.append(("Hot paths", f"JSON event {pick('event_decoding', 'json_rfc3339'):.0f} ns, RFC 3339 timestamp "
                 f"{pick('timestamp_parsing', 'rfc3339_millis_z'):.0f} ns, window counting {pick('window_aggregation', 'add_and_finish_10k'):.0f} ns per event",
                 "", "", link(micro)))

table = ["| figure | measured | target | | report |", "| --- | --- | --- | --- | --- |"]
table += [f"| {' | '.join(r)} |" for r in rows]
machine = (latest("replay") or latest("live")) / "machine.txt"
cpu = next((l.split(": ", 1)[1] for l in machine.read_text().splitlines() if l.startswith("cpu:")), "")
header = f"Latest benchmark figures ({cpu}, everything on one machine; `make bench` makes them):"

suite = REPORTS / f"{datetime.date.today().isoformat()}-suite"
suite.mkdir(exist_ok=True)
(suite / "summary.md").write_text("# Benchmark suite\n\n" + header + "\n\n" + "\n".join(table).replace("(benches/reports/", "(../") + "\n")

readme = ROOT / "README.md"
text = readme.read_text(encoding="utf-8")
start, end = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"
if start in text and end in text:
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    text = before + start + "\n" + header + "\n\n" + "\n".join(table) + "\n" + end + after
    readme.write_text(text, encoding="utf-8")
print(header)
print("\n".join(table))
