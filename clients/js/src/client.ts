// The connection to a cluster's broadcasters: registration, the WebSocket, snapshot and
// resume, reconnection with backoff and a fresh registration, token renewal, liveness.

import { CloseCode } from "./messages.js";
import type { Hello, Registration, ServerMessage, SummaryReport, WindowReport } from "./messages.js";
import { Emitter } from "./emitter.js";
import { TapSender } from "./taps.js";
import type { TapResult } from "./taps.js";
import { WindowStore } from "./windows.js";
import type { WindowUpdate } from "./windows.js";

/** The part of the WebSocket API the client uses (the platform's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `WebSocket` of the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The connection's state. */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "closed";

export interface ClientOptions {
  /**
   * Where to register: a broadcaster's address (`https://live.example.com/c1`), or several,
   * tried in turn when one does not answer (any broadcaster of the deployment registers).
   */
  broadcaster: string | string[];
  /** The ingest's address (`https://taps.example.com`), for `tap()`. */
  ingest?: string;
  /**
   * A token of an earlier registration (`registration.token`, kept by the page): the
   * broadcaster gives the same viewer id again. Without one, a new viewer.
   */
  token?: string;
  /** The WebSocket to use. Default: the platform's, else the `ws` package's (Node 20). */
  WebSocket?: WebSocketConstructor;
  /** The fetch to use. Default: the platform's. */
  fetch?: typeof fetch;
  /** The first retry waits about this long (jittered, doubling up to `maxDelay`), ms. Default 500. */
  minDelay?: number;
  /** The longest wait between attempts, ms. Default 10,000. */
  maxDelay?: number;
  /** Renew the token this long before it expires, ms. Default 60,000. */
  renewBefore?: number;
  /** Send a ping this often, ms; a connection that leaves one unanswered until the next is replaced. Default 20,000. */
  pingInterval?: number;
  /** A registration, a tap request or a connection's opening that takes longer fails, ms. Default 10,000. */
  timeout?: number;
  /** Windows held, at most (the oldest go first). Default 1,000. */
  maxWindows?: number;
}

/** The events of a client and what their listeners get. */
export interface ClientEvents {
  /** A window message with a revision higher than the one held. */
  window: WindowUpdate;
  /** A window of the longer size (the per-minute timeline). */
  summary: SummaryReport;
  /** The connection's state changed. */
  state: { state: ConnectionState; reason?: string };
  /** A connection opened: its cluster and the broadcaster's epoch. */
  hello: Hello;
  /** A registration (first, after a reconnect, or a renewal). */
  registered: Registration;
}

/** Why an attempt failed and how long the server asked to wait. */
class Refused extends Error {
  constructor(message: string, readonly retryAfter: number | null) {
    super(message);
  }
}

const OPEN = 1;
/** A connection open this long counts as a success: the backoff starts over after it. */
const STABLE_MS = 5000;

/** A timer that does not keep Node's event loop alive. */
function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}

/**
 * A viewer of one cluster: registers, connects, keeps the highest revision of each window,
 * and comes back by itself (resuming after the newest final) when its broadcaster goes.
 */
export class SwarmClient extends Emitter<ClientEvents> {
  readonly windows: WindowStore;
  readonly #options: Required<Omit<ClientOptions, "ingest" | "token" | "WebSocket" | "fetch">>;
  readonly #registrars: string[];
  readonly #fetch: typeof fetch;
  readonly #taps: TapSender | null;
  #WebSocket: WebSocketConstructor | undefined;
  #socket: WebSocketLike | null = null;
  #registration: Registration | null = null;
  #token: string | null;
  #state: ConnectionState = "closed";
  #stopped = true;
  /** Counts starts: what an earlier start left running sees it is not the current one. */
  #generation = 0;
  #attempt = 0;
  #retry: ReturnType<typeof setTimeout> | null = null;
  #renewal: ReturnType<typeof setTimeout> | null = null;
  #pinger: ReturnType<typeof setInterval> | null = null;
  /** When the last ping went, and whether anything came since. */
  #pingedAt = 0;
  #heard = 0;
  /** Window messages still to come from the ring (the snapshot, a resume). */
  #fromRing = 0;
  /** Which registrar to ask first. */
  #next = 0;
  /** Settles once the first round of registration is over (taps wait for its token). */
  #firstRound: Promise<void>;
  #firstRoundOver: () => void = () => {};

