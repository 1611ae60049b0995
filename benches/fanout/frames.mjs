// The frames the peer servers send, shaped like EmoStream's window messages (about 880
// bytes, as the feed's): an open update of the current 2 s window every 250 ms, and each
// window's final once the next one begins, on a fixed schedule. `broadcast_at` is when the
// server sent it (UTC ms).
const emojis = ["🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌"];

export function schedule(send) {
  // A fixed schedule, like EmoStream's feed through Kafka: tick k is due at start + 250k ms
  // whatever the event loop was doing; a tick found late is sent at once, so a busy server
  // sends every frame late rather than fewer frames (a timer that slips would lighten its
  // own load).
  const start = Date.now();
  let tick = 1;
  let current = null;
  let revision = 0;
  const due = () => start + tick * 250;
  const run = () => {
    while (due() <= Date.now()) {
      const seq = Math.floor(due() / 2000);
      if (current !== null && seq !== current) {
        send(frame(current, ++revision, "final"));
      }
      current = seq;
      send(frame(seq, ++revision, "open"));
      tick++;
    }
    setTimeout(run, Math.max(0, due() - Date.now()));
  };
  setTimeout(run, 250);
}

function frame(seq, revision, state) {
  const stats = emojis.map((emoji, i) => ({
    emoji,
    count: 1000 + i * 137 + revision,
    unique_users: 500 + i * 31,
    scaled_count: 1,
    share: 0.083333,
  }));
  return JSON.stringify({
    type: "window",
    window_start: new Date(seq * 2000).toISOString(),
    window_end: new Date(seq * 2000 + 2000).toISOString(),
    events: 12000 + revision,
    unique_users: 4000,
    emojis: stats,
    seq,
    state,
    revision,
    broadcast_at: Date.now(),
  });
}
