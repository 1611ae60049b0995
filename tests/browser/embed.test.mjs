// <emostream-swarm> embedded by a page of another site, in a real headless Chromium: the page
// (a static file on another port, listed in the broadcasters' --ws-origins) loads the module
// from a broadcaster and puts the element over a <video>; taps go through the element to an
// ingest that requires viewer tokens; the broadcaster the element is connected to is killed,
// and the element moves to the cluster's other one without missing a final.
//
// Needs EMOSTREAM_BROKERS (make test starts a broker) and the emostream binary
// (EMOSTREAM_BIN, default target/debug/emostream).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.EMOSTREAM_BIN || "target/debug/emostream";
const brokers = process.env.EMOSTREAM_BROKERS;

/** Starts `emostream <args>`; resolves the child and the addresses of its ready file. */
async function start(args) {
  const readyFile = join(mkdtempSync(join(tmpdir(), "emostream-")), "ready.json");
  const child = spawn(bin, args, {
    env: { ...process.env, EMOSTREAM_BROKERS: brokers, EMOSTREAM_READY_FILE: readyFile, RUST_LOG: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  let exited = null;
  child.on("exit", (code) => { exited = code; });
  await until(() => {
    if (exited !== null) throw new Error(`emostream ${args[0]} exited with ${exited}`);
    try {
      child.ready = JSON.parse(readFileSync(readyFile, "utf8"));
      return true;
    } catch {
      return false;
    }
  }, 60_000, `emostream ${args[0]} to be up`);
  return child;
}

/** Runs `emostream <args>` to its end; resolves its standard output. */
function run(args) {
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk) => { out += chunk; });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`emostream ${args[0]} exited with ${code}`))));
  });
}

