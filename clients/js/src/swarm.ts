// The swarm: each live window message floats what it added, as batches of rising emojis.
//
// A message's floats go up together in one batch, each placed as far below the box as its
// moment in the message's spread is later: a float 100 ms later comes up 100 ms later. A new
// frame restyles a handful of batches, not every float. Batches rise in steps of STEP_MS, all
// on the same beat, so the box is drawn again at most 1000 / STEP_MS times a second however
// many batches rise. Heights are in `cqh`, the box's own height (it is a size container):
// the swarm fills whatever box it is given.

import type { WindowUpdate } from "./windows.js";

/** A message floats one emoji per tap while it adds at most this many taps, and this many
 * in all, shared out by emoji, when it adds more. */
export const FLOATS_PER_MESSAGE = 40;
/** Floats in the box at once, at most: the swarm's cost does not grow with the audience. */
export const MAX_FLOATS = 200;
// Rising for RISE_MS moves a float up 110% of the box (out of it); a batch goes on to 150%,
// so a float may start up to (150 - 110) / 110 of RISE_MS late.
const RISE_MS = 2800;
const RISE_CQH = 110;
const BATCH_CQH = 150;
const LATEST_START_MS = (RISE_MS * (BATCH_CQH - RISE_CQH)) / RISE_CQH;
const STEP_MS = 1000 / 30;
const BATCH_STEPS = Math.round((RISE_MS * BATCH_CQH) / RISE_CQH / STEP_MS);
/** Own taps join the batch of the tap before when it left this recently. */
const TAP_BATCH_MS = 300;

/** The swarm's styles, for the document or shadow root the box is in. */
export const SWARM_CSS = `
.emostream-swarm { position: relative; overflow: hidden; contain: strict; container-type: size; pointer-events: none; }
.emostream-swarm .batch { position: absolute; left: 0; right: 0; bottom: 0; height: 0; }
.emostream-swarm .float { position: absolute; font: 2rem/1 "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", sans-serif; white-space: nowrap; }
.emostream-swarm .float small { font: 600 .38em system-ui, sans-serif; color: #ffd98a; vertical-align: middle; margin-left: .1em; }
`;

interface Batch {
  el: HTMLElement;
  floats: number;
  startedAt: number;
  endsAt: number;
}

const thousands = new Intl.NumberFormat("en");

/**
 * How many floats each emoji gets for the taps a message added (emoji -> taps): one per tap
 * when they are at most `budget`; else `budget` shared by each emoji's part of the taps
 * (largest remainder), at least one for every emoji that got taps while the budget lasts.
 */
