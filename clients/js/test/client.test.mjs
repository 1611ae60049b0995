// The client's protocol against a fake broadcaster and ingest (real sockets on 127.0.0.1).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwarmClient, WindowStore, apportion } from "../dist/emostream.js";
import { fakeBroadcaster, fakeIngest, until, window } from "./fake.mjs";

/** A client of `broadcasters` with short delays, and what it saw. */
function client(broadcasters, options = {}) {
  const c = new SwarmClient({ broadcaster: broadcasters.map((b) => b.url), minDelay: 20, maxDelay: 200, ...options });
  c.seen = { updates: [], states: [], registered: [] };
  c.on("window", (update) => c.seen.updates.push(update));
  c.on("state", ({ state }) => c.seen.states.push(state));
  c.on("registered", (registration) => c.seen.registered.push(registration));
  return c;
}

test("the highest revision of each window wins, whatever order they come in", async () => {
  const broadcaster = await fakeBroadcaster({ snapshot: [window(4, 3, "final")] });
  const c = client([broadcaster]).start();
  try {
    await until(() => c.state === "live" && c.windows.size === 1, "the snapshot");
    assert.equal(c.seen.updates[0].live, false, "the snapshot is history");
    broadcaster.send(window(5, 1, "open", { "🔥": 1 }));
    broadcaster.send(window(5, 3, "final", { "🔥": 4 }));
    // An older open update after the final (another path, a resume): not taken.
    broadcaster.send(window(5, 2, "open", { "🔥": 2 }));
    broadcaster.send(window(6, 1, "open"));
    await until(() => c.windows.get(6) !== undefined, "window 6");
    assert.equal(c.windows.get(5).revision, 3);
    assert.equal(c.windows.get(5).state, "final");
    assert.deepEqual(c.seen.updates.map((u) => [u.window.seq, u.window.revision, u.live]), [[4, 3, false], [5, 1, true], [5, 3, true], [6, 1, true]]);
    assert.equal(c.seen.updates[2].previous.revision, 1, "the update names what it replaced");
    assert.equal(c.windows.lastFinal, 5);
  } finally {
    await c.close();
    await broadcaster.kill();
  }
});

test("after a reconnect it resumes after the newest final, registering again", async () => {
  const broadcaster = await fakeBroadcaster();
  const c = client([broadcaster]).start();
  try {
    await until(() => c.state === "live", "live");
    broadcaster.send(window(10, 2, "final"));
    broadcaster.send(window(11, 2, "final"));
    broadcaster.send(window(12, 1, "open"));
    await until(() => c.windows.size === 3, "three windows");
    broadcaster.latest().ws.close(4001, "too far behind");
    await until(() => broadcaster.connections.length === 2 && broadcaster.latest().received.length > 0, "a second connection and its resume");
    assert.deepEqual(broadcaster.latest().received[0], { type: "resume", last_seq: 11 });
    assert.equal(broadcaster.registrations.length, 2, "registered again before connecting again");
    assert.ok(c.seen.states.includes("reconnecting"));
    // The resumed windows are history; the final of 12 replaces its open update.
    broadcaster.send({ type: "resumed", windows: 1 });
    broadcaster.send(window(12, 2, "final"));
    await until(() => c.windows.get(12).revision === 2, "the final of 12");
    assert.equal(c.seen.updates.at(-1).live, false);
  } finally {
    await c.close();
    await broadcaster.kill();
  }
});

test("a 503 is waited out as its Retry-After asks, and a refused handshake registers again", async () => {
  const broadcaster = await fakeBroadcaster();
  broadcaster.refuseRegistration = 1;
  broadcaster.refuseHandshake = 1;
  const c = client([broadcaster]).start();
  try {
    await until(() => c.state === "live", "live after the refusals", 10_000);
    const [refused, second, third] = broadcaster.registrations;
    assert.ok(second.at - refused.at >= 1000, `the second registration ${second.at - refused.at} ms after a 503 with Retry-After: 1`);
    assert.ok(third, "registered again after the refused handshake");
    assert.equal(broadcaster.connections.length, 1);
  } finally {
    await c.close();
    await broadcaster.kill();
  }
});

test("when its broadcaster is killed it moves to another and misses no final", async () => {
  const first = await fakeBroadcaster();
  const second = await fakeBroadcaster();
  const c = client([first, second]).start();
  try {
    await until(() => c.state === "live", "live");
    assert.equal(first.connections.length, 1);
    first.send(window(20, 2, "final"));
    first.send(window(21, 1, "open"));
    await until(() => c.windows.size === 2, "two windows");
    await first.kill();
    // The second broadcaster's ring holds the final of 21 (published while the client moved).
    second.snapshot = [window(20, 2, "final"), window(21, 2, "final")];
    await until(() => c.state === "live" && second.connections.length === 1, "on the second broadcaster", 10_000);
    await until(() => c.windows.get(21).state === "final", "the final of 21");
    // What the client sent on opening may reach the server after the snapshot reached it.
    await until(() => second.latest().received.length > 0, "the client's first message");
    assert.deepEqual(second.latest().received[0], { type: "resume", last_seq: 20 });
    assert.deepEqual(c.windows.list().map((w) => [w.seq, w.revision]), [[20, 2], [21, 2]]);
  } finally {
    await c.close();
    await second.kill();
  }
});

