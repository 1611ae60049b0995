// src/messages.ts
var CloseCode = {
  /** The broadcaster is shutting down. */
  GoingAway: 1001,
  /** The client had more than `--max-pending` bytes still to get. */
  TooFarBehind: 4001,
  /** The client took no byte for `--write-timeout`. */
  NotReading: 4002
};

// src/emitter.ts
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  /** Calls `listener` with each `name` event; returns the function that stops it. */
  on(name, listener) {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => set.delete(listener);
  }
  emit(name, value) {
    for (const listener of [...this.#listeners.get(name) ?? []]) {
      try {
        listener(value);
      } catch (error) {
        const report = globalThis.reportError;
        if (report) report(error);
        else console.error(error);
      }
    }
  }
};

// src/taps.ts
var MAX_BATCH = 100;
var MAX_WAITING = 1e3;
var TapSender = class {
  #options;
  #url;
  #pending = [];
  #inFlight = null;
  constructor(options) {
    this.#options = options;
    this.#url = `${options.ingest.replace(/\/+$/, "")}/emoji`;
  }
  tap(emoji) {
    if (this.#pending.length >= MAX_WAITING) {
      return Promise.resolve({ accepted: false, status: 0, error: `more than ${MAX_WAITING} taps waiting for the ingest` });
    }
    return new Promise((resolve) => {
      this.#pending.push({ emoji, resolve });
      if (this.#inFlight === null) this.#inFlight = this.#options.ready().then(() => this.#send());
    });
  }
  /** Resolves once every tap made so far is answered. */
  async flush() {
    while (this.#inFlight !== null) await this.#inFlight;
  }
  /** Sends what is waiting (at most MAX_BATCH), then what came meanwhile. */
  #send() {
    const batch = this.#pending.splice(0, MAX_BATCH);
    if (batch.length === 0) {
      this.#inFlight = null;
      return Promise.resolve();
    }
    return this.#post(batch).then((result) => {
      for (const tap of batch) tap.resolve(result);
      return this.#send();
    });
  }
  /** Posts the batch; once more after a fresh registration (token refused) or as a 503 asks. */
  async #post(batch) {
    let result = await this.#attempt(batch);
    if (result.status === 401 && this.#options.token() !== null && await this.#options.renew()) {
      result = await this.#attempt(batch);
    } else if (result.status === 503 && result.retryAfter !== null) {
      await new Promise((resolve) => setTimeout(resolve, result.retryAfter * 1e3));
      result = await this.#attempt(batch);
    }
    const { retryAfter: _, ...tap } = result;
    return tap;
  }
  async #attempt(batch) {
    const viewer = this.#options.viewer();
    const body = JSON.stringify(batch.map(({ emoji }) => viewer ? { user_id: viewer, emoji_type: emoji } : { emoji_type: emoji }));
    const headers = { "content-type": "application/json" };
    const token = this.#options.token();
    if (token) headers.authorization = `Bearer ${token}`;
    try {
      const response = await this.#options.fetch(this.#url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(this.#options.timeout)
      });
      if (response.ok) return { accepted: true, status: response.status, retryAfter: null };
      const said = await response.json().catch(() => ({}));
      const seconds = Number(response.headers.get("retry-after"));
      return {
        accepted: false,
        status: response.status,
        error: said.error ?? response.statusText,
        retryAfter: Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 10) : null
      };
    } catch (error) {
      return { accepted: false, status: 0, error: String(error.message ?? error), retryAfter: null };
    }
  }
};

