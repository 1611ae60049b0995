// EmoStream's client: the live windows of a match from its broadcasters, and taps to its
// ingest; in a browser, `<emostream-swarm>` too.

export { SwarmClient } from "./client.js";
export type { ClientEvents, ClientOptions, ConnectionState, WebSocketConstructor, WebSocketLike } from "./client.js";
export { Emitter } from "./emitter.js";
export { CloseCode } from "./messages.js";
export type { EmojiCount, Hello, Registration, Resumed, ServerMessage, SummaryReport, WindowReport, WindowState } from "./messages.js";
export type { TapResult } from "./taps.js";
export { WindowStore } from "./windows.js";
export type { WindowUpdate } from "./windows.js";
export { FLOATS_PER_MESSAGE, MAX_FLOATS, SWARM_CSS, Swarm, added, apportion } from "./swarm.js";
export { SwarmElement, defineSwarmElement } from "./element.js";

import { defineSwarmElement } from "./element.js";

defineSwarmElement();