/** Resolves once `condition()` holds, checking every 50 ms; rejects after `timeout` ms. */
async function until(condition, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test("a page of another site embeds the swarm, taps through it, and survives its broadcaster's death", { timeout: 240_000 }, async () => {
  assert.ok(brokers, "EMOSTREAM_BROKERS must name a broker: run make test");
  const name = `embed-${process.pid}-${Date.now()}`;
  const topics = {
    events: `${name}-events`, windows: `${name}-windows`, prefix: `${name}-cluster`, registry: `${name}-registry`,
  };
  const secret = `${name}-secret`;
  const children = [];
  const site = createServer();
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${site.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
  });
  try {
    // The ingest takes taps only with a viewer token; two broadcasters serve cluster 1.
    const ingest = await start(["ingest", "--listen", "127.0.0.1:0", "--linger", "5ms", "--events-topic", topics.events,
      "--viewer-tokens", "--token-secret", secret]);
    children.push(ingest);
    children.push(await start(["dataflow", "--events-topic", topics.events, "--windows-topic", topics.windows,
      "--late-topic", `${name}-late`, "--cluster-prefix", topics.prefix, "--clusters", "1", "--group", `${name}-group`,
      "--window", "2s", "--updates", "250ms", "--idle-timeout", "6s", "--metrics-listen", "127.0.0.1:0"]));
    const ingestUrl = `http://${ingest.ready.ingest}`;
    const broadcasters = [];
    for (let i = 0; i < 2; i++) {
      const b = await start(["broadcast", "--listen", "127.0.0.1:0", "--cluster", "1", "--cluster-prefix", topics.prefix,
        "--registry-topic", topics.registry, "--token-secret", secret, "--ws-origins", origin, "--ingest-url", ingestUrl]);
      b.url = `http://${b.ready.broadcast[0]}`;
      broadcasters.push(b);
      children.push(b);
    }
    // The site's page: its own video, the element over it, the module from a broadcaster.
    const [first, second] = broadcasters;
    const page = `<!doctype html><html><head><meta charset="utf-8"><title>Match</title></head>
<body style="margin:0;background:#000">
<div id="player" style="position:relative;width:640px;height:360px">
  <video width="640" height="360" muted playsinline style="display:block;background:#123"></video>
  <emostream-swarm style="position:absolute;inset:0" broadcaster="${first.url} ${second.url}" ingest="${ingestUrl}"
    buttons></emostream-swarm>
</div>
<script type="module" src="${first.url}/emostream.js"></script>
</body></html>`;
    site.on("request", (request, response) => response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page));

    const tab = await browser.newPage({ viewport: { width: 700, height: 400 } });
    const errors = [];
    tab.on("pageerror", (error) => errors.push(String(error)));
    await tab.goto(`${origin}/match.html`);
    await tab.waitForSelector('emostream-swarm[data-state="live"]', { timeout: 30_000 });
    // Transparent, over the video, sized by the player.
    const box = await tab.locator("emostream-swarm").boundingBox();
    assert.deepEqual([box.width, box.height], [640, 360]);

    const element = (f) => tab.evaluate(f);
    const windowsSeen = () => element(() => document.querySelector("emostream-swarm").client.windows.list()
      .map((w) => ({ seq: w.seq, revision: w.revision, state: w.state, events: w.events,
        fire: w.emojis.find((e) => e.emoji === "🔥")?.count ?? 0 })));
    const fires = async () => (await windowsSeen()).reduce((n, w) => n + w.fire, 0);
    const taps = async () => (await windowsSeen()).reduce((n, w) => n + w.events, 0);

    // Taps through the element: each floats at once, and comes back in the windows.
    for (let i = 0; i < 5; i++) await tab.getByRole("button", { name: "🔥" }).click();
    await tab.waitForSelector('.float[data-source="tap"]', { state: "attached", timeout: 5_000 });
    await until(async () => (await fires()) === 5, 60_000, "5 🔥 in the element's windows");
    await tab.waitForSelector('.float[data-source="window"]', { state: "attached", timeout: 10_000 });

    // Taps go on (😂, through the element, five a second) while the broadcaster the element
    // is connected to is killed: windows close while it moves to the other one.
    await element(() => {
      const swarm = document.querySelector("emostream-swarm");
      Object.assign(window, { sent: 0, answered: 0, accepted: 0 });
      window.tapping = setInterval(() => {
        window.sent += 1;
        swarm.tap("😂").then((taken) => {
          window.answered += 1;
          if (taken) window.accepted += 1;
        });
      }, 200);
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const connectedTo = await element(() => document.querySelector("emostream-swarm").client.registration.ws_url);
    const viewer = await element(() => document.querySelector("emostream-swarm").client.clientId);
    const [gone, other] = connectedTo.startsWith(first.url.replace("http", "ws")) ? [first, second] : [second, first];
    gone.kill("SIGKILL");
    await tab.waitForSelector('emostream-swarm[data-state="reconnecting"]', { state: "attached", timeout: 10_000 });
    await tab.waitForSelector('emostream-swarm[data-state="live"]', { state: "attached", timeout: 30_000 });
    const movedTo = await element(() => document.querySelector("emostream-swarm").client.registration.ws_url);
    assert.ok(movedTo.startsWith(other.url.replace("http", "ws")), `moved to the other broadcaster: ${movedTo}`);
    assert.equal(await element(() => document.querySelector("emostream-swarm").client.clientId), viewer, "the same viewer");
    await new Promise((resolve) => setTimeout(resolve, 3000));
    for (let i = 0; i < 3; i++) await tab.getByRole("button", { name: "🔥" }).click();
    await element(() => clearInterval(window.tapping));
    await tab.waitForFunction(() => window.answered === window.sent, null, { timeout: 10_000 });
    const { sent, accepted } = await element(() => ({ sent: window.sent, accepted: window.accepted }));
    assert.equal(accepted, sent, "every tap during the move was accepted");
    await until(async () => (await fires()) === 8 && (await taps()) === 8 + accepted, 60_000,
      `8 🔥 and ${accepted} 😂 in the element's windows`);
    // Every window with taps final at the element.
    await until(async () => (await windowsSeen()).every((w) => w.fire === 0 || w.state !== "open"), 30_000, "the finals");

    // What the element holds is what was published: every window of the windows topic in
    // its span, final, at its highest revision.
    const seen = await windowsSeen();
    const published = new Map();
    for (const line of (await run(["windows", "--brokers", brokers, "--topic", topics.windows])).split("\n").filter(Boolean)) {
      const w = JSON.parse(line);
      if ((published.get(w.seq)?.revision ?? -1) < w.revision) published.set(w.seq, w);
    }
    const finals = seen.filter((w) => w.state !== "open").map((w) => w.seq);
    const [low, high] = [Math.min(...seen.map((w) => w.seq)), Math.max(...finals)];
    const expected = [...published.values()].filter((w) => w.seq >= low && w.seq <= high)
      .map((w) => ({ seq: w.seq, revision: w.revision, state: w.state })).sort((a, b) => a.seq - b.seq);
    const held = seen.filter((w) => w.seq <= high).map(({ seq, revision, state }) => ({ seq, revision, state }));
    assert.ok(expected.length >= 1, "windows were published");
    assert.deepEqual(held.filter((w) => published.has(w.seq)), expected, "the element's finals are the windows topic's");

    // Counted as the token's viewer: every tap in the events topic is the viewer's.
    const log = join(mkdtempSync(join(tmpdir(), "emostream-")), "events.csv");
    await run(["record", "--brokers", brokers, "--topic", topics.events, "--out", log]);
    const rows = readFileSync(log, "utf8").trim().split("\n").slice(1);
    assert.equal(rows.length, 8 + accepted, "every tap in the events topic");
    console.log(`${8 + accepted} taps, ${expected.length} windows published between seq ${low} and ${high}, `
      + `every one held final at its revision; moved from ${gone.url} to ${other.url}`);
    assert.ok(rows.every((row) => row.split(",")[0] === viewer), `every tap is ${viewer}'s: ${rows.join(" | ")}`);
    assert.deepEqual(errors, [], "no errors on the page");
    await tab.screenshot({ path: "target/embed.png" });
  } finally {
    await browser.close();
    for (const child of children) child.kill("SIGTERM");
    site.close();
  }
});
