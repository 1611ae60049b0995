#!/usr/bin/env bash
# Criterion micro-benchmarks of the hot paths (JSON event decoding, timestamp parsing, row
# decoding, window counting). Writes benches/reports/<date>-micro/ with the commands,
# machine, raw estimates (CSV) and summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

report=benches/reports/$(date -u +%F)-${REPORT_NAME:-micro}
mkdir -p "$report/raw"
machine_info > "$report/machine.txt"
echo "cargo bench --bench hot_paths" > "$report/commands.txt"
cargo bench --bench hot_paths 2>&1 | tee "$report/raw/criterion.txt" | grep -E '^[a-z_]+/|time:' || true
python3 - "$report" <<'PY'
import json, sys
from pathlib import Path
report = Path(sys.argv[1])
rows = []
for estimates in sorted(Path("target/criterion").glob("*/*/new/estimates.json")):
    group, name = estimates.parts[-4], estimates.parts[-3]
    if group == "report" or name == "report":
        continue
    e = json.loads(estimates.read_text())
    bench = json.loads((estimates.parent / "benchmark.json").read_text())
    elements = (bench.get("throughput") or {}).get("Elements", 1)
    median = e["median"]["point_estimate"]
    rows.append((group, name, median, elements))
(report / "raw" / "estimates.csv").write_text(
    "group,benchmark,median_ns,elements\n" + "".join(f"{g},{n},{m:.1f},{el}\n" for g, n, m, el in rows))
lines = ["# Micro-benchmarks of the hot paths", "", (report / "machine.txt").read_text().strip().replace("\n", "  \n"), "",
         "| group | benchmark | median per iteration | per element | elements/s |", "| --- | --- | ---: | ---: | ---: |"]
for g, n, m, el in rows:
    lines.append(f"| {g} | {n} | {m:,.0f} ns | {m / el:,.1f} ns | {1e9 * el / m:,.0f} |")
(report / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
