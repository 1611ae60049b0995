// A fake broadcaster and ingest for the client's tests: real HTTP and WebSocket servers on
// 127.0.0.1 that speak the broadcaster's protocol, scripted by each test.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

/** Resolves once `condition()` holds (checked every 10 ms); rejects after `timeout` ms. */
export async function until(condition, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A window message. */
export function window(seq, revision, state, counts = { "🔥": 1 }) {
  const emojis = Object.entries(counts).map(([emoji, count]) => ({ emoji, count, unique_users: count, scaled_count: count, share: 0 }));
  const events = emojis.reduce((n, e) => n + e.count, 0);
  return {
    type: "window", seq, revision, state, events, unique_users: events, emojis,
    window_start: new Date(seq * 2000).toISOString(), window_end: new Date(seq * 2000 + 2000).toISOString(),
  };
}

/**
 * A broadcaster: `POST /register` (answered by `register(body)`, default: this one, a token
 * of `ttl` ms) and `/ws` (each connection gets a hello and `snapshot`, and is recorded with
 * what it sends in `connections`).
 */
export async function fakeBroadcaster({ ttl = 600_000, snapshot = [] } = {}) {
  const fake = {
    registrations: [], connections: [], snapshot, ttl,
    refuseRegistration: 0, refuseHandshake: 0, answerPings: true, tokens: 0,
  };
  const wss = new WebSocketServer({ noServer: true });
  const server = createServer(async (request, response) => {
    let body = "";
    for await (const chunk of request) body += chunk;
    if (request.url !== "/register" || request.method !== "POST") {
      response.writeHead(404).end();
      return;
    }
    fake.registrations.push({ body: JSON.parse(body), at: Date.now() });
    if (fake.refuseRegistration > 0) {
      fake.refuseRegistration -= 1;
      response.writeHead(503, { "retry-after": "1", "content-type": "application/json" }).end('{"error":"no live broadcaster"}');
      return;
    }
    // The viewer's id is the broadcaster's: a new one, or the one an earlier token names.
    const earlier = /^Bearer token-\d+-\d+-(.+)$/.exec(request.headers.authorization ?? "");
    fake.tokens += 1;
    const viewer = earlier ? earlier[1] : `viewer-${fake.tokens}`;
    const token = `token-${fake.port}-${fake.tokens}-${viewer}`;
    fake.registrations.at(-1).authorization = request.headers.authorization;
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
      cluster: 1, ws_url: `ws://127.0.0.1:${fake.port}/ws?token=${token}`, client_id: viewer,
      token, expires: new Date(Date.now() + fake.ttl).toISOString(),
    }));
  });
  server.on("upgrade", (request, socket, head) => {
    if (fake.refuseHandshake > 0) {
      fake.refuseHandshake -= 1;
      socket.end("HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const connection = { ws, url: request.url, received: [] };
      fake.connections.push(connection);
      ws.on("message", (data) => {
        const message = JSON.parse(String(data));
        connection.received.push(message);
        if (message.type === "ping" && fake.answerPings) ws.send('{"type":"pong"}');
      });
      ws.send(JSON.stringify({ type: "hello", cluster: 1, epoch: 1, snapshot: fake.snapshot.length }));
      for (const w of fake.snapshot) ws.send(JSON.stringify(w));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.port = server.address().port;
  fake.url = `http://127.0.0.1:${fake.port}`;
  fake.latest = () => fake.connections.at(-1);
  fake.send = (message) => fake.latest().ws.send(JSON.stringify(message));
  /** Gone at once, as a killed process: every socket cut, the port closed. */
  fake.kill = async () => {
    for (const { ws } of fake.connections) ws.terminate();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return fake;
}

/** An ingest: `POST /emoji` recorded with its headers; answered by `answer(request)`. */
export async function fakeIngest(answer = () => [202, { accepted: 1 }]) {
  const fake = { requests: [], answer };
  const server = createServer(async (request, response) => {
    let body = "";
    for await (const chunk of request) body += chunk;
    const recorded = { authorization: request.headers.authorization, events: JSON.parse(body) };
    fake.requests.push(recorded);
    const [status, json, headers = {}] = fake.answer(recorded);
    response.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(json));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${server.address().port}`;
  fake.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); });
  return fake;
}
