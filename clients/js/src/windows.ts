// The windows a client holds: the highest revision of each `seq`, and where to resume.

import type { WindowReport } from "./messages.js";

/** What a window message changed. */
export interface WindowUpdate {
  /** The window as it is now (the highest revision held). */
  window: WindowReport;
  /** The revision it replaced, if one was held. */
  previous: WindowReport | undefined;
  /** Sent as it happened (not from the ring: the snapshot on connect, a resume). */
  live: boolean;
}

/**
 * The highest revision of each window, at most `limit` windows (the oldest go first).
 * A message of a window is taken only when its revision is higher than the one held: a
 * window's final is never replaced by an older open update, whatever order they come in.
 */
export class WindowStore {
  readonly #windows = new Map<number, WindowReport>();
  readonly #limit: number;
  /** The newest window held final (or revised): a reconnection resumes after it. */
  lastFinal: number | null = null;

  constructor(limit = 1000) {
    this.#limit = Math.max(1, limit);
  }

  /** Takes a window message; what changed, or `null` when it was not newer than the one held. */
  take(window: WindowReport, live: boolean): WindowUpdate | null {
    const previous = this.#windows.get(window.seq);
    if (previous !== undefined && window.revision <= previous.revision) return null;
    if (previous === undefined && this.#windows.size >= this.#limit && window.seq < this.oldest()!) return null;
    this.#windows.set(window.seq, window);
    if (window.state !== "open") this.lastFinal = Math.max(this.lastFinal ?? window.seq, window.seq);
    while (this.#windows.size > this.#limit) this.#windows.delete(this.oldest()!);
    return { window, previous, live };
  }

  /** The `seq` to resume after: the newest final, else before the oldest window held. */
  resumeAfter(): number | null {
    if (this.lastFinal !== null) return this.lastFinal;
    const oldest = this.oldest();
    return oldest === undefined ? null : oldest - 1;
  }

  get(seq: number): WindowReport | undefined {
    return this.#windows.get(seq);
  }

  /** The windows held, oldest first. */
  list(): WindowReport[] {
    return [...this.#windows.values()].sort((a, b) => a.seq - b.seq);
  }

  get size(): number {
    return this.#windows.size;
  }

  oldest(): number | undefined {
    let oldest: number | undefined;
    for (const seq of this.#windows.keys()) if (oldest === undefined || seq < oldest) oldest = seq;
    return oldest;
  }
}
