// EmoStream live page: registers, connects to its broadcaster, shows each window as a
// swarm of rising emojis, a bar chart and a timeline, and sends taps to the ingest API.
"use strict";

const config = window.EMOSTREAM || {};
// The emojis the deployment accepts (`--emojis`, served in config.js): one button each.
const EMOJIS = config.emojis && config.emojis.length ? config.emojis : ["🔥", "😂", "👏"];
const TIMELINE_WINDOWS = 90;
// The swarm floats one emoji per tap while a message adds at most this many taps, and this
// many in all, shared out by emoji, when it adds more.
const FLOATS_PER_MESSAGE = 40;
// Floats on the page at once, at most (each until its batch has risen, about 4 s): the
// swarm's cost to the page does not grow with the audience.
const MAX_FLOATS = 200;
// Timeline colours: finals, windows still open, the mark of a corrected window, the axis.
const TIMELINE_COLOURS = {
  final: "#e0a030", open: "rgba(224, 160, 48, 0.4)", summary: "#5aa0e0",
  openSummary: "rgba(90, 160, 224, 0.4)", revised: "#ff5a6e", axis: "#778",
};
const AXIS_HEIGHT = 14;

const ingestUrl = (config.ingestUrl || "").replace(/\/$/, "");
const clientId = sessionStorage.getItem("emostream-client") || `viewer-${Math.random().toString(36).slice(2, 10)}`;
sessionStorage.setItem("emostream-client", clientId);

const state = document.getElementById("state");
const meta = document.getElementById("meta");
const swarm = document.getElementById("swarm");
const chart = document.getElementById("chart");
const timeline = document.getElementById("timeline");
// The windows held, oldest first: {seq, size, events, counts, revision, state, revised, at}.
const history = [];
// Windows of the longer size (the per-minute timeline), when the broadcaster serves them.
const summaries = [];
let series = "live";
let lastSeq = null;
// The newest window held final: a reconnection resumes after it.
let lastFinal = null;
let attempt = 0;
let epoch = null; // eslint-disable-line no-unused-vars
// Window frames still to come from the ring (the snapshot on connect, a resume): history,
// shown on the chart and the timeline without a swarm.
let fromRing = 0;
// How far apart a window's live messages come (ms, smoothed): the swarm spreads a message's
// floats over it. Unknown until a window has had two; finals only, it stays unknown.
let updateGap = null;

function setState(name) {
  state.dataset.state = name;
  state.textContent = name;
}

// ---- The swarm: batches of floats, each batch one compositor animation (transform only) ----
//
// A message's floats go up together in one batch, each placed as far below the swarm as its
// moment in the message's spread is later: a float 100 ms later comes up 100 ms later. A new
// frame restyles a handful of batches, not every float. Batches rise in steps of STEP_MS, all
// on the same beat, so the page is drawn again at most 1000 / STEP_MS times a second however
// many batches rise (drawn in software, a frame of the rising swarm costs more than all else).

// Rising for RISE_MS moves a float up 110vh (out of the swarm); a batch goes on to 150vh, so
// a float may start up to (150 - 110) / 110 of RISE_MS late.
const RISE_MS = 2800;
const RISE_VH = 110;
const BATCH_VH = 150;
const LATEST_START_MS = (RISE_MS * (BATCH_VH - RISE_VH)) / RISE_VH;
const STEP_MS = 1000 / 30;
const BATCH_STEPS = Math.round((RISE_MS * BATCH_VH) / RISE_VH / STEP_MS);
// Own taps join the batch of the tap before when it left this recently.
const TAP_BATCH_MS = 300;
// {el, floats, startedAt, endsAt (performance.now() ms)} of the batches on the page.
let batches = [];
let tapBatch = null;
let floatsStarted = 0;
const thousands = new Intl.NumberFormat("en");

