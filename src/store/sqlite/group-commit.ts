import type Database from 'better-sqlite3';
import type { WalSync } from './wal-sync.js';

/**
 * Group commit for the SQLite engine: the updates that arrive in the same turn of the event loop run in
 * ONE `BEGIN IMMEDIATE … COMMIT`, so they share one WAL append and one fsync. Nothing is acknowledged
 * before the WAL holding it is on disk: with a {@link WalSync} the batch commits with `synchronous =
 * NORMAL` and its callers are answered once the WAL sync that follows the COMMIT completed. The sync runs on
 * the thread pool: meanwhile the event loop reads and decides the next requests, whose updates queue and
 * commit together as the next batch as soon as the sync ends (so batches stay as large as when the fsync
 * blocked, without blocking). A lone update with no sync running commits with `synchronous = FULL` instead
 * (SQLite syncs inside the COMMIT): a hop to the thread pool would only add latency. Without a WalSync
 * every batch commits with FULL.
 *
 * - A `work` that throws (a rule's bug, a statement error, a refusal of a body for lack of space) rejects
 *   only its caller, and nothing it wrote is kept. Later updates in the batch see the earlier ones' changes
 *   (two LOCKs on one key: the second sees the first's lock), exactly as if they had committed one after
 *   the other in that order.
 * - How a throwing update is undone: a batch first runs without savepoints (a SAVEPOINT and its RELEASE
 *   per update, and the pages SQLite copies for them, were ~10% of a lock cycle's server CPU at 64
 *   clients). An update that throws before writing anything ({@link JobHandle.unwritten}) leaves nothing to
 *   undo. One that throws after writing rolls the whole transaction back, and the batch's updates run
 *   again, each in its own SAVEPOINT, so that only the thrower's changes are dropped. Updates must
 *   therefore decide the same way when run again (rules are pure; see Store.update).
 * - A COMMIT that fails rejects every caller of the batch — except when the disk is full (SQLITE_FULL),
 *   see {@link GroupCommitOptions.onDiskFull}.
 * - A batch is flushed on `setImmediate`, after the poll phase has handed every request that arrived to
 *   its handler, or at once when it reaches `maxOps` updates; it stops taking updates into one transaction
 *   once they carry `maxBodyBytes` of state bodies, and the rest go into the next turn. FIFO, and a batch
 *   is one synchronous run: no other code (a read, another transactional method) can interleave with an
 *   open batch or see its uncommitted changes.
 */

/** One queued update. `run` executes inside the batch's transaction, in the update's own savepoint. */
interface Job {
  run: () => unknown;
  /** Bytes of state body the update wrote (set by `run` once it knows): decides what a full disk refuses. */
  bodyBytes: number;
  /** See JobHandle.unwritten. */
  unwritten: boolean;
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | null;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** How many more transactions a full disk may cost one batch (each after a remedy: a checkpoint, the reserve). */
const DISK_FULL_RETRIES = 3;

export interface GroupCommitOptions {
  /** The most updates in one transaction. */
  maxOps: number;
  /** Stop adding updates to a transaction once those in it carry this many bytes of state bodies. */
  maxBodyBytes: number;
  /** Driver errors → domain errors (what a caller is rejected with). */
  translate: (err: unknown) => unknown;
  /**
   * The disk is full and a write carrying no state body failed (a lock, an unlock, an audit entry): make
   * room if possible and say whether anything was done — then the batch's updates that carry no body are
   * run again, while those that carry a body are refused. `attempt` counts the calls for one batch (0, 1 …):
   * cheaper remedies first. `inTransaction`: called with the batch's transaction still open (SQLite kept
   * it), where a checkpoint cannot run.
   */
  onDiskFull: (attempt: number, inTransaction: boolean) => boolean;
  /** After a COMMIT that wrote state bodies, with their bytes (as the updates declared them; best effort; see SqliteStore). */
  afterBodies?: (bytes: number) => void;
  /** Syncs the WAL after batches commit with `synchronous = NORMAL` (see wal-sync.ts); absent: FULL commits. */
  wal?: WalSync;
}

/** The handle `run` gets: to declare the bytes of state body its update writes. */
export interface JobHandle {
  bodyBytes: number;
  /**
   * True while the update has written nothing in this run: it is set by the update itself, before its
   * reads, and cleared before its first write. An update that throws while it is true is refused without
   * undoing anything. Updates that never set it are taken to have written (the batch is run again).
   */
  unwritten: boolean;
}

export class GroupCommit {
  private queue: Job[] = [];
  private scheduled = false;
  private running = false;
  /** Waiting for a WAL sync to end before committing the queue. */
  private parked = false;
  private _commits = 0;
  private _updates = 0;
  private _reruns = 0;
  /** Transaction control, prepared once (db.exec would parse the SQL again on every call). */
  private readonly sql: Record<'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollbackTo' | 'syncNormal' | 'syncFull', Database.Statement>;

