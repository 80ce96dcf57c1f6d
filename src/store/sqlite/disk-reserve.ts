import { randomFillSync } from 'node:crypto';
import { rmSync, statSync, statfsSync, unlinkSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StatelockError } from '../../server/errors.js';

/**
 * Keeps locking alive on a full disk. A state write is large and can wait for an operator; a lock, an
 * unlock or a force-unlock is a few pages of SQLite, and refusing it strands every pipeline. So the SQLite
 * engine keeps a **reserve** of disk space for those small writes, in two ways:
 *
 * 1. **A ballast file**, `statelock.reserve` in the data directory: `bytes` of random data (random, so that
 *    a compressing or deduplicating file system cannot make it smaller than it says). When SQLite reports the
 *    disk full (SQLITE_FULL) on a write that carries no state body, the engine deletes the file — the disk
 *    then has that much room for lock traffic, its audit entries and the checkpoints that let the WAL be
 *    reused — and runs the write again.
 * 2. **A check before each state body is written** ({@link assertRoomFor}): the write is refused with
 *    507 STORE_FULL unless the file system (`statfs`, the space available to an unprivileged user) has room
 *    for the body twice — once in the WAL, once in the database file when the WAL is checkpointed — plus
 *    {@link SLACK_BYTES} for the pages around it, and, while the ballast is missing, the reserve on top.
 *    So state writes stop before they eat into the room kept for locks, and they stay stopped until the
 *    reserve is whole again.
 *
 * The ballast is created at start-up and re-created once the file system has room for it twice over (so
 * that re-creating it does not fill the disk again at once), in the background: checked before every state
 * write and every few seconds while it is missing. Nothing needs a restart.
 */

/** Room kept beyond a body's own bytes: index and table pages, WAL frame headers, the audit row. */
export const SLACK_BYTES = 1024 * 1024;
/** The largest and the smallest reserve chosen by default. */
export const AUTO_RESERVE_MAX_BYTES = 64 * 1024 * 1024;
export const AUTO_RESERVE_MIN_BYTES = 4 * 1024 * 1024;

/**
 * The default reserve: twice the database's size at start-up, at least 4 MiB, at most 64 MiB and at most
 * 1/8 of the file system. Lock traffic needs little room as long as SQLite can checkpoint its WAL (and so
 * reuse it): a few pages per LOCK for the audit trail's growth, plus whatever the WAL still held when the
 * disk filled — which grows with the data. At least 4 MiB: SQLite lets the WAL grow to its auto-checkpoint
 * threshold (1,000 pages, about 4 MiB) before it starts over, and lock traffic on a full disk may need all of it
 * (a 1 MiB reserve was measured too small once bodies are chunked: the disk-full chaos test failed).
 */
export function autoReserveBytes(fileSystemBytes: number, dataBytes: number): number {
  return Math.min(AUTO_RESERVE_MAX_BYTES, Math.floor(fileSystemBytes / 8), Math.max(AUTO_RESERVE_MIN_BYTES, 2 * dataBytes));
}

/** The SQLite files' size in `dir` (the database and its WAL). */
function databaseBytes(dir: string): number {
  let n = 0;
  for (const f of ['statelock.db', 'statelock.db-wal']) {
    try {
      n += statSync(join(dir, f)).size;
    } catch {
      // not there (yet)
    }
  }
  return n;
}
/** Re-creation is attempted at most this often while the ballast is missing (plus before each state write). */
const REPLENISH_EVERY_MS = 5_000;
const BALLAST_FILE = 'statelock.reserve';

export interface DiskSpace {
  /** Bytes an unprivileged process may still write on the file system. */
  available: number;
  /** The file system's size. */
  total: number;
}

export interface DiskReserveOptions {
  /**
   * Size of the reserve: 'auto' is {@link autoReserveBytes}; 0 or absent keeps no ballast (a command-line
   * tool opening the database must not touch the server's), but state writes are still checked against
   * the free space.
   */
  bytes?: number | 'auto';
  /** Told when the reserve is released or re-created (the server logs it). */
  onEvent?: (event: 'released' | 'restored' | 'unavailable', fields: Record<string, unknown>) => void;
  /** The file system's space (tests may replace it). */
  space?: (dir: string) => DiskSpace;
}