/** A new batch, rising from the next beat on; batches that are out of the swarm go. */
function newBatch(now) {
  for (const batch of batches) if (batch.endsAt <= now) batch.el.remove();
  batches = batches.filter((batch) => batch.endsAt > now);
  const el = document.createElement("div");
  el.className = "batch";
  swarm.appendChild(el);
  const rise = el.animate([{ transform: "none" }, { transform: `translateY(-${BATCH_VH}vh)` }],
    { duration: BATCH_STEPS * STEP_MS, easing: `steps(${BATCH_STEPS})`, fill: "forwards" });
  const startedAt = Math.ceil(document.timeline.currentTime / STEP_MS) * STEP_MS;
  rise.startTime = startedAt;
  const batch = { el, floats: 0, startedAt, endsAt: startedAt + BATCH_STEPS * STEP_MS };
  batches.push(batch);
  return batch;
}

/** Floats that may still start: MAX_FLOATS less those rising. */
function floatRoom(now) {
  return MAX_FLOATS - batches.reduce((n, batch) => n + (batch.endsAt > now ? batch.floats : 0), 0);
}

/**
 * Adds a float to `batch` that comes up `at` ms after the batch started; `taps` > 1 is shown
 * by a bigger size, a step for each factor of ten up to 10,000, and with `label` as ×taps.
 */
function addFloat(batch, emoji, source, taps, at, label = false) {
  const el = document.createElement("span");
  el.className = "float";
  el.dataset.source = source;
  el.textContent = emoji;
  if (label && taps > 1) {
    const times = document.createElement("small");
    times.textContent = `×${thousands.format(taps)}`;
    el.appendChild(times);
  }
  const below = (RISE_VH * at) / RISE_MS;
  el.style.cssText = `left: ${(Math.random() * 90).toFixed(1)}%; top: ${below.toFixed(2)}vh; `
    + `font-size: ${2 + 0.3 * Math.min(4, Math.floor(Math.log10(taps)))}rem; transform: rotate(${Math.round(Math.random() * 40 - 20)}deg)`;
  batch.el.appendChild(el);
  batch.floats += 1;
  floatsStarted += 1;
}

/** Floats one own tap at once (when fewer than MAX_FLOATS are rising). */
function floatTap(emoji) {
  const now = performance.now();
  if (floatRoom(now) <= 0) return;
  if (tapBatch === null || now - tapBatch.startedAt > TAP_BATCH_MS) tapBatch = newBatch(now);
  addFloat(tapBatch, emoji, "tap", 1, Math.max(0, now - tapBatch.startedAt));
  swarm.dataset.floats = String(floatsStarted);
}

/**
 * How many floats each emoji gets for the taps a message added (emoji -> taps): one per tap
 * when they are at most `budget`; else `budget` shared by each emoji's part of the taps
 * (largest remainder), at least one for every emoji that got taps while the budget lasts.
 */
function apportion(added, budget) {
  const entries = [...added].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (total <= budget) return new Map(entries);
  if (entries.length >= budget) return new Map(entries.slice(0, budget).map(([emoji]) => [emoji, 1]));
  // Each quota is below the emoji's taps: no emoji gets more floats than taps.
  const quotas = entries.map(([emoji, n]) => {
    const quota = (n * budget) / total;
    const floats = Math.max(1, Math.floor(quota));
    return { emoji, floats, rest: quota - floats };
  });
  let left = budget - quotas.reduce((sum, q) => sum + q.floats, 0);
  // Too many minimums of one: take back from the largest shares.
  for (let i = 0; left < 0; i = (i + 1) % quotas.length) {
    if (quotas[i].floats > 1) { quotas[i].floats -= 1; left += 1; }
  }
  for (const q of quotas.slice().sort((a, b) => b.rest - a.rest)) {
    if (left === 0) break;
    q.floats += 1;
    left -= 1;
  }
  return new Map(quotas.map((q) => [q.emoji, q.floats]));
}

