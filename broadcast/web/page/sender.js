// The automated sender (a demo tool, shown with the broadcaster's --demo-sender): while on,
// this browser taps by itself at a chosen rate (1 to 50 per second) with a chosen mix,
// through the same client as the buttons.

/** Wires the sender's controls; `tap(emoji)` resolves whether the tap was accepted. */
export function sender(emojis, tap) {
  const mixes = {
    match: emojis.map((_, k) => 1 / (k + 1) ** 1.1), // skewed, like the simulator's
    even: emojis.map(() => 1),
    fire: emojis.map((emoji) => (emoji === "🔥" ? 1 : 0)),
  };
  const toggle = document.getElementById("sender-toggle");
  const rate = document.getElementById("sender-rate");
  const mix = document.getElementById("sender-mix");
  const sentBox = document.getElementById("sender-sent");
  const acceptedBox = document.getElementById("sender-accepted");
  let timer = null;
  let sent = 0;
  let accepted = 0;

  function pick(weights) {
    const total = weights.reduce((a, b) => a + b, 0);
    let x = Math.random() * total;
    for (let i = 0; i < weights.length; i++) {
      x -= weights[i];
      if (x < 0) return emojis[i];
    }
    return emojis[weights.findLastIndex((w) => w > 0)];
  }

  async function sendOne() {
    const emoji = pick(mixes[mix.value] || mixes.match);
    sent += 1;
    sentBox.textContent = sent;
    if (await tap(emoji)) {
      accepted += 1;
      acceptedBox.textContent = accepted;
    }
  }

  function start() {
    const perSecond = Math.min(50, Math.max(1, Math.round(Number(rate.value) || 10)));
    rate.value = perSecond;
    clearInterval(timer);
    timer = setInterval(sendOne, 1000 / perSecond);
    toggle.setAttribute("aria-pressed", "true");
    toggle.textContent = "stop automated sender";
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    toggle.setAttribute("aria-pressed", "false");
    toggle.textContent = "start automated sender";
  }

  toggle.addEventListener("click", () => (timer === null ? start() : stop()));
  rate.addEventListener("change", () => { if (timer !== null) start(); });
  document.getElementById("sender").hidden = false;
}