// src/windows.ts
var WindowStore = class {
  #windows = /* @__PURE__ */ new Map();
  #limit;
  /** The newest window held final (or revised): a reconnection resumes after it. */
  lastFinal = null;
  constructor(limit = 1e3) {
    this.#limit = Math.max(1, limit);
  }
  /** Takes a window message; what changed, or `null` when it was not newer than the one held. */
  take(window, live) {
    const previous = this.#windows.get(window.seq);
    if (previous !== void 0 && window.revision <= previous.revision) return null;
    if (previous === void 0 && this.#windows.size >= this.#limit && window.seq < this.oldest()) return null;
    this.#windows.set(window.seq, window);
    if (window.state !== "open") this.lastFinal = Math.max(this.lastFinal ?? window.seq, window.seq);
    while (this.#windows.size > this.#limit) this.#windows.delete(this.oldest());
    return { window, previous, live };
  }
  /** The `seq` to resume after: the newest final, else before the oldest window held. */
  resumeAfter() {
    if (this.lastFinal !== null) return this.lastFinal;
    const oldest = this.oldest();
    return oldest === void 0 ? null : oldest - 1;
  }
  get(seq) {
    return this.#windows.get(seq);
  }
  /** The windows held, oldest first. */
  list() {
    return [...this.#windows.values()].sort((a, b) => a.seq - b.seq);
  }
  get size() {
    return this.#windows.size;
  }
  oldest() {
    let oldest;
    for (const seq of this.#windows.keys()) if (oldest === void 0 || seq < oldest) oldest = seq;
    return oldest;
  }
};

// src/client.ts
var Refused = class extends Error {
  constructor(message, retryAfter2) {
    super(message);
    this.retryAfter = retryAfter2;
  }
  retryAfter;
};
var OPEN = 1;
var STABLE_MS = 5e3;
function unref(timer) {
  timer.unref?.();
  return timer;
}
var SwarmClient = class extends Emitter {
  windows;
  #options;
  #registrars;
  #fetch;
  #taps;
  #WebSocket;
  #socket = null;
  #registration = null;
  #token;
  #state = "closed";
  #stopped = true;
  /** Counts starts: what an earlier start left running sees it is not the current one. */
  #generation = 0;
  #attempt = 0;
  #retry = null;
  #renewal = null;
  #pinger = null;
  /** When the last ping went, and whether anything came since. */
  #pingedAt = 0;
  #heard = 0;
  /** Window messages still to come from the ring (the snapshot, a resume). */
  #fromRing = 0;
  /** Which registrar to ask first. */
  #next = 0;
  /** Settles once the first round of registration is over (taps wait for its token). */
  #firstRound;
  #firstRoundOver = () => {
  };
  constructor(options) {
    super();
    const registrars = Array.isArray(options.broadcaster) ? options.broadcaster : [options.broadcaster];
    if (registrars.length === 0 || registrars.some((url) => !url)) throw new TypeError("broadcaster: give at least one address");
    this.#registrars = registrars.map((url) => url.replace(/\/+$/, ""));
    this.#token = options.token ?? null;
    this.#options = {
      broadcaster: this.#registrars,
      minDelay: options.minDelay ?? 500,
      maxDelay: options.maxDelay ?? 1e4,
      renewBefore: options.renewBefore ?? 6e4,
      pingInterval: options.pingInterval ?? 2e4,
      timeout: options.timeout ?? 1e4,
      maxWindows: options.maxWindows ?? 1e3
    };
    const platformFetch = options.fetch ?? globalThis.fetch;
    if (!platformFetch) throw new TypeError("no fetch: pass options.fetch");
    this.#fetch = platformFetch.bind(globalThis);
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.windows = new WindowStore(this.#options.maxWindows);
    this.#firstRound = new Promise((resolve) => {
      this.#firstRoundOver = resolve;
    });
    this.#taps = options.ingest ? new TapSender({
      ingest: options.ingest,
      fetch: this.#fetch,
      timeout: this.#options.timeout,
      viewer: () => this.#registration?.client_id ?? null,
      token: () => this.#token,
      ready: () => this.#firstRound,
      renew: () => this.#renew()
    }) : null;
  }
  /** The connection's state. */
  get state() {
    return this.#state;
  }
  /** The newest registration: the viewer's id, cluster, broadcaster, token and its expiry. */
  get registration() {
    return this.#registration;
  }
  /** This viewer's id, once registered (the broadcaster's, carried by its token). */
  get clientId() {
    return this.#registration?.client_id ?? null;
  }
  /** Registers and connects; comes back by itself until `close()`. */
  start() {
    if (!this.#stopped) return this;
    this.#stopped = false;
    this.#generation += 1;
    this.#setState("connecting");
    void this.#connect(this.#generation);
    return this;
  }
  /** Closes the connection and stops coming back; taps still queued are sent. */
  close() {
    this.#stopped = true;
    this.#generation += 1;
    for (const timer of [this.#retry, this.#renewal]) if (timer !== null) clearTimeout(timer);
    this.#retry = this.#renewal = null;
    this.#stopPinging();
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1e3, "closed by the client");
    this.#setState("closed");
    return this.#taps ? this.#taps.flush() : Promise.resolve();
  }
  /** Sends a tap of `emoji` to the ingest; resolves whether it was accepted. */
  tap(emoji) {
    if (!this.#taps) return Promise.reject(new Error("no ingest: pass options.ingest to tap"));
    return this.#taps.tap(emoji);
  }
  #setState(state, reason) {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", reason === void 0 ? { state } : { state, reason });
  }
  /** Registers at the first registrar that answers. */
  async #register() {
    let last = null;
    try {
      for (let i = 0; i < this.#registrars.length; i++) {
        const at = (this.#next + i) % this.#registrars.length;
        try {
          const registration = await this.#registerAt(this.#registrars[at]);
          this.#next = at;
          return registration;
        } catch (error) {
          last = error instanceof Refused ? error : new Refused(String(error), null);
        }
      }
      this.#next = (this.#next + 1) % this.#registrars.length;
      throw last ?? new Refused("no broadcaster to register at", null);
    } finally {
      this.#firstRoundOver();
    }
  }
  async #registerAt(base) {
    let response;
    const headers = { "content-type": "application/json" };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    try {
      response = await this.#fetch(`${base}/register`, {
        method: "POST",
        headers,
        body: "{}",
        signal: AbortSignal.timeout(this.#options.timeout)
      });
    } catch (error) {
      throw new Refused(`registration at ${base} failed: ${error.message ?? error}`, null);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new Refused(`registration at ${base}: ${response.status} ${text}`.trim(), retryAfter(response.headers.get("retry-after")));
    }
    const registration = await response.json();
    registration.token ??= new URL(registration.ws_url).searchParams.get("token") ?? "";
    this.#registration = registration;
    this.#token = registration.token;
    if (!this.#stopped) this.#scheduleRenewal(registration);
    this.emit("registered", registration);
    return registration;
  }
  /** Registers again before the token expires: taps and the next connection use the new one. */
  #scheduleRenewal(registration) {
    if (this.#renewal !== null) clearTimeout(this.#renewal);
    this.#renewal = null;
    const expires = Date.parse(registration.expires);
    if (Number.isNaN(expires)) return;
    const wait = Math.max(1e3, expires - Date.now() - this.#options.renewBefore);
    this.#renewal = unref(setTimeout(() => {
      this.#renewal = null;
      if (!this.#stopped) void this.#renew();
    }, wait));
  }
  /** A fresh registration now (a refused token, a renewal); when it fails, again later. */
  async #renew() {
    try {
      await this.#register();
      return true;
    } catch {
      if (!this.#stopped && this.#renewal === null) {
        this.#renewal = unref(setTimeout(() => {
          this.#renewal = null;
          if (!this.#stopped) void this.#renew();
        }, this.#delay(null)));
      }
      return false;
    }
  }
  async #connect(generation) {
    this.#retry = null;
    const current = () => generation === this.#generation && !this.#stopped;
    if (!current()) return;
    let registration;
    try {
      registration = await this.#register();
      this.#WebSocket ??= await loadWs();
    } catch (error) {
      if (current()) this.#reconnectLater(generation, error instanceof Refused ? error.retryAfter : null, String(error.message ?? error));
      return;
    }
    if (!current()) return;
    const socket = new this.#WebSocket(registration.ws_url);
    this.#socket = socket;
    let openedAt = null;
    const opening = setTimeout(() => {
      if (openedAt !== null) return;
      socket.close();
      socket.onclose?.({ code: 1006, reason: "no answer to the handshake" });
    }, this.#options.timeout);
    socket.onopen = () => {
      clearTimeout(opening);
      if (this.#socket !== socket) return;
      openedAt = Date.now();
      this.#heard = Date.now();
      this.#setState("live");
      const after = this.windows.resumeAfter();
      if (after !== null) socket.send(JSON.stringify({ type: "resume", last_seq: after }));
      this.#startPinging(socket);
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#heard = Date.now();
      this.#receive(String(event.data));
    };
    socket.onerror = () => {
    };
    socket.onclose = (event) => {
      clearTimeout(opening);
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#stopPinging();
      if (!current()) return;
      if (openedAt !== null && Date.now() - openedAt >= STABLE_MS) this.#attempt = 0;
      const reason = openedAt !== null ? closeReason(event.code, event.reason) : "the broadcaster did not take the connection";
      const wait = openedAt !== null && event.code !== CloseCode.GoingAway ? null : 1;
      this.#reconnectLater(generation, wait, reason);
    };
  }
  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case "hello":
        this.#fromRing = message.snapshot ?? 0;
        this.emit("hello", message);
        break;
      case "resumed":
        this.#fromRing += message.windows;
        break;
      case "window": {
        const live = this.#fromRing === 0;
        this.#fromRing = Math.max(0, this.#fromRing - 1);
        const window = { ...message, revision: message.revision ?? 0, state: message.state ?? "final" };
        const update = this.windows.take(window, live);
        if (update) this.emit("window", update);
        break;
      }
      case "summary":
        this.emit("summary", message);
        break;
      default:
        break;
    }
  }
  /** A ping each interval; one that nothing answered by the next means the connection is gone. */
  #startPinging(socket) {
    this.#stopPinging();
    this.#pingedAt = 0;
    this.#pinger = unref(setInterval(() => {
      if (this.#socket !== socket || socket.readyState !== OPEN) return;
      if (this.#pingedAt !== 0 && this.#heard < this.#pingedAt) {
        socket.close(4e3, "no answer to a ping");
        socket.onclose?.({ code: 4e3, reason: "no answer to a ping" });
        return;
      }
      this.#pingedAt = Date.now();
      socket.send('{"type":"ping"}');
    }, this.#options.pingInterval));
  }
  #stopPinging() {
    if (this.#pinger !== null) clearInterval(this.#pinger);
    this.#pinger = null;
  }
  /** Jittered exponential backoff, at least `retryAfter` seconds when the server asked. */
  #delay(retryAfter2) {
    const { minDelay, maxDelay } = this.#options;
    const backoff = Math.min(maxDelay, minDelay * 2 ** this.#attempt) * (0.5 + Math.random());
    const asked = retryAfter2 === null ? 0 : retryAfter2 * 1e3 * (1 + Math.random());
    return Math.max(backoff, asked);
  }
  #reconnectLater(generation, retryAfter2, reason) {
    if (this.#stopped || this.#retry !== null) return;
    this.#setState("reconnecting", reason);
    const delay = this.#delay(retryAfter2);
    this.#attempt += 1;
    this.#retry = setTimeout(() => void this.#connect(generation), delay);
  }
};
function retryAfter(header) {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1e3);
}
function closeReason(code, reason) {
  const known = {
    [CloseCode.GoingAway]: "the broadcaster is shutting down",
    [CloseCode.TooFarBehind]: "too far behind",
    [CloseCode.NotReading]: "not reading"
  };
  return `closed ${code}${reason ? `: ${reason}` : known[code] ? `: ${known[code]}` : ""}`;
}
async function loadWs() {
  const name = "ws";
  try {
    const module = await import(
      /* @vite-ignore */
      name
    );
    return module.WebSocket ?? module.default;
  } catch {
    throw new Error("no WebSocket in this runtime: install the ws package or pass options.WebSocket");
  }
}

