// The timeline: uPlot (vendored, served by the binary), a bar per window from the oldest held
// (at most TIMELINE_WINDOWS before the newest) to the newest, a window without a message drawn
// as zero; the live windows or the longer ones (summaries), switchable.

export const TIMELINE_WINDOWS = 90;
// Finals, windows still open, the mark of a corrected window, the axis.
const COLOURS = {
  final: "#e0a030", open: "rgba(224, 160, 48, 0.4)", summary: "#5aa0e0",
  openSummary: "rgba(90, 160, 224, 0.4)", revised: "#ff5a6e", axis: "#778",
};
const AXIS_HEIGHT = 14;

/**
 * The timeline in `box`, drawing `series()` ("live" or "summary") of the windows
 * `windows(series)` gives ({seq, size, events, state, revised}, sorted by seq).
 */
export function timeline(box, windows) {
  let series = "live";
  let half = 1; // half a window, s
  let requested = false;
  const plot = new window.uPlot({
    width: 360,
    height: 120,
    legend: { show: false },
    cursor: { show: false },
    // Each window's bar spans its time: centred on its middle, the scale half a window wider
    // on each side (seconds, labelled in UTC like the header).
    scales: {
      x: { time: true, range: (u, min, max) => [min - half, max + half] },
      y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
    },
    axes: [
      { stroke: COLOURS.axis, grid: { show: false }, ticks: { stroke: COLOURS.axis, size: 4 },
        font: "10px system-ui, sans-serif", size: AXIS_HEIGHT + 6, space: 56,
        values: (u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(11, 19)) },
      { stroke: COLOURS.axis, grid: { stroke: "#2a2a36" }, ticks: { show: false },
        font: "10px system-ui, sans-serif", size: 36, space: 24 },
    ],
    series: [
      {},
      { fill: () => (series === "summary" ? COLOURS.summary : COLOURS.final),
        paths: window.uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false }, width: 0 },
      { fill: () => (series === "summary" ? COLOURS.openSummary : COLOURS.open),
        paths: window.uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false }, width: 0 },
      { paths: () => null,
        points: { show: true, size: 5, width: 0, fill: COLOURS.revised, stroke: COLOURS.revised } },
    ],
  }, [[], [], [], []], box);

  // The plot follows its box's size (drawing never reads layout).
  new ResizeObserver(([entry]) => {
    const { width, height } = entry.contentRect;
    if (width > 0 && height > 0) plot.setSize({ width: Math.round(width), height: Math.round(height) });
  }).observe(box);

  /** The columns: every window from the oldest held to the newest, at each window's middle. */
  function columns(shown) {
    const xs = [], finals = [], opens = [], marks = [];
    if (shown.length === 0) return [xs, finals, opens, marks];
    const { seq: newest, size } = shown[shown.length - 1];
    const oldest = Math.max(newest - TIMELINE_WINDOWS + 1, shown[0].seq);
    half = size / 2000;
    const bySeq = new Map(shown.map((w) => [w.seq, w]));
    for (let seq = oldest; seq <= newest; seq++) {
      const w = bySeq.get(seq);
      const open = w?.state === "open";
      xs.push((seq * size) / 1000 + half);
      finals.push(open ? null : (w?.events ?? 0));
      opens.push(open ? w.events : null);
      marks.push(w?.revised ? w.events : null);
    }
    return [xs, finals, opens, marks];
  }

  function draw() {
    const shown = windows(series);
    box.dataset.series = series;
    box.dataset.points = String(shown.length);
    box.dataset.total = String(shown.reduce((n, w) => n + w.events, 0));
    const data = columns(shown);
    box.dataset.columns = String(data[0].length);
    plot.setData(data);
  }

  return {
    /** Draws in the next animation frame: once however many messages come in it. */
    redraw() {
      if (requested) return;
      requested = true;
      requestAnimationFrame(() => {
        requested = false;
        draw();
      });
    },
    show(name) {
      series = name;
      box.dataset.series = series;
      this.redraw();
    },
    get series() {
      return series;
    },
  };
}