/** Floats what a live message added, spread over `spread` ms from now. */
function floatSwarm(added, spread) {
  const now = performance.now();
  const shares = apportion(added, Math.max(0, Math.min(FLOATS_PER_MESSAGE, floatRoom(now))));
  if (shares.size === 0) return;
  const batch = newBatch(now);
  for (const [emoji, n] of shares) {
    const taps = Math.round(added.get(emoji) / n);
    // Each emoji's first float says how many taps each stands for (labels cost text layout).
    for (let i = 0; i < n; i++) addFloat(batch, emoji, "window", taps, Math.random() * Math.min(spread, LATEST_START_MS), i === 0);
  }
  swarm.dataset.floats = String(floatsStarted);
}

// ---- The chart and the timeline ----

let timelineRequested = false;

/** Draws the timeline in the next animation frame: once however many messages come in it. */
function redrawTimeline() {
  if (timelineRequested) return;
  timelineRequested = true;
  requestAnimationFrame(() => {
    timelineRequested = false;
    drawTimeline();
  });
}

// The chart's rows by emoji, updated in place: {row, fill, n, count, share}.
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

function drawChart(report) {
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
  const children = chart.children;
  if (children.length !== rows.length || rows.some((row, i) => children[i] !== row)) {
    chart.replaceChildren(...rows);
    for (const emoji of bars.keys()) if (!report.emojis.some((e) => e.emoji === emoji)) bars.delete(emoji);
  }
}

// The timeline: uPlot (vendored, served by the binary), a bar per window from the oldest held
// (at most TIMELINE_WINDOWS before the newest) to the newest, a window without a message
// drawn as zero.
let timelineHalf = 1; // half a window, s
const timelinePlot = new uPlot({
  width: 360,
  height: 120,
  legend: { show: false },
  cursor: { show: false },
  // Each window's bar spans its time: centred on its middle, the scale half a window wider
  // on each side (seconds, labelled in UTC like the header).
  scales: {
    x: { time: true, range: (u, min, max) => [min - timelineHalf, max + timelineHalf] },
    y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
  },
  axes: [
    { stroke: TIMELINE_COLOURS.axis, grid: { show: false }, ticks: { stroke: TIMELINE_COLOURS.axis, size: 4 },
      font: "10px system-ui, sans-serif", size: AXIS_HEIGHT + 6, space: 56,
      values: (u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(11, 19)) },
    { stroke: TIMELINE_COLOURS.axis, grid: { stroke: "#2a2a36" }, ticks: { show: false },
      font: "10px system-ui, sans-serif", size: 36, space: 24 },
  ],
  series: [
    {},
    { fill: () => (series === "summary" ? TIMELINE_COLOURS.summary : TIMELINE_COLOURS.final),
      paths: uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false }, width: 0 },
    { fill: () => (series === "summary" ? TIMELINE_COLOURS.openSummary : TIMELINE_COLOURS.open),
      paths: uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false }, width: 0 },
    { paths: () => null,
      points: { show: true, size: 5, width: 0, fill: TIMELINE_COLOURS.revised, stroke: TIMELINE_COLOURS.revised } },
  ],
}, [[], [], [], []], timeline);

// The plot follows its box's size (drawing never reads layout).
new ResizeObserver(([entry]) => {
  const { width, height } = entry.contentRect;
  if (width > 0 && height > 0) timelinePlot.setSize({ width: Math.round(width), height: Math.round(height) });
}).observe(timeline);

/** The timeline's columns: every window from the oldest held to the newest (held windows are
 * sorted by seq), at each window's middle. */
function timelineData(shown) {
  const xs = [], finals = [], opens = [], marks = [];
  if (shown.length === 0) return [xs, finals, opens, marks];
  const { seq: newest, size } = shown[shown.length - 1];
  const oldest = Math.max(newest - TIMELINE_WINDOWS + 1, shown[0].seq);
  timelineHalf = size / 2000;
  const bySeq = new Map(shown.map((w) => [w.seq, w]));
  for (let seq = oldest; seq <= newest; seq++) {
    const w = bySeq.get(seq);
    const open = w?.state === "open";
    xs.push((seq * size) / 1000 + timelineHalf);
    finals.push(open ? null : (w?.events ?? 0));
    opens.push(open ? w.events : null);
    marks.push(w?.revised ? w.events : null);
  }
  return [xs, finals, opens, marks];
}

