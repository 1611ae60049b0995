// Typed events: `on(name, listener)` returns the function that removes the listener.

export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<(value: any) => void>>();

  /** Calls `listener` with each `name` event; returns the function that stops it. */
  on<K extends keyof Events>(name: K, listener: (value: Events[K]) => void): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  protected emit<K extends keyof Events>(name: K, value: Events[K]): void {
    for (const listener of [...(this.#listeners.get(name) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        // One listener's error stops neither the others nor the client.
        const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
        if (report) report(error);
        else console.error(error);
      }
    }
  }
}
