import type pg from 'pg';
import { StatelockError } from '../../server/errors.js';
import { CHUNK_RESTAMP_MS, type ChunkCodec, type ChunkRef, type StoredChunk } from '../store.js';

/** Which manifest: a version's or a rejected write's. */
export type ChunkOwner = 'version' | 'rejected';

type Q = pg.PoolClient | pg.Pool;
/** Runs `fn` in one transaction (PostgresStore's helper): COMMIT, or ROLLBACK and rethrow. */
export type InTransaction = <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>;

const REFS = {
  version: { table: 'version_chunk_refs', owner: 'version_id' },
  rejected: { table: 'rejected_chunk_refs', owner: 'rejected_id' },
} as const;
const UNREFERENCED =
  'NOT EXISTS (SELECT 1 FROM version_chunk_refs r WHERE r.chunk = chunks.pk) AND NOT EXISTS (SELECT 1 FROM rejected_chunk_refs r WHERE r.chunk = chunks.pk)';

/** Rows per INSERT of putChunks (5 parameters each; PostgreSQL allows 65,535 per statement). */
const PUT_ROWS = 1_000;
/** Chunks deleted per sweep transaction. */
const SWEEP_BATCH = 500;
/** A rekey batch: at most this many chunks or bytes per transaction. */
const REWRITE_ROWS = 64;
const REWRITE_BYTES = 64 * 1024 * 1024;
/** Attempts of a transaction that lost a deadlock (or, in a rekey, a race for a new id) before giving up. */
const ATTEMPTS = 5;

/**
 * The PostgreSQL side of content-addressed bodies (docs/storage.md): the `chunks` table and the manifests
 * in `version_chunk_refs` / `rejected_chunk_refs`, which name a chunk by its `pk` (a BIGINT identity).
 *
 * Several replicas share the tables, so every step is written for concurrency:
 * - a manifest is written after `FOR KEY SHARE` on the chunk rows it names (in the caller's transaction),
 *   and the sweep locks its candidates `FOR UPDATE SKIP LOCKED` and then deletes them in a second statement
 *   that re-checks the references with a newer snapshot. Between them, a row can never be swept while a
 *   manifest naming it is being committed, nor named once the sweep has taken it (the writer then sees it
 *   gone: CHUNK_GONE, nothing committed);
 * - what protects a chunk stored by putChunks and not named yet (the version row commits later) is only its
 *   stamp: the sweep takes nothing stamped after `olderThan` (now − CHUNK_SWEEP_GRACE_MS).
 */
export class PostgresChunks {
  constructor(
    private readonly pool: pg.Pool,
    private readonly transaction: InTransaction,
  ) {}

  /**
   * One transaction with `synchronous_commit = off`: the chunks become durable with the next synchronous
   * commit (the version naming them), because PostgreSQL flushes its WAL in order. Ids are deduplicated
   * (one INSERT may not touch a row twice) and sorted, so that two replicas storing overlapping chunks lock
   * the rows in the same order and never deadlock.
   */
  async put(chunks: readonly StoredChunk[]): Promise<void> {
    const byId = new Map<string, StoredChunk>();
    for (const c of chunks) if (!byId.has(c.id)) byId.set(c.id, c);
    if (byId.size === 0) return;
    const sorted = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    await retryDeadlocks(() =>
      this.transaction(async (c) => {
        await c.query('SET LOCAL synchronous_commit = off');
        const now = new Date();
        const restampBefore = new Date(now.getTime() - CHUNK_RESTAMP_MS).toISOString();
        for (let at = 0; at < sorted.length; at += PUT_ROWS) {
          const rows = sorted.slice(at, at + PUT_ROWS);
          const params: unknown[] = [now.toISOString(), restampBefore];
          const values = rows.map((r) => {
            params.push(r.id, r.size, r.codec, r.data);
            const p = params.length;
            return `($${p - 3}, $${p - 2}, $${p - 1}, $1, $${p})`;
          });
          await c.query(
            `INSERT INTO chunks (id, size, codec, stored_at, data) VALUES ${values.join(', ')}
             ON CONFLICT (id) DO UPDATE SET stored_at = excluded.stored_at WHERE chunks.stored_at < $2`,
            params,
          );
        }
      }),
    );
  }