export function apportion(added: Map<string, number>, budget: number): Map<string, number> {
  const entries = [...added].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (total <= budget) return new Map(entries);
  if (entries.length >= budget) return new Map(entries.slice(0, budget).map(([emoji]) => [emoji, 1]));
  // Each quota is below the emoji's taps: no emoji gets more floats than taps.
  const quotas = entries.map(([emoji, n]) => {
    const quota = (n * budget) / total;
    const floats = Math.max(1, Math.floor(quota));
    return { emoji, floats, rest: quota - floats };
  });
  let left = budget - quotas.reduce((sum, q) => sum + q.floats, 0);
  // Too many minimums of one: take back from the largest shares.
  for (let i = 0; left < 0; i = (i + 1) % quotas.length) {
    if (quotas[i]!.floats > 1) {
      quotas[i]!.floats -= 1;
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

/** What a window message added to its window, by emoji. */
export function added(update: WindowUpdate): Map<string, number> {
  const before = new Map((update.previous?.emojis ?? []).map((e) => [e.emoji, e.count]));
  const out = new Map<string, number>();
  for (const e of update.window.emojis) {
    const n = e.count - (before.get(e.emoji) ?? 0);
    if (n > 0) out.set(e.emoji, n);
  }
  return out;
}

/** The swarm drawn in `box` (given the class `emostream-swarm`; style it with SWARM_CSS). */
export class Swarm {
  readonly box: HTMLElement;
  #batches: Batch[] = [];
  #tapBatch: Batch | null = null;
  /** Floats started so far. */
  floats = 0;
  /** How far apart a window's live messages come (ms, smoothed): a message's floats are
   * spread over it. Unknown until a window has had two. */
  #gap: number | null = null;
  /** When each window's last live message came (by seq). */
  #lastAt = new Map<number, number>();

  constructor(box: HTMLElement) {
    this.box = box;
    box.classList.add("emostream-swarm");
  }

  /** Floats one own tap at once (when fewer than MAX_FLOATS are rising). */
  tap(emoji: string): void {
    const now = performance.now();
    if (this.#room(now) <= 0) return;
    if (this.#tapBatch === null || now - this.#tapBatch.startedAt > TAP_BATCH_MS) this.#tapBatch = this.#newBatch(now);
    this.#addFloat(this.#tapBatch, emoji, "tap", 1, Math.max(0, now - this.#tapBatch.startedAt));
    this.box.dataset.floats = String(this.floats);
  }

  /** Floats what a live window message added, spread over the time to its window's next. */
  show(update: WindowUpdate): void {
    if (!update.live) return;
    const now = performance.now();
    const { window } = update;
    const size = Date.parse(window.window_end) - Date.parse(window.window_start);
    const last = this.#lastAt.get(window.seq);
    if (window.state === "open" && last !== undefined) {
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
      const each = Math.round(taps.get(emoji)! / n);
      // Each emoji's first float says how many taps each stands for (labels cost text layout).
      for (let i = 0; i < n; i++) {
        this.#addFloat(batch, emoji, "window", each, Math.random() * Math.min(spread, LATEST_START_MS), i === 0);
      }
    }
    this.box.dataset.floats = String(this.floats);
  }

  /** A new batch, rising from the next beat on; batches out of the box go. */
  #newBatch(now: number): Batch {
    for (const batch of this.#batches) if (batch.endsAt <= now) batch.el.remove();
    this.#batches = this.#batches.filter((batch) => batch.endsAt > now);
    const el = document.createElement("div");
    el.className = "batch";
    this.box.appendChild(el);
    const rise = el.animate([{ transform: "none" }, { transform: `translateY(-${BATCH_CQH}cqh)` }],
      { duration: BATCH_STEPS * STEP_MS, easing: `steps(${BATCH_STEPS})`, fill: "forwards" });
    const startedAt = Math.ceil(Number(document.timeline.currentTime ?? now) / STEP_MS) * STEP_MS;
    rise.startTime = startedAt;
    const batch = { el, floats: 0, startedAt, endsAt: startedAt + BATCH_STEPS * STEP_MS };
    this.#batches.push(batch);
    return batch;
  }

  /** Floats that may still start: MAX_FLOATS less those rising. */
  #room(now: number): number {
    return MAX_FLOATS - this.#batches.reduce((n, batch) => n + (batch.endsAt > now ? batch.floats : 0), 0);
  }

  /**
   * Adds a float to `batch` that comes up `at` ms after the batch started; `taps` > 1 is
   * shown by a bigger size, a step for each factor of ten up to 10,000, and with `label` as ×taps.
   */
  #addFloat(batch: Batch, emoji: string, source: "tap" | "window", taps: number, at: number, label = false): void {
    const el = document.createElement("span");
    el.className = "float";
    el.dataset.source = source;
    el.textContent = emoji;
    if (label && taps > 1) {
      const times = document.createElement("small");
      times.textContent = `×${thousands.format(taps)}`;
      el.appendChild(times);
    }
    const below = (RISE_CQH * at) / RISE_MS;
    el.style.cssText = `left: ${(Math.random() * 90).toFixed(1)}%; top: ${below.toFixed(2)}cqh; `
      + `font-size: ${2 + 0.3 * Math.min(4, Math.floor(Math.log10(taps)))}rem; transform: rotate(${Math.round(Math.random() * 40 - 20)}deg)`;
    batch.el.appendChild(el);
    batch.floats += 1;
    this.floats += 1;
  }
}