function drawTimeline() {
  const shown = series === "summary" ? summaries : history;
  timeline.dataset.series = series;
  timeline.dataset.points = String(shown.length);
  timeline.dataset.total = String(shown.reduce((n, w) => n + w.events, 0));
  const data = timelineData(shown);
  timeline.dataset.columns = String(data[0].length);
  timelinePlot.setData(data);
}

// ---- Messages ----

function showHeader(report) {
  const text = `· window ${report.window_start.slice(11, 19)} · ${thousands.format(report.events)} events`
    + ` · ${thousands.format(report.unique_users)} users`;
  if (meta.textContent !== text) meta.textContent = text;
  // What the page shows, for tests and tools.
  const shown = document.body.dataset;
  shown.seq = String(report.seq);
  shown.windowStart = String(Date.parse(report.window_start));
  shown.windowEnd = String(Date.parse(report.window_end));
  shown.windowState = report.state ?? "final";
}

function showWindow(report, live) {
  // Each window's messages carry a revision (open updates, then the final): keep the highest,
  // and take a window's final even after a newer window's update.
  const revision = report.revision ?? 0;
  const held = history.find((w) => w.seq === report.seq);
  if (held ? revision <= held.revision : history.length > 0 && report.seq < history[0].seq) return;
  const now = performance.now();
  const size = Date.parse(report.window_end) - Date.parse(report.window_start);
  const windowState = report.state ?? "final";
  const before = held ? held.counts : new Map();
  const entry = held || { seq: report.seq, size, revised: false, at: null };
  if (live && windowState === "open" && entry.at !== null) {
    const gap = Math.min(size, Math.max(100, now - entry.at));
    updateGap = updateGap === null ? gap : 0.8 * updateGap + 0.2 * gap;
  }
  if (live) entry.at = now;
  entry.events = report.events;
  entry.revision = revision;
  entry.state = windowState;
  entry.revised ||= windowState === "revised";
  entry.counts = new Map(report.emojis.map((e) => [e.emoji, e.count]));
  if (!held) {
    history.push(entry);
    history.sort((a, b) => a.seq - b.seq);
    while (history.length > TIMELINE_WINDOWS) history.shift();
  }
  if (windowState !== "open") lastFinal = Math.max(lastFinal ?? report.seq, report.seq);
  if (lastSeq === null || report.seq >= lastSeq) {
    lastSeq = report.seq;
    drawChart(report);
    showHeader(report);
  }
  redrawTimeline();
  document.body.dataset.windows = String(history.length);
  if (!live) return;
  // The swarm: what this message added to the window (exact counts), spread over the time
  // to the window's next message.
  const added = new Map();
  for (const e of report.emojis) {
    const n = e.count - (before.get(e.emoji) || 0);
    if (n > 0) added.set(e.emoji, n);
  }
  floatSwarm(added, Math.min(size, updateGap ?? size));
}

function showSummary(report) {
  if (summaries.some((w) => w.seq === report.seq)) return;
  const size = Date.parse(report.window_end) - Date.parse(report.window_start);
  summaries.push({ seq: report.seq, size, events: report.events, state: "final", revised: false });
  summaries.sort((a, b) => a.seq - b.seq);
  while (summaries.length > TIMELINE_WINDOWS) summaries.shift();
  const button = document.querySelector('#series button[data-series="summary"]');
  if (button.disabled) {
    button.textContent = size === 60000 ? "per minute" : `per ${size / 1000} s`;
    button.disabled = false;
    button.title = "";
  }
  if (series === "summary") redrawTimeline();
}