// src/swarm.ts
var FLOATS_PER_MESSAGE = 40;
var MAX_FLOATS = 200;
var RISE_MS = 2800;
var RISE_CQH = 110;
var BATCH_CQH = 150;
var LATEST_START_MS = RISE_MS * (BATCH_CQH - RISE_CQH) / RISE_CQH;
var STEP_MS = 1e3 / 30;
var BATCH_STEPS = Math.round(RISE_MS * BATCH_CQH / RISE_CQH / STEP_MS);
var TAP_BATCH_MS = 300;
var SWARM_CSS = `
.emostream-swarm { position: relative; overflow: hidden; contain: strict; container-type: size; pointer-events: none; }
.emostream-swarm .batch { position: absolute; left: 0; right: 0; bottom: 0; height: 0; }
.emostream-swarm .float { position: absolute; font: 2rem/1 "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", sans-serif; white-space: nowrap; }
.emostream-swarm .float small { font: 600 .38em system-ui, sans-serif; color: #ffd98a; vertical-align: middle; margin-left: .1em; }
`;
var thousands = new Intl.NumberFormat("en");
function apportion(added2, budget) {
  const entries = [...added2].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (total <= budget) return new Map(entries);
  if (entries.length >= budget) return new Map(entries.slice(0, budget).map(([emoji]) => [emoji, 1]));
  const quotas = entries.map(([emoji, n]) => {
    const quota = n * budget / total;
    const floats = Math.max(1, Math.floor(quota));
    return { emoji, floats, rest: quota - floats };
  });
  let left = budget - quotas.reduce((sum, q) => sum + q.floats, 0);
  for (let i = 0; left < 0; i = (i + 1) % quotas.length) {
    if (quotas[i].floats > 1) {
      quotas[i].floats -= 1;
      left += 1;
    }
  }
  for (const q of quotas.slice().sort((a, b) => b.rest - a.rest)) {
    if (left === 0) break;
    q.floats += 1;
    left -= 1;
  }
  return new Map(quotas.map((q) => [q.emoji, q.floats]));
}
function added(update) {
  const before = new Map((update.previous?.emojis ?? []).map((e) => [e.emoji, e.count]));
  const out = /* @__PURE__ */ new Map();
  for (const e of update.window.emojis) {
    const n = e.count - (before.get(e.emoji) ?? 0);
    if (n > 0) out.set(e.emoji, n);
  }
  return out;
}
var Swarm = class {
  box;
  #batches = [];
  #tapBatch = null;
  /** Floats started so far. */
  floats = 0;
  /** How far apart a window's live messages come (ms, smoothed): a message's floats are
   * spread over it. Unknown until a window has had two. */
  #gap = null;
  /** When each window's last live message came (by seq). */
  #lastAt = /* @__PURE__ */ new Map();
  constructor(box) {
    this.box = box;
    box.classList.add("emostream-swarm");
  }
  /** Floats one own tap at once (when fewer than MAX_FLOATS are rising). */
  tap(emoji) {
    const now = performance.now();
    if (this.#room(now) <= 0) return;
    if (this.#tapBatch === null || now - this.#tapBatch.startedAt > TAP_BATCH_MS) this.#tapBatch = this.#newBatch(now);
    this.#addFloat(this.#tapBatch, emoji, "tap", 1, Math.max(0, now - this.#tapBatch.startedAt));
    this.box.dataset.floats = String(this.floats);
  }
  /** Floats what a live window message added, spread over the time to its window's next. */
  show(update) {
    if (!update.live) return;
    const now = performance.now();
    const { window } = update;
    const size = Date.parse(window.window_end) - Date.parse(window.window_start);
    const last = this.#lastAt.get(window.seq);
    if (window.state === "open" && last !== void 0) {
      const gap = Math.min(size, Math.max(100, now - last));
      this.#gap = this.#gap === null ? gap : 0.8 * this.#gap + 0.2 * gap;
    }
    this.#lastAt.set(window.seq, now);
    if (this.#lastAt.size > 16) this.#lastAt.delete(Math.min(...this.#lastAt.keys()));
    const taps = added(update);
    const shares = apportion(taps, Math.max(0, Math.min(FLOATS_PER_MESSAGE, this.#room(now))));
    if (shares.size === 0) return;
    const spread = Math.min(size, this.#gap ?? size);
    const batch = this.#newBatch(now);
    for (const [emoji, n] of shares) {
      const each = Math.round(taps.get(emoji) / n);
      for (let i = 0; i < n; i++) {
        this.#addFloat(batch, emoji, "window", each, Math.random() * Math.min(spread, LATEST_START_MS), i === 0);
      }
    }
    this.box.dataset.floats = String(this.floats);
  }
  /** A new batch, rising from the next beat on; batches out of the box go. */
  #newBatch(now) {
    for (const batch2 of this.#batches) if (batch2.endsAt <= now) batch2.el.remove();
    this.#batches = this.#batches.filter((batch2) => batch2.endsAt > now);
    const el = document.createElement("div");
    el.className = "batch";
    this.box.appendChild(el);
    const rise = el.animate(
      [{ transform: "none" }, { transform: `translateY(-${BATCH_CQH}cqh)` }],
      { duration: BATCH_STEPS * STEP_MS, easing: `steps(${BATCH_STEPS})`, fill: "forwards" }
    );
    const startedAt = Math.ceil(Number(document.timeline.currentTime ?? now) / STEP_MS) * STEP_MS;
    rise.startTime = startedAt;
    const batch = { el, floats: 0, startedAt, endsAt: startedAt + BATCH_STEPS * STEP_MS };
    this.#batches.push(batch);
    return batch;
  }
  /** Floats that may still start: MAX_FLOATS less those rising. */
  #room(now) {
    return MAX_FLOATS - this.#batches.reduce((n, batch) => n + (batch.endsAt > now ? batch.floats : 0), 0);
  }
  /**
   * Adds a float to `batch` that comes up `at` ms after the batch started; `taps` > 1 is
   * shown by a bigger size, a step for each factor of ten up to 10,000, and with `label` as ×taps.
   */
  #addFloat(batch, emoji, source, taps, at, label = false) {
    const el = document.createElement("span");
    el.className = "float";
    el.dataset.source = source;
    el.textContent = emoji;
    if (label && taps > 1) {
      const times = document.createElement("small");
      times.textContent = `\xD7${thousands.format(taps)}`;
      el.appendChild(times);
    }
    const below = RISE_CQH * at / RISE_MS;
    el.style.cssText = `left: ${(Math.random() * 90).toFixed(1)}%; top: ${below.toFixed(2)}cqh; font-size: ${2 + 0.3 * Math.min(4, Math.floor(Math.log10(taps)))}rem; transform: rotate(${Math.round(Math.random() * 40 - 20)}deg)`;
    batch.el.appendChild(el);
    batch.floats += 1;
    this.floats += 1;
  }
};

// src/element.ts
var DEFAULT_EMOJIS = ["\u{1F525}", "\u{1F602}", "\u{1F44F}"];
var ELEMENT_CSS = `
:host { display: block; position: relative; width: 100%; height: 100%; pointer-events: none; }
:host([hidden]) { display: none; }
.emostream-swarm { position: absolute; inset: 0; }
.buttons { position: absolute; left: .5rem; bottom: .5rem; display: none; gap: .4rem; pointer-events: auto; }
:host([buttons]) .buttons { display: flex; }
.buttons button { font: 1.6rem/1 "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", sans-serif; border: 0; border-radius: .6rem; padding: .2rem .5rem; background: rgba(20, 20, 28, .6); cursor: pointer; }
.buttons button:active { transform: scale(.92); }
`;
function defineSwarmElement(name = "emostream-swarm") {
  if (typeof customElements === "undefined" || customElements.get(name)) return;
  customElements.define(name, class extends SwarmElement {
  });
}
var SwarmElement = class extends (globalThis.HTMLElement ?? class {
}) {
  static observedAttributes = ["emojis"];
  /** The connection: created when the element is first connected. */
  client = null;
  swarm = null;
  #buttons = null;
  connectedCallback() {
    if (this.client) {
      this.client.start();
      return;
    }
    const broadcaster = (this.getAttribute("broadcaster") ?? "").split(/\s+/).filter(Boolean);
    if (broadcaster.length === 0) broadcaster.push(new URL(".", import.meta.url).href);
    const root = this.shadowRoot ?? this.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = SWARM_CSS + ELEMENT_CSS;
    const box = document.createElement("div");
    box.setAttribute("part", "swarm");
    this.#buttons = document.createElement("div");
    this.#buttons.className = "buttons";
    this.#buttons.setAttribute("part", "buttons");
    root.replaceChildren(style, box, this.#buttons);
    this.swarm = new Swarm(box);
    const ingest = this.getAttribute("ingest");
    const kept = `emostream-token ${broadcaster.join(" ")}`;
    const token = storage()?.getItem(kept);
    this.client = new SwarmClient({
      broadcaster,
      ...ingest ? { ingest } : {},
      ...token ? { token } : {}
    });
    this.client.on("registered", (registration) => storage()?.setItem(kept, registration.token));
    this.client.on("window", (update) => {
      if (!update.live || !this.swarm) return;
      this.swarm.show(update);
      this.dataset.floats = String(this.swarm.floats);
    });
    this.client.on("state", ({ state }) => this.#showState(state));
    this.#drawButtons();
    this.client.start();
  }
  disconnectedCallback() {
    void this.client?.close();
  }
  attributeChangedCallback() {
    this.#drawButtons();
  }
  /** The emojis of the tap buttons. */
  get emojis() {
    const given = (this.getAttribute("emojis") ?? "").split(/\s+/).filter(Boolean);
    return given.length > 0 ? given : DEFAULT_EMOJIS;
  }
  /** Floats an own tap at once and sends it to the ingest; resolves whether it was taken. */
  async tap(emoji) {
    if (this.swarm) {
      this.swarm.tap(emoji);
      this.dataset.floats = String(this.swarm.floats);
    }
    if (!this.client || !this.getAttribute("ingest")) return false;
    return (await this.client.tap(emoji)).accepted;
  }
  #showState(state) {
    this.dataset.state = state;
  }
  #drawButtons() {
    if (!this.#buttons) return;
    this.#buttons.replaceChildren(...this.emojis.map((emoji) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = emoji;
      button.title = `send ${emoji}`;
      button.addEventListener("click", () => void this.tap(emoji));
      return button;
    }));
  }
};
function storage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

// src/index.ts
defineSwarmElement();
export {
  CloseCode,
  Emitter,
  FLOATS_PER_MESSAGE,
  MAX_FLOATS,
  SWARM_CSS,
  Swarm,
  SwarmClient,
  SwarmElement,
  WindowStore,
  added,
  apportion,
  defineSwarmElement
};
