// A reconnect storm, as when a broadcaster dies and its viewers come back at once: N
// WebSocket clients (Node `ws`) opened in the same instant against one broadcaster, bound
// round robin to 127.0.0.1 .. 127.0.0.K, each trying again until it is connected, as the
// client library does: after a 503, as its Retry-After asks (jittered: 1 to 2 times it);
// after a connection closed without an answer (a hang-up), after a jittered 0.5 to 2 s.
// Prints, as JSON, the time until all were connected and what they met on the way.
//
//   node burst.mjs (--url ws://HOST:PORT/PATH | --register http://HOST:PORT) --clients N
//                  [--sources K] [--give-up S]
import WebSocket from "ws";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const clients = Number(args.clients);
const sources = Number(args.sources ?? 16);
const giveUp = Number(args["give-up"] ?? 60) * 1000;

// With --register, one registration gives the URL (and token) every client uses.
async function urlFor() {
  if (args.url) return args.url;
  const registration = await fetch(`${args.register}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: "burst" }),
  });
  if (!registration.ok) throw new Error(`register: ${registration.status} ${await registration.text()}`);
  return (await registration.json()).ws_url;
}
const url = await urlFor();

const tally = { answered_503: 0, other_answers: 0, hang_ups: 0, attempts: 0 };
const sockets = [];
let connected = 0;
let lastConnectedAt = 0;
let mostAttempts = 0;
const started = performance.now();

/** Opens client `i`, again and again until it is connected; resolves then (or on giving up). */
function open(i, attempt = 1) {
  return new Promise((resolve) => {
    tally.attempts += 1;
    mostAttempts = Math.max(mostAttempts, attempt);
    const ws = new WebSocket(url, { localAddress: `127.0.0.${1 + (i % sources)}`, perMessageDeflate: false });
    let settled = false;
    /** Once per attempt: connected, or again after `wait` ms (until the run gives up). */
    const retry = (wait) => {
      if (settled) return;
      settled = true;
      if (performance.now() - started > giveUp) {
        resolve(false);
        return;
      }
      setTimeout(() => open(i, attempt + 1).then(resolve), wait);
    };
    ws.on("unexpected-response", (request, response) => {
      let wait;
      if (response.statusCode === 503) {
        tally.answered_503 += 1;
        wait = Number(response.headers["retry-after"] ?? 1) * 1000 * (1 + Math.random());
      } else {
        tally.other_answers += 1;
        wait = 500 + 1500 * Math.random();
      }
      // With this listener, ws leaves the request to us: no error or close follows.
      response.resume();
      request.destroy();
      retry(wait);
    });
    ws.on("open", () => {
      settled = true;
      connected += 1;
      lastConnectedAt = performance.now();
      sockets.push(ws);
      resolve(true);
    });
    ws.on("error", () => {
      // No answer at all: a client cannot tell this from a server that is gone.
      if (!settled) tally.hang_ups += 1;
      retry(500 + 1500 * Math.random());
    });
    ws.on("close", () => retry(500 + 1500 * Math.random()));
  });
}

const round = (x) => Math.round(x * 10) / 10;
function report() {
  console.log(JSON.stringify({
    clients,
    connected,
    gave_up: clients - connected,
    seconds_to_all: connected === clients ? round((lastConnectedAt - started) / 1000) : null,
    ...tally,
    retries: tally.attempts - clients,
    most_attempts: mostAttempts,
  }));
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}
// Whatever happens, the run ends: a client stuck connecting counts as not connected.
setTimeout(report, giveUp + 10_000).unref();
await Promise.all(Array.from({ length: clients }, (_, i) => open(i)));
report();