for (const button of document.querySelectorAll("#series button")) {
  button.addEventListener("click", () => {
    series = button.dataset.series;
    timeline.dataset.series = series;
    for (const other of document.querySelectorAll("#series button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    redrawTimeline();
  });
}

async function register() {
  const response = await fetch("register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: clientId }),
  });
  if (!response.ok) throw new Error(`registration failed: ${response.status}`);
  return response.json();
}

function reconnectLater() {
  setState("reconnecting");
  // Jittered exponential backoff, at most 10 s.
  const delay = Math.min(10000, 500 * 2 ** attempt) * (0.5 + Math.random());
  attempt += 1;
  setTimeout(connect, delay);
}

async function connect() {
  let registration;
  try {
    registration = await register();
  } catch (error) {
    reconnectLater();
    return;
  }
  const socket = new WebSocket(registration.ws_url);
  socket.onopen = () => {
    attempt = 0;
    setState("live");
    const resumeAfter = lastFinal ?? lastSeq;
    if (resumeAfter !== null) socket.send(JSON.stringify({ type: "resume", last_seq: resumeAfter }));
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") {
      // A new epoch is a restarted broadcaster; resuming by seq still works with it.
      epoch = message.epoch;
      meta.dataset.cluster = message.cluster;
      fromRing = message.snapshot ?? 0;
    } else if (message.type === "resumed") {
      fromRing += message.windows;
    } else if (message.type === "window") {
      showWindow(message, fromRing === 0);
      fromRing = Math.max(0, fromRing - 1);
    } else if (message.type === "summary") {
      showSummary(message);
    }
  };
  socket.onclose = () => reconnectLater();
  socket.onerror = () => socket.close();
}

/** Posts one tap to the ingest API; resolves whether it was accepted. */
async function post(emoji) {
  try {
    const response = await fetch(`${ingestUrl}/emoji`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: clientId, emoji_type: emoji }),
    });
    return response.ok;
  } catch (error) {
    return false;
  }
}

function tap(emoji) {
  floatTap(emoji);
  post(emoji);
}

// The automated sender: while on, this browser taps by itself at a chosen rate (1 to 50 per
// second) with a chosen mix, through the same ingest API as the buttons.
const MIXES = {
  match: EMOJIS.map((_, k) => 1 / (k + 1) ** 1.1), // skewed, like the simulator's
  even: EMOJIS.map(() => 1),
  fire: EMOJIS.map((emoji) => (emoji === "🔥" ? 1 : 0)),
};
const senderToggle = document.getElementById("sender-toggle");
const senderRate = document.getElementById("sender-rate");
const senderMix = document.getElementById("sender-mix");
const senderSent = document.getElementById("sender-sent");
const senderAccepted = document.getElementById("sender-accepted");
let senderTimer = null;
let sentCount = 0;
let acceptedCount = 0;

function pick(weights) {
  const total = weights.reduce((a, b) => a + b, 0);
  let x = Math.random() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i];
    if (x < 0) return EMOJIS[i];
  }
  return EMOJIS[weights.findLastIndex((w) => w > 0)];
}

async function sendAutomatically() {
  const emoji = pick(MIXES[senderMix.value] || MIXES.match);
  sentCount += 1;
  senderSent.textContent = sentCount;
  if (await post(emoji)) {
    acceptedCount += 1;
    senderAccepted.textContent = acceptedCount;
  }
}

function startSender() {
  const rate = Math.min(50, Math.max(1, Math.round(Number(senderRate.value) || 10)));
  senderRate.value = rate;
  clearInterval(senderTimer);
  senderTimer = setInterval(sendAutomatically, 1000 / rate);
  senderToggle.setAttribute("aria-pressed", "true");
  senderToggle.textContent = "stop automated sender";
}

function stopSender() {
  clearInterval(senderTimer);
  senderTimer = null;
  senderToggle.setAttribute("aria-pressed", "false");
  senderToggle.textContent = "start automated sender";
}

senderToggle.addEventListener("click", () => (senderTimer === null ? startSender() : stopSender()));
senderRate.addEventListener("change", () => { if (senderTimer !== null) startSender(); });

const buttons = document.getElementById("buttons");
for (const emoji of EMOJIS) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = emoji;
  button.title = `send ${emoji}`;
  button.addEventListener("click", () => tap(emoji));
  buttons.appendChild(button);
}
if (!ingestUrl) {
  buttons.title = "no ingest URL configured";
}
connect();