test("the token is renewed before it expires, and taps carry the newest", async () => {
  const broadcaster = await fakeBroadcaster({ ttl: 1500 });
  const ingest = await fakeIngest();
  const c = client([broadcaster], { ingest: ingest.url, renewBefore: 1000 }).start();
  try {
    await until(() => c.state === "live", "live");
    await until(() => c.seen.registered.length >= 2, "a renewal", 5000);
    assert.equal(broadcaster.connections.length, 1, "renewing keeps the connection");
    const token = c.registration.token;
    assert.notEqual(token, c.seen.registered[0].token);
    const results = await Promise.all(["🔥", "😂", "🔥"].map((emoji) => c.tap(emoji)));
    assert.deepEqual(results.map((r) => r.accepted), [true, true, true]);
    // Taps made together go in one request.
    assert.deepEqual(ingest.requests.map((r) => r.events.map((e) => e.emoji_type)), [["🔥", "😂", "🔥"]]);
    // One made while a request is in flight goes in the next.
    const [one, two] = [c.tap("👏"), (await new Promise((resolve) => setTimeout(resolve, 0)), c.tap("🎉"))];
    await Promise.all([one, two]);
    assert.equal(ingest.requests.length, 3);
    assert.ok(ingest.requests.every((r) => r.authorization === `Bearer ${token}`));
    assert.ok(ingest.requests.every((r) => r.events.every((e) => e.user_id === c.clientId)));
    // Renewed, the viewer is the same: the earlier token asked for its id.
    assert.equal(c.clientId, c.seen.registered[0].client_id);
    assert.equal(broadcaster.registrations[1].authorization, `Bearer ${c.seen.registered[0].token}`);
  } finally {
    await c.close();
    await broadcaster.kill();
    await ingest.close();
  }
});

test("a refused token is renewed and the taps sent again; a refusal is told", async () => {
  const broadcaster = await fakeBroadcaster();
  const ingest = await fakeIngest((request) => (request.authorization === `Bearer token-${broadcaster.port}-1-viewer-1`
    ? [401, { error: "viewer token refused: token expired" }]
    : [202, { accepted: 1 }]));
  const c = client([broadcaster], { ingest: ingest.url }).start();
  try {
    await until(() => c.state === "live", "live");
    const result = await c.tap("🔥");
    assert.equal(result.accepted, true);
    assert.equal(ingest.requests.length, 2, "sent again with the new token");
    assert.equal(broadcaster.registrations.length, 2);
    ingest.answer = () => [403, { error: "user_id \"x\" is not the viewer token's user" }];
    const refused = await c.tap("😂");
    assert.deepEqual(refused, { accepted: false, status: 403, error: "user_id \"x\" is not the viewer token's user" });
  } finally {
    await c.close();
    await broadcaster.kill();
    await ingest.close();
  }
});

test("a tap made before the first registration waits for its token", async () => {
  const broadcaster = await fakeBroadcaster();
  const ingest = await fakeIngest();
  const c = client([broadcaster], { ingest: ingest.url });
  const tapped = c.tap("🔥");
  c.start();
  try {
    assert.equal((await tapped).accepted, true);
    assert.equal(ingest.requests[0].authorization, `Bearer ${c.registration.token}`);
    assert.equal(ingest.requests[0].events[0].user_id, c.clientId);
  } finally {
    await c.close();
    await broadcaster.kill();
    await ingest.close();
  }
});

test("a client started with an earlier token is the same viewer", async () => {
  const broadcaster = await fakeBroadcaster();
  const first = client([broadcaster]).start();
  await until(() => first.state === "live", "live");
  await first.close();
  const again = client([broadcaster], { token: first.registration.token }).start();
  try {
    await until(() => again.state === "live", "live again");
    assert.equal(again.clientId, first.clientId);
  } finally {
    await again.close();
    await broadcaster.kill();
  }
});

test("started again while it registers, it keeps one connection", async () => {
  const broadcaster = await fakeBroadcaster();
  const c = client([broadcaster]).start();
  void c.close();
  c.start();
  try {
    await until(() => c.state === "live", "live");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(broadcaster.connections.filter((k) => k.ws.readyState === 1).length, 1);
  } finally {
    await c.close();
    await broadcaster.kill();
  }
});

test("pings are sent, and a connection that stops answering is replaced", async () => {
  const broadcaster = await fakeBroadcaster();
  const c = client([broadcaster], { pingInterval: 100 }).start();
  try {
    await until(() => c.state === "live", "live");
    await until(() => broadcaster.latest().received.some((m) => m.type === "ping"), "a ping");
    await new Promise((resolve) => setTimeout(resolve, 350));
    assert.equal(broadcaster.connections.length, 1, "answered pings keep the connection");
    broadcaster.answerPings = false;
    await until(() => broadcaster.connections.length === 2, "a new connection after pings went unanswered");
  } finally {
    await c.close();
    await broadcaster.kill();
  }
});

test("the store keeps at most its limit, the newest", () => {
  const store = new WindowStore(2);
  for (const seq of [1, 2, 3]) store.take(window(seq, 1, "final"), true);
  assert.deepEqual(store.list().map((w) => w.seq), [2, 3]);
  assert.equal(store.take(window(1, 2, "final"), true), null, "older than all held");
  assert.equal(store.resumeAfter(), 3);
});

test("floats are shared by each emoji's part of the taps, at least one each", () => {
  assert.deepEqual([...apportion(new Map([["🔥", 3], ["😂", 1]]), 40)], [["🔥", 3], ["😂", 1]]);
  const shares = apportion(new Map([["🔥", 9000], ["😂", 900], ["👏", 100]]), 40);
  assert.deepEqual([...shares.values()].reduce((a, b) => a + b), 40);
  assert.ok(shares.get("👏") >= 1 && shares.get("🔥") > shares.get("😂"));
});