  /**
   * The ids already stored. Those whose stamp is older than CHUNK_RESTAMP_MS are restamped (as put would);
   * one the sweep took meanwhile is not returned, so the ingest stores it again.
   */
  async present(ids: readonly string[]): Promise<Set<string>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Set();
    const now = new Date();
    const restampBefore = new Date(now.getTime() - CHUNK_RESTAMP_MS).toISOString();
    const rows = (await this.pool.query('SELECT id, stored_at FROM chunks WHERE id = ANY($1::text[])', [unique])).rows as Array<{ id: string; stored_at: string }>;
    const found = new Set<string>();
    const stale: string[] = [];
    for (const r of rows) {
      if (r.stored_at < restampBefore) stale.push(r.id);
      else found.add(r.id);
    }
    if (stale.length > 0) {
      // greatest(): a stamp another writer moved further meanwhile stays; RETURNING names the rows still there.
      const restamped = await retryDeadlocks(() =>
        this.transaction(async (c) => {
          await c.query('SET LOCAL synchronous_commit = off');
          return (await c.query('UPDATE chunks SET stored_at = greatest(stored_at, $1) WHERE id = ANY($2::text[]) RETURNING id', [now.toISOString(), stale.sort()])).rows as Array<{ id: string }>;
        }),
      );
      for (const r of restamped) found.add(r.id);
    }
    return found;
  }

  /** The chunks in the order asked, duplicates included; one statement, so one snapshot. */
  async get(ids: readonly string[]): Promise<StoredChunk[]> {
    if (ids.length === 0) return [];
    const rows = (await this.pool.query('SELECT id, size, codec, data FROM chunks WHERE id = ANY($1::text[])', [[...new Set(ids)]])).rows as Array<{ id: string; size: number; codec: ChunkCodec; data: Buffer }>;
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => {
      const r = byId.get(id);
      if (!r) throw new StatelockError('CHUNK_MISSING', { id, context: 'asked for by a reader' });
      return { id: r.id, size: r.size, codec: r.codec, data: r.data };
    });
  }

  /**
   * Writes a manifest inside the caller's transaction. The chunk rows are locked FOR KEY SHARE first: a
   * sweep cannot delete them before this transaction ends (it skips locked rows), and a row the sweep (or a
   * rekey re-filing it) holds is waited for and then seen gone. A chunk not stored is CHUNK_GONE, which
   * rolls the caller's transaction back: no committed row ever names a missing chunk.
   */
  async writeRefs(c: pg.PoolClient, owner: ChunkOwner, ownerId: string, refs: readonly ChunkRef[]): Promise<void> {
    if (refs.length === 0) return;
    const ids = [...new Set(refs.map((r) => r.id))].sort();
    const rows = (await c.query('SELECT id, pk, size FROM chunks WHERE id = ANY($1::text[]) ORDER BY id FOR KEY SHARE', [ids])).rows as Array<{ id: string; pk: string; size: number }>;
    const byId = new Map(rows.map((r) => [r.id, r]));
    const pks = refs.map((ref) => {
      const row = byId.get(ref.id);
      if (!row) throw new StatelockError('CHUNK_GONE', { id: ref.id, context: `named by a new ${owner === 'version' ? 'version' : 'rejected write'}` });
      if (row.size !== ref.size) throw new Error(`chunk ${ref.id} holds ${row.size} bytes, the manifest says ${ref.size}`);
      return row.pk;
    });
    const { table, owner: column } = REFS[owner];
    await c.query(`INSERT INTO ${table} (${column}, n, chunk) SELECT $1, t.n - 1, t.chunk FROM unnest($2::bigint[]) WITH ORDINALITY AS t(chunk, n)`, [ownerId, pks]);
  }

  /** A manifest in body order, in one statement. A ref whose chunk is gone is CHUNK_MISSING, never skipped. */
  async manifest(q: Q, owner: ChunkOwner, ownerId: unknown): Promise<ChunkRef[]> {
    const { table, owner: column } = REFS[owner];
    const rows = (await q.query(`SELECT r.chunk, c.id, c.size FROM ${table} r LEFT JOIN chunks c ON c.pk = r.chunk WHERE r.${column} = $1 ORDER BY r.n`, [ownerId])).rows as Array<{ chunk: string; id: string | null; size: number | null }>;
    return rows.map((r) => {
      if (r.id === null || r.size === null) throw new StatelockError('CHUNK_MISSING', { id: `#${r.chunk}`, context: `named by ${owner} ${String(ownerId)}` });
      return { id: r.id, size: r.size };
    });
  }

  /**
   * Deletes unreferenced chunks stamped before `olderThan`, one batch per transaction, in two statements:
   * lock the candidates (skipping rows a writer or another sweep holds), then delete those that a newer
   * snapshot still shows unreferenced and unstamped — a manifest committed between the two is seen.
   */
  async sweep(olderThan: string): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.transaction(async (c) => {
        const candidates = (await c.query(`SELECT pk FROM chunks WHERE stored_at < $1 AND ${UNREFERENCED} LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED`, [olderThan])).rows as Array<{ pk: string }>;
        if (candidates.length === 0) return null;
        const res = await c.query(`DELETE FROM chunks WHERE pk = ANY($1::bigint[]) AND stored_at < $2 AND ${UNREFERENCED}`, [candidates.map((r) => r.pk), olderThan]);
        return res.rowCount ?? 0;
      });
      if (deleted === null) return total;
      total += deleted;
    }
  }

  async stats(): Promise<{ chunks: number; storedBytes: number }> {
    const r = (await this.pool.query('SELECT count(*) AS n, coalesce(sum(octet_length(data)), 0) AS b FROM chunks')).rows[0] as { n: string; b: string };
    return { chunks: Number(r.n), storedBytes: Number(r.b) };
  }

  /**
   * rewriteBodies for chunks, in batches of at most REWRITE_ROWS rows or REWRITE_BYTES, each one transaction
   * that locks its rows FOR UPDATE and so reads them as they now are: a chunk another rekey re-filed meanwhile
   * comes back under its new id (and is usually left alone), one it merged away is gone. A chunk returned
   * under a new id keeps its row (and so its references) under that id; when the new id is already stored,
   * the references move to that row (locked FOR KEY SHARE, so no sweep takes it meanwhile) and the old row
   * goes. A batch that deadlocked, or lost a race with a writer storing the new id, runs again from fresh rows.
   */
  async rewrite(transform: (chunk: StoredChunk) => StoredChunk | null, count: { scanned: number; rewritten: number }): Promise<void> {
    const rewriteBatch = (pks: string[]) =>
      this.transaction(async (c) => {
        const done = { scanned: 0, rewritten: 0 };
        const rows = (await c.query('SELECT pk, id, size, codec, data FROM chunks WHERE pk = ANY($1::bigint[]) ORDER BY pk FOR UPDATE', [pks])).rows as Array<StoredChunk & { pk: string }>;
        for (const { pk, ...row } of rows) {
          done.scanned++;
          const next = transform(row);
          if (!next) continue;
          done.rewritten++;
          if (next.id !== row.id) {
            const existing = (await c.query('SELECT pk FROM chunks WHERE id = $1 FOR KEY SHARE', [next.id])).rows[0] as { pk: string } | undefined;
            if (existing) {
              // Equal ids are equal plaintext: the stored row stands for both; the old one goes.
              await c.query('UPDATE version_chunk_refs SET chunk = $1 WHERE chunk = $2', [existing.pk, pk]);
              await c.query('UPDATE rejected_chunk_refs SET chunk = $1 WHERE chunk = $2', [existing.pk, pk]);
              await c.query('DELETE FROM chunks WHERE pk = $1', [pk]);
              continue;
            }
          }
          // Same row, new name (or new data): the refs name the row, so they follow untouched.
          await c.query('UPDATE chunks SET id = $1, codec = $2, data = $3 WHERE pk = $4', [next.id, next.codec, next.data, pk]);
        }
        return done;
      });
    let after = '0';
    for (;;) {
      const rows = (await this.pool.query('SELECT pk, octet_length(data) AS n FROM chunks WHERE pk > $1 ORDER BY pk LIMIT 256', [after])).rows as Array<{ pk: string; n: number }>;
      if (rows.length === 0) return;
      const batches: string[][] = [[]];
      let bytes = 0;
      for (const { pk, n } of rows) {
        if (batches[batches.length - 1]!.length >= REWRITE_ROWS || (bytes > 0 && bytes + n > REWRITE_BYTES)) batches.push([]), (bytes = 0);
        batches[batches.length - 1]!.push(pk);
        bytes += n;
      }
      for (const batch of batches) {
        const done = await retryDeadlocks(() => rewriteBatch(batch), ['23505']);
        count.scanned += done.scanned;
        count.rewritten += done.rewritten;
      }
      after = rows[rows.length - 1]!.pk;
    }
  }
}

/**
 * Runs a transaction again when PostgreSQL aborted it as a deadlock victim (40P01) or a serialization
 * failure (40001) — or with one of `also`'s SQLSTATEs — up to ATTEMPTS times; anything else is rethrown.
 */
async function retryDeadlocks<T>(fn: () => Promise<T>, also: readonly string[] = []): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? '');
      if (attempt >= ATTEMPTS || !(code === '40P01' || code === '40001' || also.includes(code))) throw err;
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
    }
  }
}