export function statfsSpace(dir: string): DiskSpace {
  const s = statfsSync(dir);
  return { available: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

export class DiskReserve {
  readonly path: string;
  /** The reserve's size. */
  readonly bytes: number;
  private present = false;
  private releasedCount = 0;
  private lastReplenishAttempt = 0;
  private creating: Promise<boolean> | null = null;
  private readonly timer: NodeJS.Timeout;
  private readonly space: (dir: string) => DiskSpace;

  constructor(
    private readonly dir: string,
    private readonly opts: DiskReserveOptions = {},
  ) {
    this.path = join(dir, BALLAST_FILE);
    this.space = opts.space ?? statfsSpace;
    this.bytes = opts.bytes === 'auto' ? autoReserveBytes(this.space(dir).total, databaseBytes(dir)) : Math.max(0, opts.bytes ?? 0);
    if (this.bytes > 0) {
      rmSync(`${this.path}.tmp`, { force: true }); // a creation cut short by a crash
      try {
        this.present = statSync(this.path).size === this.bytes;
      } catch {
        this.present = false;
      }
      if (!this.present) {
        rmSync(this.path, { force: true }); // another size: from another configuration
        void this.replenish();
      }
    }
    this.timer = setInterval(() => {
      if (!this.present) void this.replenish();
    }, REPLENISH_EVERY_MS);
    this.timer.unref();
  }

  /** Whether the ballast file is in place (the reserve is whole). */
  get whole(): boolean {
    return this.present;
  }

  /** How many times the reserve was released for lock traffic since start. */
  get released(): number {
    return this.releasedCount;
  }

  /**
   * Call before writing `bytes` of state body (a version, a fenced write, or chunks of them): throws
   * 507 STORE_FULL unless the disk has room for it while keeping the reserve.
   * @throws StatelockError STORE_FULL
   */
  assertRoomFor(bytes: number): void {
    if (!this.present) void this.replenish();
    const { available } = this.space(this.dir);
    const needed = 2 * bytes + SLACK_BYTES + (this.present ? 0 : this.bytes);
    if (available < needed) {
      const reserve = this.present ? '' : ` and the ${mib(this.bytes)} reserve kept for locks is in use`;
      throw new StatelockError('STORE_FULL', { reason: `${mib(available)} available; writing ${mib(bytes)} of state needs ${mib(needed)}${reserve}` });
    }
  }

  /**
   * SQLite found the disk full while writing no state body: free the reserve's space for it. Returns
   * whether space was freed (false when the reserve is already released: then nothing can be done).
   */
  release(): boolean {
    if (!this.present) return false;
    try {
      unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.present = false;
    this.releasedCount++;
    this.opts.onEvent?.('released', { bytes: this.bytes, path: this.path });
    return true;
  }

  /**
   * Re-creates the ballast in the background (on the libuv thread pool, never blocking requests) when the
   * disk has room for it twice over; resolves with whether the reserve is whole. At most one attempt a
   * second, and one at a time.
   */
  replenish(): Promise<boolean> {
    if (this.present) return Promise.resolve(true);
    if (this.creating) return this.creating;
    const now = Date.now();
    if (now - this.lastReplenishAttempt < 1000 || this.bytes <= 0) return Promise.resolve(false);
    this.lastReplenishAttempt = now;
    const { available } = this.space(this.dir);
    if (available < 2 * this.bytes + SLACK_BYTES) return Promise.resolve(false);
    const first = this.releasedCount === 0;
    this.creating = this.createBallast().then(
      () => {
        this.present = true;
        if (!first) this.opts.onEvent?.('restored', { bytes: this.bytes, path: this.path });
        return true;
      },
      (err: unknown) => {
        this.opts.onEvent?.('unavailable', { bytes: this.bytes, error: (err as Error).message });
        return false;
      },
    );
    void this.creating.finally(() => (this.creating = null));
    return this.creating;
  }

  private async createBallast(): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const file = await open(tmp, 'w');
    try {
      const block = Buffer.allocUnsafe(Math.min(this.bytes, 1024 * 1024));
      for (let written = 0; written < this.bytes; ) {
        const n = Math.min(block.length, this.bytes - written);
        randomFillSync(block, 0, n);
        written += (await file.write(block, 0, n)).bytesWritten;
      }
      await file.sync();
      await file.close();
      await rename(tmp, this.path);
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
