import type Database from 'better-sqlite3';
import type { AuditQuery } from '../store.js';
import type { Row } from '../rows.js';

/**
 * The by-key indexes of the two logs that every LOCK and UNLOCK appends to — the audit trail (`audit`) and the
 * released lock IDs (`released_locks`, for fencing) — kept up to date in batches instead of row by row.
 *
 * Why: both logs are appended in id order, so their rows land on the last page of their table, one page shared by
 * every key. An index by key is the opposite: each key's entries sit together, so a commit that carries the
 * updates of N different keys (64 clients on 64 keys) wrote N pages of each by-key index to the WAL — about 3.5 of
 * the ~4.5 pages a lock cycle wrote, each one a WAL frame (two `pwrite`s, a checksum, bytes for the fsync). Here
 * the rows are appended alone, and a catch-up copies the new rows' (key, id) pairs into the by-key tables every
 * {@link CATCH_UP_ROWS} rows or {@link CATCH_UP_MS} ms, sorted by key: a key's page is written once for all of
 * its new entries.
 *
 * Reads stay exact: `key_index_marks` holds, per log, the largest id the by-key table covers; rows above it (the
 * tail, at most a few thousand) are read from the log itself by id range. The catch-up runs as one update of the
 * group commit, so the by-key rows and their mark commit together; a crash or a failed catch-up only leaves a
 * longer tail, which the next catch-up (at the latest when the store opens) indexes.
 */

/** Index the tail once it holds this many rows (bounds what a by-key read scans beyond the index). */
export const CATCH_UP_ROWS = 2048;
/** …or this long after a row was appended to it. */
export const CATCH_UP_MS = 1000;

type Log = 'audit' | 'released_locks';

/** The audit query's `since` and `action` filters as SQL conditions on the audit table (`alias`: e.g. `a.`). */
export function auditFilters(query: Pick<AuditQuery, 'since' | 'action'>, alias = ''): { conditions: string[]; params: unknown[] } {
  const conditions: string[] = [];
  const params: unknown[] = [];
  if (query.since !== undefined) conditions.push(`${alias}at >= ?`), params.push(query.since);
  if (query.action !== undefined) conditions.push(`${alias}action = ?`), params.push(query.action);
  return { conditions, params };
}

/** When the catch-up runs: once `rows` rows wait, or `ms` after the first of them. */
export interface CatchUpWhen {
  rows: number;
  ms: number;
}

export class DeferredKeyIndexes {
  private pending = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private closed = false;
  private readonly stmt;

  /** `submit`: runs `work` as one update of the group commit (inside its transaction). */
  constructor(
    private readonly db: Database.Database,
    private readonly submit: (work: () => void) => Promise<unknown>,
    private readonly when: CatchUpWhen = { rows: CATCH_UP_ROWS, ms: CATCH_UP_MS },
  ) {
    const mark = (log: Log) => `(SELECT upto FROM key_index_marks WHERE name = '${log}')`;
    this.stmt = {
      indexAudit: db.prepare(`INSERT INTO audit_key_index (key, id) SELECT key, id FROM audit WHERE id > ${mark('audit')} ORDER BY key, id`),
      // Only when the log grew: a catch-up with nothing to index writes nothing (an opening, a CLI command).
      markAudit: db.prepare(`UPDATE key_index_marks SET upto = (SELECT coalesce(max(id), 0) FROM audit) WHERE name = 'audit' AND upto < (SELECT coalesce(max(id), 0) FROM audit)`),
      indexReleased: db.prepare(
        `INSERT INTO released_key_index (key, id, lock_id) SELECT key, id, lock_id FROM released_locks WHERE id > ${mark('released_locks')} ORDER BY key, id`,
      ),
      markReleased: db.prepare(
        `UPDATE key_index_marks SET upto = (SELECT coalesce(max(id), 0) FROM released_locks) WHERE name = 'released_locks' AND upto < (SELECT coalesce(max(id), 0) FROM released_locks)`,
      ),
      recordReleased: db.prepare('INSERT INTO released_locks (key, lock_id, released_at) VALUES (?, ?, ?)'),
      isReleased: db.prepare(
        `SELECT EXISTS (SELECT 1 FROM released_key_index WHERE key = @key AND lock_id = @lockId)
             OR EXISTS (SELECT 1 FROM released_locks WHERE id > ${mark('released_locks')} AND key = @key AND lock_id = @lockId) AS released`,
      ),
      auditMark: db.prepare(`SELECT upto FROM key_index_marks WHERE name = 'audit'`),
    };
  }

