// A plain Node `ws` broadcaster: each frame sent to every open client in a loop. Prints
// {"port": N} once listening.
import { WebSocketServer, WebSocket } from "ws";
import { schedule } from "./frames.mjs";

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.argv[2] ?? 0),
  perMessageDeflate: false,
});
wss.on("listening", () => console.log(JSON.stringify({ port: wss.address().port })));
schedule((frame) => {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(frame);
  }
});
