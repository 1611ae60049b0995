// <emostream-swarm>: the swarm over whatever is behind it, on one script tag and one element.
//
//   <script type="module" src="https://BROADCASTER/emostream.js"></script>
//   <emostream-swarm broadcaster="https://BROADCASTER" ingest="https://INGEST" buttons></emostream-swarm>
//
// Attributes: `broadcaster` (one address, or several separated by spaces, tried in turn;
// default: where this module came from), `ingest` (where taps go), `emojis` (the tap
// buttons, separated by spaces), `buttons` (show them). The element is transparent and fills
// its box; its state is in `data-state`, and `client` is its SwarmClient (windows, events,
// taps). The viewer's token is kept in the tab's sessionStorage, so a reload is the same
// viewer.

import { SwarmClient } from "./client.js";
import type { ConnectionState } from "./client.js";
import { SWARM_CSS, Swarm } from "./swarm.js";

const DEFAULT_EMOJIS = ["🔥", "😂", "👏"];

const ELEMENT_CSS = `
:host { display: block; position: relative; width: 100%; height: 100%; pointer-events: none; }
:host([hidden]) { display: none; }
.emostream-swarm { position: absolute; inset: 0; }
.buttons { position: absolute; left: .5rem; bottom: .5rem; display: none; gap: .4rem; pointer-events: auto; }
:host([buttons]) .buttons { display: flex; }
.buttons button { font: 1.6rem/1 "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", sans-serif; border: 0; border-radius: .6rem; padding: .2rem .5rem; background: rgba(20, 20, 28, .6); cursor: pointer; }
.buttons button:active { transform: scale(.92); }
`;

/** Defines `<emostream-swarm>` (once; where the platform has custom elements). */
export function defineSwarmElement(name = "emostream-swarm"): void {
  if (typeof customElements === "undefined" || customElements.get(name)) return;
  customElements.define(name, class extends SwarmElement {});
}

/** The class behind `<emostream-swarm>`. */
export class SwarmElement extends (globalThis.HTMLElement ?? (class {} as typeof HTMLElement)) {
  static observedAttributes = ["emojis"];
  /** The connection: created when the element is first connected. */
  client: SwarmClient | null = null;
  swarm: Swarm | null = null;
  #buttons: HTMLElement | null = null;

  connectedCallback(): void {
    if (this.client) {
      this.client.start();
      return;
    }
    const broadcaster = (this.getAttribute("broadcaster") ?? "").split(/\s+/).filter(Boolean);
    // The broadcaster that served this module.
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
      ...(ingest ? { ingest } : {}),
      ...(token ? { token } : {}),
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

  disconnectedCallback(): void {
    void this.client?.close();
  }

  attributeChangedCallback(): void {
    this.#drawButtons();
  }

  /** The emojis of the tap buttons. */
  get emojis(): string[] {
    const given = (this.getAttribute("emojis") ?? "").split(/\s+/).filter(Boolean);
    return given.length > 0 ? given : DEFAULT_EMOJIS;
  }

  /** Floats an own tap at once and sends it to the ingest; resolves whether it was taken. */
  async tap(emoji: string): Promise<boolean> {
    if (this.swarm) {
      this.swarm.tap(emoji);
      this.dataset.floats = String(this.swarm.floats);
    }
    if (!this.client || !this.getAttribute("ingest")) return false;
    return (await this.client.tap(emoji)).accepted;
  }

  #showState(state: ConnectionState): void {
    this.dataset.state = state;
  }

  #drawButtons(): void {
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
}

/** The tab's sessionStorage, where there is one (not in a sandboxed frame without it). */
function storage(): Storage | null {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}
