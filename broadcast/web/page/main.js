// The live page, composed: <emostream-swarm> (the connection and the swarm, from the client
// library the broadcaster serves), the bar chart and the timeline of its windows, the emoji
// buttons and, with --demo-sender, the automated sender.

import "../emostream.js";
import { barChart } from "./chart.js";
import { sender } from "./sender.js";
import { TIMELINE_WINDOWS, timeline } from "./timeline.js";

const config = window.EMOSTREAM || {};
// The emojis the deployment accepts (`--emojis`, served in config.js): one button each.
const EMOJIS = config.emojis && config.emojis.length ? config.emojis : ["🔥", "😂", "👏"];
const thousands = new Intl.NumberFormat("en");

const stateBadge = document.getElementById("state");
const meta = document.getElementById("meta");
const chart = barChart(document.getElementById("chart"));

// The element registers where its module came from, this broadcaster (under a proxy's path
// too), and keeps the viewer's token for the tab's session: a reload is the same viewer.
const swarm = document.createElement("emostream-swarm");
swarm.id = "swarm";
swarm.setAttribute("aria-label", "emoji swarm");
if (config.ingestUrl) swarm.setAttribute("ingest", config.ingestUrl);
document.getElementById("stage").appendChild(swarm);
const client = swarm.client;

// The longer windows (the per-minute timeline), when the broadcaster serves them.
const summaries = [];
const shape = (w) => ({
  seq: w.seq, size: Date.parse(w.window_end) - Date.parse(w.window_start), events: w.events,
  state: w.state ?? "final", revised: w.state === "revised",
});
const plot = timeline(document.getElementById("timeline"), (series) => (series === "summary"
  ? summaries
  : client.windows.list().slice(-TIMELINE_WINDOWS).map(shape)));
let newest = null;

function showHeader(report) {
  const text = `· window ${report.window_start.slice(11, 19)} · ${thousands.format(report.events)} events`
    + ` · ${thousands.format(report.unique_users)} users`;
  if (meta.textContent !== text) meta.textContent = text;
  // What the page shows, for tests and tools.
  const shown = document.body.dataset;
  shown.seq = String(report.seq);
  shown.windowStart = String(Date.parse(report.window_start));
  shown.windowEnd = String(Date.parse(report.window_end));
  shown.windowState = report.state;
}

client.on("state", ({ state }) => {
  stateBadge.dataset.state = state;
  stateBadge.textContent = state;
});
client.on("hello", (hello) => {
  meta.dataset.cluster = String(hello.cluster);
});
client.on("window", ({ window: report }) => {
  // The newest window is the chart's; an older one's final (or correction) only redraws the timeline.
  if (newest === null || report.seq >= newest) {
    newest = report.seq;
    chart.draw(report);
    showHeader(report);
  }
  plot.redraw();
  document.body.dataset.windows = String(Math.min(TIMELINE_WINDOWS, client.windows.size));
});
client.on("summary", (report) => {
  if (summaries.some((w) => w.seq === report.seq)) return;
  summaries.push(shape({ ...report, state: "final" }));
  summaries.sort((a, b) => a.seq - b.seq);
  while (summaries.length > TIMELINE_WINDOWS) summaries.shift();
  const button = document.querySelector('#series button[data-series="summary"]');
  if (button.disabled) {
    const size = summaries[0].size;
    button.textContent = size === 60000 ? "per minute" : `per ${size / 1000} s`;
    button.disabled = false;
    button.title = "";
  }
  if (plot.series === "summary") plot.redraw();
});

for (const button of document.querySelectorAll("#series button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#series button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    plot.show(button.dataset.series);
  });
}

const buttons = document.getElementById("buttons");
for (const emoji of EMOJIS) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = emoji;
  button.title = `send ${emoji}`;
  button.addEventListener("click", () => void swarm.tap(emoji));
  buttons.appendChild(button);
}
if (!config.ingestUrl) buttons.title = "no ingest URL configured";
if (config.demoSender) sender(EMOJIS, (emoji) => client.tap(emoji).then((result) => result.accepted, () => false));
