import { closeSync, fdatasync, fstatSync, openSync } from 'node:fs';

/**
 * Makes group-committed SQLite transactions durable without blocking the event loop.
 *
 * A batch of updates (group-commit.ts) commits with `synchronous = NORMAL`: SQLite appends the batch's frames
 * to the WAL and returns without syncing. Then this class `fdatasync`s the WAL file — on the libuv thread
 * pool, so the event loop goes on reading and deciding the next requests meanwhile — and only once the sync
 * covering a batch has completed are that batch's callers answered. One sync covers every commit before it;
 * the updates arriving while it runs queue, and commit as one batch when it ends ({@link idle}). Every
 * acknowledged change has been synced to disk, as with `synchronous = FULL` (where SQLite syncs the WAL inside
 * the COMMIT); a crash before the sync loses only changes nobody was told about. WAL frames carry cumulative checksums, so a crash mid-way can never surface a
 * later commit without the earlier ones (SQLite's documented guarantee for NORMAL in WAL mode).
 *
 * Reads wait too ({@link settled}): a reader must not be shown a change that a crash could still take back
 * (a lock nobody was granted yet, a state version not yet acknowledged to its writer).
 *
 * The sync goes through a descriptor of our own on the WAL file: fsync works on the file (inode), not on
 * the descriptor. SQLite deletes the WAL only when its last connection closes, which the server's own
 * connection prevents; should the file ever be replaced anyway, the link count tells, and it is reopened.
 *
 * After a failed sync nothing is known about what reached the disk (Linux may drop the dirty pages and
 * report the error once): the failure is final — every waiting and later caller is refused, and the
 * server has to be restarted, so that SQLite recovers from what is really on disk.
 */
export interface WalSyncIo {
  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void;
}

const REAL_IO: WalSyncIo = { fdatasync };
const RESOLVED = Promise.resolve();

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class WalSync {
  private fd: number | null = null;
  private committedSeq = 0;
  private durableSeq = 0;
  private running = false;
  private waiters: Waiter[] = [];
  private idlers: (() => void)[] = [];
  private failure: unknown = null;
  private _syncs = 0;

  /** `translate`: what callers are refused with once a sync failed (the store's domain error). */
  constructor(
    private readonly walPath: string,
    private readonly io: WalSyncIo = REAL_IO,
    private readonly translate: (err: unknown) => unknown = (e) => e,
  ) {}

  /** Why syncing failed for good, or null. */
  get failed(): unknown {
    return this.failure;
  }

  /** Completed syncs of the WAL so far (each on the thread pool). */
  get syncs(): number {
    return this._syncs;
  }

  /** A sync is running on the thread pool. */
  get inFlight(): boolean {
    return this.running;
  }

  /** Records a COMMIT that returned without syncing; returns its sequence number. */
  committed(): number {
    return ++this.committedSeq;
  }

  /** Resolves once every commit up to `seq` (default: all so far) is on disk; rejects once a sync failed. */
  whenDurable(seq: number = this.committedSeq): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (seq <= this.durableSeq) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.start();
    });
  }

  /** For a read: resolves once what it may see is durable (at once when nothing is pending). */
  settled(): Promise<void> {
    return this.whenDurable(this.committedSeq);
  }

  /** Records a COMMIT made with `synchronous = FULL`: it synced the WAL, so every commit before it is durable too. */
  committedDurably(): void {
    this.reached(++this.committedSeq);
  }

  /** Resolves when no sync is running (at once when none is). */
  idle(): Promise<void> {
    if (!this.running) return RESOLVED;
    return new Promise<void>((resolve) => this.idlers.push(resolve));
  }

  /** Waits for what is pending, then lets go of the descriptor. */
  async close(): Promise<void> {
    try {
      await this.settled();
    } finally {
      if (this.fd !== null) closeSync(this.fd);
      this.fd = null;
    }
  }

  private start(): void {
    if (this.running || this.failure) return;
    const target = this.committedSeq;
    let fd: number;
    try {
      fd = this.walFd();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.running = true;
    this.io.fdatasync(fd, (err) => {
      this.running = false;
      if (err) this.fail(err);
      else {
        this._syncs++;
        this.reached(target);
      }
      const idlers = this.idlers;
      this.idlers = [];
      for (const f of idlers) f();
      if (this.waiters.length > 0) this.start();
    });
  }

  private reached(seq: number): void {
    if (seq > this.durableSeq) this.durableSeq = seq;
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.seq <= this.durableSeq) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private fail(err: unknown): void {
    const e = err as NodeJS.ErrnoException;
    // SQLITE_IOERR_FSYNC is what SQLite reports for its own failed sync: the store's error mapping makes it a 503.
    const raw = Object.assign(new Error(`syncing the WAL failed (${e?.code ?? e?.message ?? String(err)}); the server must be restarted`), {
      code: 'SQLITE_IOERR_FSYNC',
      cause: err,
    });
    this.failure = this.translate(raw) ?? raw;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(this.failure);
  }

  private walFd(): number {
    if (this.fd !== null && fstatSync(this.fd).nlink > 0) return this.fd;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.fd = openSync(this.walPath, 'r');
    return this.fd;
  }
}