  constructor(
    private readonly db: Database.Database,
    private readonly opts: GroupCommitOptions,
  ) {
    this.sql = {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      savepoint: db.prepare('SAVEPOINT update_'),
      release: db.prepare('RELEASE update_'),
      rollbackTo: db.prepare('ROLLBACK TO update_'),
      syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
      syncFull: db.prepare('PRAGMA synchronous = FULL'),
    };
  }

  /** COMMITs that returned (each one fsync of the WAL). */
  get commits(): number {
    return this._commits;
  }

  /** Updates those commits carried. */
  get updates(): number {
    return this._updates;
  }

  /** Batches run again, each update in its own savepoint, because one threw after writing. */
  get reruns(): number {
    return this._reruns;
  }

  /** True while a batch's transaction is open (only ever during a synchronous flush). */
  get inBatch(): boolean {
    return this.running;
  }

  /**
   * Queues `run` for the next batch; resolves with what it returned once the COMMIT holding its changes
   * has returned, or rejects with what it threw (translated) or with the failed COMMIT's error.
   */
  submit<T>(run: (job: JobHandle) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job = { run: () => run(job), bodyBytes: 0, unwritten: false, outcome: null, resolve: resolve as (v: unknown) => void, reject };
      this.queue.push(job);
      if (this.queue.length >= this.opts.maxOps) this.flush();
      if (this.queue.length > 0) this.schedule();
    });
  }

  /** Runs everything queued now (before the database is closed). */
  drain(): void {
    while (this.queue.length > 0 && !this.running) this.flush(true);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
      if (this.queue.length > 0 && !this.parked) this.schedule();
    });
  }

  /**
   * One batch: takes jobs from the head of the queue until a bound is hit, commits, settles them once
   * durable. While a WAL sync runs the batch waits for it to end (`force`: not even then — at close).
   */
  private flush(force = false): void {
    if (this.running || this.queue.length === 0) return;
    const wal = this.opts.wal;
    if (wal?.failed) {
      // Nothing more is committed after a failed sync: it could not be acknowledged (see wal-sync.ts).
      const jobs = this.queue.splice(0);
      failAll(jobs, wal.failed);
      return settle(jobs);
    }
    if (wal?.inFlight && !force) return this.park(wal);
    this.running = true;
    const taken: Job[] = [];
    // A lone update and no sync running: SQLite's own FULL commit is the quickest way to disk.
    const async = wal !== undefined && !(this.queue.length === 1 && !wal.inFlight);
    try {
      if (async) this.sql.syncNormal.run();
      this.commitBatch(DISK_FULL_RETRIES, null, taken, !async, false);
    } catch (err) {
      // Unexpected (a SAVEPOINT statement failing …): nothing of the open transaction is kept.
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // the connection is already out of its transaction
      }
      const error = this.opts.translate(err);
      for (const job of taken) if (!job.outcome || job.outcome.ok) job.outcome = { ok: false, error };
    } finally {
      // Every other writer of this connection commits with FULL (its COMMIT syncs the WAL, this batch's frames too).
      if (async) this.sql.syncFull.run();
      this.running = false;
    }
    if (!async) return settle(taken);
    // Even a batch that wrote nothing waits: its answers may rest on earlier batches' changes.
    wal.whenDurable().then(
      () => settle(taken),
      (err: unknown) => {
        failAll(taken, this.opts.translate(err));
        settle(taken);
      },
    );
  }

  /** A sync is running: the queue commits as one batch when it ends. */
  private park(wal: WalSync): void {
    if (this.parked) return;
    this.parked = true;
    void wal.idle().then(() => {
      this.parked = false;
      this.flush();
      if (this.queue.length > 0) this.schedule();
    });
  }

  /**
   * One transaction over `retry` (the jobs of a failed attempt) or over the head of the queue (each job
   * taken is appended to `taken`); sets every job's outcome. `retries`: how many more attempts a full
   * disk may cost. `fullCommit`: the COMMIT runs with synchronous=FULL (it syncs the WAL itself); otherwise
   * with NORMAL, made durable by the WalSync. `guarded`: each job in its own SAVEPOINT; without, a job that
   * throws after writing rolls the transaction back and the batch runs again, guarded.
   */
  private commitBatch(retries: number, retry: Job[] | null, taken: Job[], fullCommit: boolean, guarded: boolean): void {
    if (retry && !guarded) throw new Error('group commit: a retry runs guarded');
    const { db, sql } = this;
    const take = (): Job => {
      if (retry) return retry.shift()!;
      const job = this.queue.shift()!;
      taken.push(job);
      return job;
    };
    const fail = (list: Job[], error: unknown) => {
      for (const j of list) j.outcome = { ok: false, error };
    };
    try {
      sql.begin.run();
    } catch (err) {
      // Busy past busy_timeout, an I/O error: nothing ran; these jobs fail.
      const list = retry ? retry.splice(0) : this.queue.splice(0, this.opts.maxOps);
      if (!retry) taken.push(...list);
      fail(list, this.opts.translate(err));
      return;
    }
    const batch: Job[] = [];
    let lost: unknown = null; // why this transaction's changes are gone, once they are
    let bytes = 0;
    // A retry runs all its jobs (there are at most maxOps); a fresh batch stops at the bounds.
    const more = () => (retry ? retry.length > 0 : this.queue.length > 0 && batch.length < this.opts.maxOps && bytes < this.opts.maxBodyBytes);
    while (more()) {
      const job = take();
      batch.push(job);
      job.bodyBytes = 0;
      job.unwritten = false;
      job.outcome = null;
      if (guarded) sql.savepoint.run();
      try {
        const value = job.run();
        if (guarded) sql.release.run();
        job.outcome = { ok: true, value };
        bytes += job.bodyBytes;
      } catch (err) {
        if (!guarded) {
          if (job.unwritten && db.inTransaction) {
            job.outcome = { ok: false, error: this.opts.translate(err) };
            continue;
          }
          // It may have written part of its changes: undo the transaction, then run the batch again, guarded.
          if (db.inTransaction) sql.rollback.run();
          for (const j of batch) j.outcome = null;
          this._reruns++;
          // An unguarded run takes from the queue (retries are guarded): the batch goes back to the head of the
          // queue, to be taken again with the same bounds, and the updates behind it with it.
          taken.splice(taken.length - batch.length, batch.length);
          this.queue.unshift(...batch);
          return this.commitBatch(retries, null, taken, fullCommit, true);
        }
        if (!db.inTransaction) {
          // SQLite rolled the whole transaction back (it may, on SQLITE_FULL, IOERR, NOMEM): the
          // earlier jobs' changes went with it.
          lost = err ?? new Error('the transaction was rolled back');
          break;
        }
        sql.rollbackTo.run();
        sql.release.run();
        if (isDiskFull(err) && job.bodyBytes === 0 && retries > 0 && this.opts.onDiskFull(DISK_FULL_RETRIES - retries, true)) {
          // A write without a state body hit a full disk and the reserve was released: once more, here.
          retries--;
          job.outcome = null;
          batch.pop();
          if (retry) retry.unshift(job);
          else {
            this.queue.unshift(job);
            taken.pop();
          }
          continue;
        }
        job.outcome = { ok: false, error: this.opts.translate(err) };
      }
    }
    if (lost === null) {
      try {
        sql.commit.run();
        if (fullCommit) this.opts.wal?.committedDurably();
        else this.opts.wal?.committed();
        this._commits++;
        this._updates += batch.length;
        if (bytes > 0) this.opts.afterBodies?.(bytes);
        return;
      } catch (err) {
        if (db.inTransaction) sql.rollback.run();
        lost = err;
      }
    }
    // Nothing of this transaction was stored; a retry's jobs not reached yet share its fate.
    const all = retry ? [...batch, ...retry.splice(0)] : batch;
    if (isDiskFull(lost) && retries > 0) {
      // Refuse the updates that write state bodies; give the others (locks, unlocks, their audit
      // entries) another transaction after making room: a full disk stops state writes, not locking.
      const withBody = all.filter((j) => j.bodyBytes > 0);
      const rest = all.filter((j) => j.bodyBytes === 0);
      fail(withBody, this.opts.translate(lost));
      const freed = this.opts.onDiskFull(DISK_FULL_RETRIES - retries, false);
      if (rest.length > 0 && (freed || withBody.length > 0)) this.commitBatch(retries - 1, rest, taken, fullCommit, true);
      else fail(rest, this.opts.translate(lost));
      return;
    }
    fail(all, this.opts.translate(lost));
  }
}

/** Answers the callers: after the COMMIT returned (and, with a WalSync, after the WAL sync); continuations run as microtasks. */
function settle(taken: Job[]): void {
  for (const job of taken) {
    if (job.outcome?.ok) job.resolve(job.outcome.value);
    else job.reject(job.outcome ? job.outcome.error : new Error('group commit: an update was left unsettled'));
  }
}

/** The WAL sync failed: none of these changes may be acknowledged. */
function failAll(taken: Job[], error: unknown): void {
  for (const job of taken) job.outcome = { ok: false, error };
}

/** SQLite's "database or disk is full" (SQLITE_FULL and its extended codes), as the driver reports it. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_FULL');
}
