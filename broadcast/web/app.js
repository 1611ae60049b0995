// EmoStream live page: registers, connects to its broadcaster, shows each window as a
// swarm of rising emojis, a bar chart and a timeline, and sends taps to the ingest API.
"use strict";

const EMOJIS = ["🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌", "😢", "🏏"];
const TIMELINE_WINDOWS = 90;
const MAX_FLOATS_PER_WINDOW = 60;

const config = window.EMOSTREAM || {};
const ingestUrl = (config.ingestUrl || "").replace(/\/$/, "");
const clientId = sessionStorage.getItem("emostream-client") || `viewer-${Math.random().toString(36).slice(2, 10)}`;
sessionStorage.setItem("emostream-client", clientId);

const state = document.getElementById("state");
const meta = document.getElementById("meta");
const swarm = document.getElementById("swarm");
const chart = document.getElementById("chart");
const timeline = document.getElementById("timeline");
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

function setState(name) {
  state.dataset.state = name;
  state.textContent = name;
}

function float(emoji, source) {
  const el = document.createElement("span");
  el.className = "float";
  el.dataset.source = source;
  el.textContent = emoji;
  el.style.left = `${Math.random() * 92}%`;
  el.style.animationDuration = `${2.4 + Math.random() * 1.6}s`;
  el.addEventListener("animationend", () => el.remove());
  swarm.appendChild(el);
}

function drawChart(report) {
  const max = Math.max(1, ...report.emojis.map((e) => e.count));
  chart.replaceChildren(...report.emojis
    .slice()
    .sort((a, b) => b.count - a.count)
    .map((e) => {
      const row = document.createElement("div");
      row.className = "bar";
      row.dataset.emoji = e.emoji;
      const label = document.createElement("span");
      label.textContent = e.emoji;
      const track = document.createElement("span");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(100 * e.count) / max}%`;
      track.appendChild(fill);
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = e.count;
      row.append(label, track, n);
      return row;
    }));
}

function drawTimeline() {
  const ctx = timeline.getContext("2d");
  const { width, height } = timeline;
  ctx.clearRect(0, 0, width, height);
  const shown = series === "summary" ? summaries : history;
  timeline.dataset.series = series;
  timeline.dataset.points = String(shown.length);
  timeline.dataset.total = String(shown.reduce((n, w) => n + w.events, 0));
  const max = Math.max(1, ...shown.map((w) => w.events));
  const step = width / TIMELINE_WINDOWS;
  ctx.fillStyle = series === "summary" ? "#5aa0e0" : "#e0a030";
  shown.forEach((w, i) => {
    const h = (height - 4) * (w.events / max);
    ctx.fillRect(i * step, height - h, Math.max(1, step - 1), h);
  });
}

function showWindow(report, live) {
  // Each window's messages carry a revision (open updates, then the final): keep the highest,
  // and take a window's final even after a newer window's update.
  const revision = report.revision ?? 0;
  const held = history.find((w) => w.seq === report.seq);
  if (held ? revision <= held.revision : history.length > 0 && report.seq < history[0].seq) return;
  const before = held ? held.scaled : {};
  const entry = held || { seq: report.seq };
  entry.events = report.events;
  entry.revision = revision;
  entry.scaled = Object.fromEntries(report.emojis.map((e) => [e.emoji, e.scaled_count]));
  if (!held) {
    history.push(entry);
    history.sort((a, b) => a.seq - b.seq);
    while (history.length > TIMELINE_WINDOWS) history.shift();
  }
  if ((report.state ?? "final") !== "open") lastFinal = Math.max(lastFinal ?? report.seq, report.seq);
  if (lastSeq === null || report.seq >= lastSeq) {
    lastSeq = report.seq;
    drawChart(report);
    meta.textContent = `· window ${report.window_start.slice(11, 19)} · ${report.events} events · ${report.unique_users} users`;
    document.body.dataset.seq = String(report.seq);
  }
  drawTimeline();
  document.body.dataset.windows = String(history.length);
  if (!live) return;
  // The swarm: as many of each emoji as its scaled count says, spread over the window; for a
  // later revision of a window, only what it added.
  let budget = MAX_FLOATS_PER_WINDOW;
  for (const e of report.emojis) {
    const added = e.scaled_count - (before[e.emoji] || 0);
    for (let i = 0; i < added && budget > 0; i++, budget--) {
      setTimeout(() => float(e.emoji, "window"), Math.random() * 1800);
    }
  }
}

function showSummary(report) {
  if (summaries.some((w) => w.seq === report.seq)) return;
  summaries.push({ seq: report.seq, events: report.events });
  summaries.sort((a, b) => a.seq - b.seq);
  while (summaries.length > TIMELINE_WINDOWS) summaries.shift();
  const button = document.querySelector('#series button[data-series="summary"]');
  if (button.disabled) {
    const seconds = (Date.parse(report.window_end) - Date.parse(report.window_start)) / 1000;
    button.textContent = seconds === 60 ? "per minute" : `per ${seconds} s`;
    button.disabled = false;
    button.title = "";
  }
  if (series === "summary") drawTimeline();
}

for (const button of document.querySelectorAll("#series button")) {
  button.addEventListener("click", () => {
    series = button.dataset.series;
    for (const other of document.querySelectorAll("#series button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    drawTimeline();
  });
}

async function register() {
  const response = await fetch("/register", {
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
  float(emoji, "tap");
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
