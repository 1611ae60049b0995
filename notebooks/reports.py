"""Where the notebooks find the recorded reports and replay outputs, and put their figures."""

import csv
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benches" / "reports"
FIGURES = Path(os.environ.get("EMOSTREAM_FIGURES", ROOT / "notebooks" / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)


def latest(kind):
    """The newest report of a kind: benches/reports/<date>-<kind>/."""
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}-" + re.escape(kind))
    found = sorted(p for p in REPORTS.iterdir() if pattern.fullmatch(p.name))
    if not found:
        raise FileNotFoundError(f"no {kind} report under {REPORTS}: run make bench")
    return found[-1]


def read_csv(path):
    """The rows of a CSV file as dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_json(path):
    """A JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save(figure, name):
    """Writes a figure as FIGURES/<name>.png and returns its path."""
    path = FIGURES / f"{name}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path