  constructor(options: ClientOptions) {
    super();
    const registrars = Array.isArray(options.broadcaster) ? options.broadcaster : [options.broadcaster];
    if (registrars.length === 0 || registrars.some((url) => !url)) throw new TypeError("broadcaster: give at least one address");
    this.#registrars = registrars.map((url) => url.replace(/\/+$/, ""));
    this.#token = options.token ?? null;
    this.#options = {
      broadcaster: this.#registrars,
      minDelay: options.minDelay ?? 500,
      maxDelay: options.maxDelay ?? 10_000,
      renewBefore: options.renewBefore ?? 60_000,
      pingInterval: options.pingInterval ?? 20_000,
      timeout: options.timeout ?? 10_000,
      maxWindows: options.maxWindows ?? 1000,
    };
    const platformFetch = options.fetch ?? globalThis.fetch;
    if (!platformFetch) throw new TypeError("no fetch: pass options.fetch");
    this.#fetch = platformFetch.bind(globalThis);
    this.#WebSocket = options.WebSocket ?? (globalThis as any).WebSocket;
    this.windows = new WindowStore(this.#options.maxWindows);
    this.#firstRound = new Promise((resolve) => {
      this.#firstRoundOver = resolve;
    });
    this.#taps = options.ingest
      ? new TapSender({
        ingest: options.ingest,
        fetch: this.#fetch,
        timeout: this.#options.timeout,
        viewer: () => this.#registration?.client_id ?? null,
        token: () => this.#token,
        ready: () => this.#firstRound,
        renew: () => this.#renew(),
      })
      : null;
  }

  /** The connection's state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The newest registration: the viewer's id, cluster, broadcaster, token and its expiry. */
  get registration(): Registration | null {
    return this.#registration;
  }

  /** This viewer's id, once registered (the broadcaster's, carried by its token). */
  get clientId(): string | null {
    return this.#registration?.client_id ?? null;
  }

  /** Registers and connects; comes back by itself until `close()`. */
  start(): this {
    if (!this.#stopped) return this;
    this.#stopped = false;
    this.#generation += 1;
    this.#setState("connecting");
    void this.#connect(this.#generation);
    return this;
  }

  /** Closes the connection and stops coming back; taps still queued are sent. */
  close(): Promise<void> {
    this.#stopped = true;
    this.#generation += 1;
    for (const timer of [this.#retry, this.#renewal]) if (timer !== null) clearTimeout(timer);
    this.#retry = this.#renewal = null;
    this.#stopPinging();
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000, "closed by the client");
    this.#setState("closed");
    return this.#taps ? this.#taps.flush() : Promise.resolve();
  }

  /** Sends a tap of `emoji` to the ingest; resolves whether it was accepted. */
  tap(emoji: string): Promise<TapResult> {
    if (!this.#taps) return Promise.reject(new Error("no ingest: pass options.ingest to tap"));
    return this.#taps.tap(emoji);
  }

  #setState(state: ConnectionState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", reason === undefined ? { state } : { state, reason });
  }

  /** Registers at the first registrar that answers. */
  async #register(): Promise<Registration> {
    let last: Refused | null = null;
    try {
      for (let i = 0; i < this.#registrars.length; i++) {
        const at = (this.#next + i) % this.#registrars.length;
        try {
          const registration = await this.#registerAt(this.#registrars[at]!);
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

  async #registerAt(base: string): Promise<Registration> {
    let response: Response;
    const headers: Record<string, string> = { "content-type": "application/json" };
    // The token of an earlier registration keeps this viewer's id.
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    try {
      response = await this.#fetch(`${base}/register`, {
        method: "POST",
        headers,
        body: "{}",
        signal: AbortSignal.timeout(this.#options.timeout),
      });
    } catch (error) {
      throw new Refused(`registration at ${base} failed: ${(error as Error).message ?? error}`, null);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new Refused(`registration at ${base}: ${response.status} ${text}`.trim(), retryAfter(response.headers.get("retry-after")));
    }
    const registration = (await response.json()) as Registration;
    registration.token ??= new URL(registration.ws_url).searchParams.get("token") ?? "";
    this.#registration = registration;
    this.#token = registration.token;
    if (!this.#stopped) this.#scheduleRenewal(registration);
    this.emit("registered", registration);
    return registration;
  }

  /** Registers again before the token expires: taps and the next connection use the new one. */
  #scheduleRenewal(registration: Registration): void {
    if (this.#renewal !== null) clearTimeout(this.#renewal);
    this.#renewal = null;
    const expires = Date.parse(registration.expires);
    if (Number.isNaN(expires)) return;
    const wait = Math.max(1000, expires - Date.now() - this.#options.renewBefore);
    this.#renewal = unref(setTimeout(() => {
      this.#renewal = null;
      if (!this.#stopped) void this.#renew();
    }, wait));
  }

  /** A fresh registration now (a refused token, a renewal); when it fails, again later. */
  async #renew(): Promise<boolean> {
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

  async #connect(generation: number): Promise<void> {
    this.#retry = null;
    const current = () => generation === this.#generation && !this.#stopped;
    if (!current()) return;
    let registration: Registration;
    try {
      registration = await this.#register();
      this.#WebSocket ??= await loadWs();
    } catch (error) {
      if (current()) this.#reconnectLater(generation, error instanceof Refused ? error.retryAfter : null, String((error as Error).message ?? error));
      return;
    }
    if (!current()) return;
    const socket = new this.#WebSocket(registration.ws_url);
    this.#socket = socket;
    let openedAt: number | null = null;
    // A connection still opening after the timeout is given up.
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
      // A close follows.
    };
    socket.onclose = (event) => {
      clearTimeout(opening);
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#stopPinging();
      if (!current()) return;
      // A connection that lasted starts the backoff over; one closed at once does not.
      if (openedAt !== null && Date.now() - openedAt >= STABLE_MS) this.#attempt = 0;
      // A handshake refused (503 when the broadcaster is full or busy, 401 for a token it
      // does not take) closes without opening, and a page cannot read its answer: wait what
      // the broadcaster's Retry-After says (1 s), at least.
      const reason = openedAt !== null ? closeReason(event.code, event.reason) : "the broadcaster did not take the connection";
      const wait = openedAt !== null && event.code !== CloseCode.GoingAway ? null : 1;
      this.#reconnectLater(generation, wait, reason);
    };
  }

  #receive(text: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
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
        const window: WindowReport = { ...message, revision: message.revision ?? 0, state: message.state ?? "final" };
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
  #startPinging(socket: WebSocketLike): void {
    this.#stopPinging();
    this.#pingedAt = 0;
    this.#pinger = unref(setInterval(() => {
      if (this.#socket !== socket || socket.readyState !== OPEN) return;
      if (this.#pingedAt !== 0 && this.#heard < this.#pingedAt) {
        socket.close(4000, "no answer to a ping");
        socket.onclose?.({ code: 4000, reason: "no answer to a ping" });
        return;
      }
      this.#pingedAt = Date.now();
      socket.send('{"type":"ping"}');
    }, this.#options.pingInterval));
  }

  #stopPinging(): void {
    if (this.#pinger !== null) clearInterval(this.#pinger);
    this.#pinger = null;
  }

  /** Jittered exponential backoff, at least `retryAfter` seconds when the server asked. */
  #delay(retryAfter: number | null): number {
    const { minDelay, maxDelay } = this.#options;
    const backoff = Math.min(maxDelay, minDelay * 2 ** this.#attempt) * (0.5 + Math.random());
    const asked = retryAfter === null ? 0 : retryAfter * 1000 * (1 + Math.random());
    return Math.max(backoff, asked);
  }

  #reconnectLater(generation: number, retryAfter: number | null, reason: string): void {
    if (this.#stopped || this.#retry !== null) return;
    this.#setState("reconnecting", reason);
    const delay = this.#delay(retryAfter);
    this.#attempt += 1;
    this.#retry = setTimeout(() => void this.#connect(generation), delay);
  }
}

/** `Retry-After` in seconds (a number of seconds or an HTTP date), or `null`. */
function retryAfter(header: string | null): number | null {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

function closeReason(code: number, reason: string): string {
  const known: Record<number, string> = {
    [CloseCode.GoingAway]: "the broadcaster is shutting down",
    [CloseCode.TooFarBehind]: "too far behind",
    [CloseCode.NotReading]: "not reading",
  };
  return `closed ${code}${reason ? `: ${reason}` : known[code] ? `: ${known[code]}` : ""}`;
}

/** The `ws` package's WebSocket, where the platform has none (Node 20). */
async function loadWs(): Promise<WebSocketConstructor> {
  const name = "ws";
  try {
    const module = await import(/* @vite-ignore */ name);
    return (module.WebSocket ?? module.default) as WebSocketConstructor;
  } catch {
    throw new Error("no WebSocket in this runtime: install the ws package or pass options.WebSocket");
  }
}
