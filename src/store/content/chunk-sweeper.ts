import { CHUNK_SWEEP_GRACE_MS, type Store } from '../store.js';

/** How often a running server sweeps unreferenced chunks (and once shortly after it starts). */
export const CHUNK_SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/**
 * Removes, in the background, the chunks nobody names (left by writes that were refused or failed after
 * their chunks were stored) once they are older than CHUNK_SWEEP_GRACE_MS (see Store.sweepChunks). Every
 * server process does this; sweeps from several processes on one database are harmless.
 */
export class ChunkSweeper {
  private first: NodeJS.Timeout | null = null;
  private interval: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly onSwept: (removed: number) => void,
    private readonly onError: (err: unknown) => void,
    private readonly graceMs = CHUNK_SWEEP_GRACE_MS,
  ) {}

  start(intervalMs = CHUNK_SWEEP_INTERVAL_MS, firstAfterMs = 5_000): void {
    this.first = setTimeout(() => void this.sweepNow(), firstAfterMs);
    this.interval = setInterval(() => void this.sweepNow(), intervalMs);
    this.first.unref();
    this.interval.unref();
  }

  /** One sweep now (a sweep already running is awaited instead). */
  sweepNow(): Promise<void> {
    this.running ??= this.store
      .sweepChunks(new Date(Date.now() - this.graceMs).toISOString())
      .then((n) => this.onSwept(n), this.onError)
      .finally(() => (this.running = null));
    return this.running;
  }

  /** Stops the timers and waits for a sweep in progress (before the store closes). */
  async stop(): Promise<void> {
    if (this.first) clearTimeout(this.first);
    if (this.interval) clearInterval(this.interval);
    this.first = this.interval = null;
    await this.running;
  }
}
