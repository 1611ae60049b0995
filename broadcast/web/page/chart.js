// The bar chart of the newest window: a row per emoji, updated in place.

/** The chart in `box`: `draw(report)` shows a window's counts, largest first. */
export function barChart(box) {
  // The rows by emoji: {row, fill, n, count, share}.
  const bars = new Map();

  function newBar(emoji) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.emoji = emoji;
    const label = document.createElement("span");
    label.textContent = emoji;
    const track = document.createElement("span");
    const fill = document.createElement("span");
    fill.className = "fill";
    track.appendChild(fill);
    const n = document.createElement("span");
    n.className = "n";
    row.append(label, track, n);
    return { row, fill, n, count: null, share: null };
  }

  function draw(report) {
    const max = Math.max(1, ...report.emojis.map((e) => e.count));
    const shown = report.emojis.slice().sort((a, b) => b.count - a.count || (a.emoji < b.emoji ? -1 : 1));
    const rows = shown.map((e) => {
      let bar = bars.get(e.emoji);
      if (!bar) {
        bar = newBar(e.emoji);
        bars.set(e.emoji, bar);
      }
      if (bar.count !== e.count) {
        bar.count = e.count;
        bar.n.textContent = e.count;
      }
      const share = e.count / max;
      if (bar.share !== share) {
        bar.share = share;
        bar.fill.style.transform = `scaleX(${share})`;
      }
      return bar.row;
    });
    // Nodes move only when the order or the set of emojis changed.
    const children = box.children;
    if (children.length !== rows.length || rows.some((row, i) => children[i] !== row)) {
      box.replaceChildren(...rows);
      for (const emoji of bars.keys()) if (!report.emojis.some((e) => e.emoji === emoji)) bars.delete(emoji);
    }
  }

  return { draw };
}
