// The frames the peer servers send, shaped like EmoStream's window messages (about 600
// bytes): an open update of the current 2 s window every 250 ms, and each window's final
// once the next one begins. `broadcast_at` is when the server sent it (UTC ms).
const emojis = ["🔥", "😂", "👏", "❤️", "🎉", "😮", "💯", "🙌"];

export function schedule(send) {
  let current = null;
  let revision = 0;
  return setInterval(() => {
    const now = Date.now();
    const seq = Math.floor(now / 2000);
    if (current !== null && seq !== current) {
      send(frame(current, ++revision, "final"));
    }
    current = seq;
    send(frame(seq, ++revision, "open"));
  }, 250);
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
    window_start: seq * 2000,
    window_end: seq * 2000 + 2000,
    events: 12000 + revision,
    unique_users: 4000,
    emojis: stats,
    seq,
    state,
    revision,
    broadcast_at: Date.now(),
  });
}
