// Taps to the ingest, with the viewer's token: a tap goes at once when no request is in
// flight; the taps made meanwhile go together in the next request.

/** What became of a tap. */
export interface TapResult {
  /** Whether the ingest took it. */
  accepted: boolean;
  /** The HTTP status (0: no answer). */
  status: number;
  /** Why not, as the ingest said. */
  error?: string;
}

export interface TapSenderOptions {
  ingest: string;
  fetch: typeof fetch;
  /** A request with no answer within this fails, ms. */
  timeout: number;
  /** The viewer's id (the broadcaster's), once registered. */
  viewer: () => string | null;
  /** The viewer token, if the client has one. */
  token: () => string | null;
  /** Settles once the first registration is over: taps wait for its token. */
  ready: () => Promise<void>;
  /** Registers again for a fresh token; resolves whether it got one. */
  renew: () => Promise<boolean>;
}

/** Taps in one request, at most (the ingest's default limit is far above). */
const MAX_BATCH = 100;
/** Taps waiting to be sent, at most: past it a tap is refused at once (memory stays bounded
 * when the ingest does not answer). */
const MAX_WAITING = 1000;

interface Pending {
  emoji: string;
  resolve: (result: TapResult) => void;
}

export class TapSender {
  readonly #options: TapSenderOptions;
  readonly #url: string;
  #pending: Pending[] = [];
  #inFlight: Promise<void> | null = null;

  constructor(options: TapSenderOptions) {
    this.#options = options;
    this.#url = `${options.ingest.replace(/\/+$/, "")}/emoji`;
  }

  tap(emoji: string): Promise<TapResult> {
    if (this.#pending.length >= MAX_WAITING) {
      return Promise.resolve({ accepted: false, status: 0, error: `more than ${MAX_WAITING} taps waiting for the ingest` });
    }
    return new Promise((resolve) => {
      this.#pending.push({ emoji, resolve });
      if (this.#inFlight === null) this.#inFlight = this.#options.ready().then(() => this.#send());
    });
  }

  /** Resolves once every tap made so far is answered. */
  async flush(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }

  /** Sends what is waiting (at most MAX_BATCH), then what came meanwhile. */
  #send(): Promise<void> {
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
  async #post(batch: Pending[]): Promise<TapResult> {
    let result = await this.#attempt(batch);
    if (result.status === 401 && this.#options.token() !== null && (await this.#options.renew())) {
      result = await this.#attempt(batch);
    } else if (result.status === 503 && result.retryAfter !== null) {
      await new Promise((resolve) => setTimeout(resolve, result.retryAfter! * 1000));
      result = await this.#attempt(batch);
    }
    const { retryAfter: _, ...tap } = result;
    return tap;
  }

  async #attempt(batch: Pending[]): Promise<TapResult & { retryAfter: number | null }> {
    // The viewer's own id (an ingest with viewer tokens takes it from the token anyway).
    const viewer = this.#options.viewer();
    const body = JSON.stringify(batch.map(({ emoji }) => (viewer ? { user_id: viewer, emoji_type: emoji } : { emoji_type: emoji })));
    const headers: Record<string, string> = { "content-type": "application/json" };
    const token = this.#options.token();
    if (token) headers.authorization = `Bearer ${token}`;
    try {
      const response = await this.#options.fetch(this.#url, {
        method: "POST", headers, body, signal: AbortSignal.timeout(this.#options.timeout),
      });
      if (response.ok) return { accepted: true, status: response.status, retryAfter: null };
      const said = await response.json().catch(() => ({})) as { error?: string };
      const seconds = Number(response.headers.get("retry-after"));
      return {
        accepted: false,
        status: response.status,
        error: said.error ?? response.statusText,
        retryAfter: Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 10) : null,
      };
    } catch (error) {
      return { accepted: false, status: 0, error: String((error as Error).message ?? error), retryAfter: null };
    }
  }
}
