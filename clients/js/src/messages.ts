// What a broadcaster sends and answers: the wire format of `/register` and `/ws`.

/** One emoji's totals in a window. */
export interface EmojiCount {
  emoji: string;
  /** Taps of this emoji in the window. */
  count: number;
  /** Distinct users who tapped it. */
  unique_users: number;
  /** `max(1, count / scale)`: each `scale` taps count as one. */
  scaled_count: number;
  /** `count / events`, rounded to 6 decimals. */
  share: number;
}

/** Where a window is in its life: still taking taps, closed, or amended after it closed. */
export type WindowState = "open" | "final" | "revised";

/** A window's message: its exact totals when it was sent. */
export interface WindowReport {
  type: "window";
  /** The window's index since the epoch (`window_start / size`): the same window always has the same `seq`. */
  seq: number;
  /** Increases with every message about the window: the highest wins. */
  revision: number;
  state: WindowState;
  /** RFC 3339, UTC, inclusive. */
  window_start: string;
  /** RFC 3339, UTC, exclusive. */
  window_end: string;
  /** Taps in the window. */
  events: number;
  /** Distinct users in the window. */
  unique_users: number;
  /** Per emoji, sorted by the emoji. */
  emojis: EmojiCount[];
}

/** A window of the longer size (the per-minute timeline), final. */
export interface SummaryReport extends Omit<WindowReport, "type"> {
  type: "summary";
}

/** The first message of a connection: `snapshot` window messages from the ring follow it. */
export interface Hello {
  type: "hello";
  cluster: number;
  /** When the broadcaster started (UTC ms): a new epoch is a new ring. */
  epoch: number;
  snapshot: number;
}

/** Precedes the `windows` messages a `resume` asked for. */
export interface Resumed {
  type: "resumed";
  windows: number;
}

/** The answer to the client's `{"type":"ping"}`. */
export interface Pong {
  type: "pong";
}

/** Anything a broadcaster sends on `/ws`. */
export type ServerMessage = Hello | Resumed | WindowReport | SummaryReport | Pong;

/** The answer of `POST /register`. */
export interface Registration {
  cluster: number;
  /** The broadcaster to connect to, token included. */
  ws_url: string;
  client_id: string;
  /** Signed for this client: the ingest takes it as the viewer's identity (`--viewer-tokens`). */
  token: string;
  /** RFC 3339: when the token expires. */
  expires: string;
}

/** Close codes a broadcaster uses. */
export const CloseCode = {
  /** The broadcaster is shutting down. */
  GoingAway: 1001,
  /** The client had more than `--max-pending` bytes still to get. */
  TooFarBehind: 4001,
  /** The client took no byte for `--write-timeout`. */
  NotReading: 4002,
} as const;
