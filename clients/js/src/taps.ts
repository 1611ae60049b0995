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
  clientId: string;
  /** The viewer token, if the client has one. */
  token: () => string | null;
  /** Registers again for a fresh token; resolves whether it got one. */
  renew: () => Promise<boolean>;
}

/** Taps in one request, at most (the ingest's default limit is far above). */
const MAX_BATCH = 100;

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
    return new Promise((resolve) => {
      this.#pending.push({ emoji, resolve });
      if (this.#inFlight === null) this.#send();
    });
  }

  /** Resolves once every tap made so far is answered. */
  async flush(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }

  /** Sends what is waiting (at most MAX_BATCH), then what came meanwhile. */
  #send(): void {
    const batch = this.#pending.splice(0, MAX_BATCH);
    if (batch.length === 0) {
      this.#inFlight = null;
      return;
    }
    this.#inFlight = this.#post(batch).then((result) => {
      for (const tap of batch) tap.resolve(result);
      this.#send();
    });
  }

  /** Posts the batch; once more after a fresh registration (token refused) or as a 503 asks. */
  async #post(batch: Pending[]): Promise<TapResult> {
    const body = JSON.stringify(batch.map(({ emoji }) => ({ user_id: this.#options.clientId, emoji_type: emoji })));
    let result = await this.#attempt(body);
    if (result.status === 401 && this.#options.token() !== null && (await this.#options.renew())) {
      result = await this.#attempt(body);
    } else if (result.status === 503 && result.retryAfter !== null) {
      await new Promise((resolve) => setTimeout(resolve, result.retryAfter! * 1000));
      result = await this.#attempt(body);
    }
    const { retryAfter: _, ...tap } = result;
    return tap;
  }

  async #attempt(body: string): Promise<TapResult & { retryAfter: number | null }> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    const token = this.#options.token();
    if (token) headers.authorization = `Bearer ${token}`;
    try {
      const response = await this.#options.fetch(this.#url, { method: "POST", headers, body });
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