  /** Indexes both tails now: inside a transaction (a group-commit update, or the store's opening). */
  catchUp(): void {
    this.stmt.indexAudit.run();
    this.stmt.markAudit.run();
    this.stmt.indexReleased.run();
    this.stmt.markReleased.run();
  }

  /** `n` rows were appended to a log (inside an update): schedules the catch-up. */
  appended(n: number): void {
    if (this.closed || n === 0) return;
    this.pending += n;
    if (this.running) return;
    if (this.pending >= this.when.rows) this.arm(0);
    else if (!this.timer) this.arm(this.when.ms);
  }

  /** A lock ID was released from `key` (its holder's unlock, a force-unlock, a takeover…): fencing must know it. */
  recordReleased(key: string, lockId: string, at: string): void {
    this.stmt.recordReleased.run(key, lockId, at);
    this.appended(1);
  }

  /**
   * Was `lockId` ever released from `key`? Reads that key's released IDs (index-only) and the tail: asked only for a
   * write whose lock ID is not the held lock's.
   */
  isReleased(key: string, lockId: string): boolean {
    return (this.stmt.isReleased.get({ key, lockId }) as { released: number }).released === 1;
  }

  /** One page of a key's audit entries (`limit + 1` rows, to tell whether there is a next page): the index, then the tail. */
  auditOfKey(query: AuditQuery & { key: string }): Row[] {
    const mark = (this.stmt.auditMark.get() as { upto: number }).upto;
    const { conditions: filters, params: filterParams } = auditFilters(query, 'a.');
    const more = filters.map((f) => ` AND ${f}`).join('');
    const want = query.limit + 1;
    const desc = query.newestFirst ? ' DESC' : '';
    // Indexed part: ids up to the mark; the tail: ids above it (an id range of the log itself).
    const indexed = (lower: number, upper: number, n: number) =>
      this.db
        .prepare(`SELECT a.* FROM audit_key_index k JOIN audit a ON a.id = k.id WHERE k.key = ? AND k.id > ? AND k.id < ?${more} ORDER BY k.id${desc} LIMIT ?`)
        .all(query.key, lower, upper, ...filterParams, n) as Row[];
    const tail = (lower: number, upper: number, n: number) =>
      this.db
        .prepare(`SELECT a.* FROM audit a WHERE a.id > ? AND a.id < ? AND a.key = ?${more} ORDER BY a.id${desc} LIMIT ?`)
        .all(lower, upper, query.key, ...filterParams, n) as Row[];
    if (query.newestFirst) {
      const before = query.before ?? Number.MAX_SAFE_INTEGER;
      const newest = tail(mark, before, want);
      return newest.length >= want ? newest : [...newest, ...indexed(0, Math.min(before, mark + 1), want - newest.length)];
    }
    const after = query.after ?? 0;
    const oldest = indexed(after, mark + 1, want);
    return oldest.length >= want ? oldest : [...oldest, ...tail(Math.max(after, mark), Number.MAX_SAFE_INTEGER, want - oldest.length)];
  }

  /** No catch-up is scheduled after this (the tail stays correct; the next opening indexes it). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), ms);
    this.timer.unref();
  }

  private run(): void {
    this.timer = null;
    if (this.closed || this.running) return;
    this.running = true;
    this.pending = 0;
    this.submit(() => this.catchUp())
      .catch(() => undefined) // the rows stay in the tail, where reads find them; the next catch-up retries
      .finally(() => {
        this.running = false;
        if (this.pending > 0) this.rearm();
      });
  }

  private rearm(): void {
    if (this.closed || this.timer) return;
    this.arm(this.pending >= this.when.rows ? 0 : this.when.ms);
  }
}
