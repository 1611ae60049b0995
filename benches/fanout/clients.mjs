// The one client tool of `make bench-fanout`: N WebSocket clients (Node `ws`) in this
// process, bound round robin to 127.0.0.1 .. 127.0.0.K, connected to one server; per frame
// (a window message, told apart by its seq and revision) it notes when the first and the
// last client had it, and the server's `broadcast_at`. Prints the summary as JSON.
//
//   node clients.mjs (--url ws://HOST:PORT/PATH | --register http://HOST:PORT) --clients N
//                    --seconds S [--sources K] [--ready FILE]
//
// With --ready, FILE is written once every client is connected (the server's memory with
// all of them is taken then).
import { writeFileSync } from "node:fs";
import WebSocket from "ws";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const clients = Number(args.clients);
const seconds = Number(args.seconds ?? 10);
const sources = Number(args.sources ?? 8);
const now = () => performance.timeOrigin + performance.now();

// With --register, one registration gives the URL (and token) every client uses, as
// `emostream wsload` does without --register-each.
let registered = null;
async function urlFor() {
  if (args.url) return args.url;
  registered ??= fetch(`${args.register}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: "bench" }),
  }).then(async (response) => {
    if (!response.ok) throw new Error(`register: ${response.status} ${await response.text()}`);
    return (await response.json()).ws_url;
  });
  return registered;
}

function numberAfter(buffer, key) {
  let at = buffer.indexOf(key);
  if (at < 0) return null;
  at += key.length;
  let n = 0;
  let digits = 0;
  for (; at < buffer.length; at++, digits++) {
    const c = buffer[at];
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  return digits ? n : null;
}

const OPEN_TIMEOUT_MS = 30_000;
const frames = new Map();
let measureFrom = Infinity;
let connected = 0;
let failed = 0;
let deliveries = 0;

function onMessage(data) {
  const at = now();
  if (data[2] !== 116 || data.indexOf('"type":"window"') !== 1) return;
  const sent = numberAfter(data, '"broadcast_at":');
  if (sent === null || sent < measureFrom) return;
  const key = `${numberAfter(data, '"seq":')}:${numberAfter(data, '"revision":')}`;
  deliveries++;
  const frame = frames.get(key);
  if (frame) {
    frame.last = at;
    frame.count++;
  } else {
    frames.set(key, { sent, first: at, last: at, count: 1 });
  }
}

function open(i) {
  return urlFor().then(
    (url) =>
      new Promise((resolve) => {
        const ws = new WebSocket(url, {
          localAddress: `127.0.0.${1 + (i % sources)}`,
          perMessageDeflate: false,
        });
        // A server too busy to finish a handshake within this counts it failed (the run goes on).
        let settled = false;
        const settle = (socket) => {
          if (settled) return;
          settled = true;
          clearTimeout(stuck);
          if (socket) connected++;
          else failed++;
          resolve(socket);
        };
        const stuck = setTimeout(() => {
          ws.terminate();
          settle(null);
        }, OPEN_TIMEOUT_MS);
        ws.on("open", () => settle(ws));
        ws.on("message", onMessage);
        ws.on("error", () => settle(null));
      }),
    () => {
      failed++;
      return null;
    },
  );
}

const started = now();
const sockets = [];
let next = 0;
await Promise.all(
  Array.from({ length: 256 }, async () => {
    while (next < clients) {
      sockets.push(await open(next++));
    }
  }),
);
const connectSeconds = (now() - started) / 1e3;
if (args.ready) writeFileSync(args.ready, `${connected}\n`);
measureFrom = Date.now();
const until = measureFrom + seconds * 1000;
await new Promise((r) => setTimeout(r, seconds * 1000 + 1500));

const measured = [...frames.values()].filter((f) => f.sent <= until);
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
};
const completion = measured.map((f) => f.last - f.first);
const sendToLast = measured.map((f) => f.last - f.sent);
const round = (x) => (x === null ? null : Math.round(x * 10) / 10);
console.log(
  JSON.stringify({
    clients,
    connected,
    failed,
    connect_seconds: round(connectSeconds),
    frames: measured.length,
    complete: measured.filter((f) => f.count >= connected).length,
    deliveries,
    completion_p50_ms: round(quantile(completion, 0.5)),
    completion_p99_ms: round(quantile(completion, 0.99)),
    completion_max_ms: round(Math.max(...completion)),
    send_to_last_p50_ms: round(quantile(sendToLast, 0.5)),
    send_to_last_p99_ms: round(quantile(sendToLast, 0.99)),
    send_to_last_max_ms: round(Math.max(...sendToLast)),
  }),
);
for (const ws of sockets) ws?.terminate();
process.exit(0);
