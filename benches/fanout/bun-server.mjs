// Bun's WebSocket server (uWebSockets inside): every client subscribes to one topic, and
// each frame goes out with one server.publish. Prints {"port": N} once listening.
import { schedule } from "./frames.mjs";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2] ?? 0),
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("not a WebSocket handshake", { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      ws.subscribe("windows");
    },
    message() {},
  },
});
console.log(JSON.stringify({ port: server.port }));
schedule((frame) => server.publish("windows", frame));
