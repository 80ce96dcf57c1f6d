import type Database from 'better-sqlite3';
import { StatelockError } from '../../server/errors.js';
import { CHUNK_RESTAMP_MS, type ChunkRef, type StoredChunk } from '../store.js';

/** Which manifest: a version's or a rejected write's. */
export type ChunkOwner = 'version' | 'rejected';

/** Ids per `IN (…)` query. */
const IN_BATCH = 128;

/**
 * Which index an id lookup goes through: `chunks_lookup` (id, size, stored_at; migration 7) answers lookups
 * of those columns and the rowid from the index alone; `chunks_by_id` (unique) when the row itself is wanted.
 */
type LookupIndex = 'chunks_lookup' | 'chunks_by_id';

/** Rows per sweep transaction: the write lock is held for one batch at a time. */
const SWEEP_BATCH = 500;

/** About how many refs one catch-up step of `version_refs_by_chunk` copies (whole versions: a step may take more). */
export const REFS_CATCH_UP_STEP = 10_000;

/**
 * The SQLite side of content-addressed bodies (docs/storage.md): the `chunks` table and the manifests in
 * `version_chunk_refs` / `rejected_chunk_refs`, which name a chunk by its rowid. Synchronous, like
 * better-sqlite3; SqliteStore wraps each call in its driver-error translation and its transactions.
 */
export class SqliteChunks {
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    // Exact only once version_refs_by_chunk has caught up, in the same transaction (see catchUpRefs).
    const unreferenced = `NOT EXISTS (SELECT 1 FROM version_refs_by_chunk r WHERE r.chunk = chunks.rowid) AND NOT EXISTS (SELECT 1 FROM rejected_chunk_refs r WHERE r.chunk = chunks.rowid)`;
    const mark = `(SELECT upto FROM key_index_marks WHERE name = 'version_refs_by_chunk')`;
    this.stmt = {
      insert: db.prepare(
        `INSERT INTO chunks (id, size, codec, stored_at, data) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET stored_at = excluded.stored_at WHERE chunks.stored_at < ?`,
      ),
      restamp: db.prepare('UPDATE chunks SET stored_at = ? WHERE id = ?'),
      rowOf: db.prepare('SELECT rowid AS r, size FROM chunks WHERE id = ?'),
      stats: db.prepare('SELECT count(*) AS n, coalesce(sum(length(data)), 0) AS b FROM chunks'),
      sweep: db.prepare(`DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks WHERE stored_at < ? AND ${unreferenced} LIMIT ${SWEEP_BATCH})`),
      insertRef: {
        version: db.prepare('INSERT INTO version_chunk_refs (version_id, n, chunk) VALUES (?, ?, ?)'),
        rejected: db.prepare('INSERT INTO rejected_chunk_refs (rejected_id, n, chunk) VALUES (?, ?, ?)'),
      },
      manifest: {
        version: db.prepare('SELECT c.id, c.size FROM version_chunk_refs r JOIN chunks c ON c.rowid = r.chunk WHERE r.version_id = ? ORDER BY r.n'),
        rejected: db.prepare('SELECT c.id, c.size FROM rejected_chunk_refs r JOIN chunks c ON c.rowid = r.chunk WHERE r.rejected_id = ? ORDER BY r.n'),
      },
      listForRewrite: db.prepare('SELECT rowid AS k, length(data) AS n FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT 256'),
      readForRewrite: db.prepare('SELECT id, size, codec, data FROM chunks WHERE rowid = ?'),
      updateInPlace: db.prepare('UPDATE chunks SET id = ?, codec = ?, data = ? WHERE rowid = ?'),
      // The refs of a chunk, found through version_refs_by_chunk (caught up first): a version's refs by rowid, then the index's entries.
      moveVersionRefs: db.prepare('UPDATE version_chunk_refs SET chunk = ? WHERE (version_id, n) IN (SELECT version_id, n FROM version_refs_by_chunk WHERE chunk = ?)'),
      moveIndexedRefs: db.prepare('UPDATE version_refs_by_chunk SET chunk = ? WHERE chunk = ?'),
      refsStepEnd: db.prepare(`SELECT version_id AS v FROM version_chunk_refs WHERE version_id > ${mark} ORDER BY version_id, n LIMIT 1 OFFSET ?`),
      refsLast: db.prepare(`SELECT max(version_id) AS v FROM version_chunk_refs WHERE version_id > ${mark}`),
      refsCatchUp: db.prepare(
        `INSERT INTO version_refs_by_chunk (chunk, version_id, n) SELECT chunk, version_id, n FROM version_chunk_refs WHERE version_id > ${mark} AND version_id <= ? ORDER BY chunk, version_id, n`,
      ),
      setRefsMark: db.prepare(`UPDATE key_index_marks SET upto = ? WHERE name = 'version_refs_by_chunk'`),
      moveRejectedRefs: db.prepare('UPDATE rejected_chunk_refs SET chunk = ? WHERE chunk = ?'),
      deleteRow: db.prepare('DELETE FROM chunks WHERE rowid = ?'),
    };
  }

  /**
   * Stores chunks in one transaction without waiting for the disk: `synchronous = NORMAL` for this one
   * commit. It becomes durable with the next FULL commit (the version naming it), because the WAL is
   * written and synced in commit order; a crash before that loses only chunks nothing names yet.
   */
  put(chunks: readonly StoredChunk[]): void {
    if (chunks.length === 0) return;
    const now = new Date();
    const stampedAt = now.toISOString();
    const restampBefore = new Date(now.getTime() - CHUNK_RESTAMP_MS).toISOString();
    const run = this.db.transaction(() => {
      for (const c of chunks) this.stmt.insert.run(c.id, c.size, c.codec, stampedAt, c.data, restampBefore);
    });
    this.db.pragma('synchronous = NORMAL');
    try {
      run.immediate();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** The ids already stored; stale stamps among them are moved forward (a row the sweep took meanwhile is absent). */
  present(ids: readonly string[]): Set<string> {
    const now = new Date();
    const restampBefore = new Date(now.getTime() - CHUNK_RESTAMP_MS).toISOString();
    const found = new Set<string>();
    const stale: string[] = [];
    for (const [id, row] of this.rowsByIds<{ stored_at: string }>('stored_at', ids, 'chunks_lookup')) {
      if (row.stored_at < restampBefore) stale.push(id);
      else found.add(id);
    }
    if (stale.length > 0) {
      const stampedAt = now.toISOString();
      this.db
        .transaction(() => {
          for (const id of stale) if (this.stmt.restamp.run(stampedAt, id).changes === 1) found.add(id);
        })
        .immediate();
    }
    return found;
  }

  /** In order, duplicates included. */
  get(ids: readonly string[]): StoredChunk[] {
    const rows = this.rowsByIds<StoredChunk>('size, codec, data', ids, 'chunks_by_id');
    return ids.map((id) => {
      const row = rows.get(id);
      if (!row) throw new StatelockError('CHUNK_MISSING', { id, context: 'asked for by a reader' });
      return row;
    });
  }

  /**
   * Writes a manifest, inside the caller's transaction; a chunk that is not stored (any more: a rekey re-filed it,
   * or the sweep took it, after the ingest found it) is CHUNK_GONE and rolls it all back.
   */
  writeRefs(owner: ChunkOwner, ownerId: number | bigint, refs: readonly ChunkRef[]): void {
    const insert = this.stmt.insertRef[owner];
    const rows = this.rowsByIds<{ r: number; size: number }>('rowid AS r, size', refs.map((ref) => ref.id), 'chunks_lookup');
    refs.forEach((ref, n) => {
      const row = rows.get(ref.id);
      if (!row) throw new StatelockError('CHUNK_GONE', { id: ref.id, context: `named by a new ${owner === 'version' ? 'version' : 'rejected write'}` });
      if (row.size !== ref.size) throw new Error(`chunk ${ref.id} holds ${row.size} bytes, the manifest says ${ref.size}`);
      insert.run(ownerId, n, row.r);
    });
  }

  /**
   * The stored rows among `ids` (each id once), by id, with `columns`: one `IN (…)` query per IN_BATCH ids —
   * profiles of 100 MiB bodies (12,000 chunks) showed one query per id costing about twice as much.
   */
  private rowsByIds<T>(columns: string, ids: readonly string[], index: LookupIndex): Map<string, T & { id: string }> {
    const unique = [...new Set(ids)];
    const out = new Map<string, T & { id: string }>();
    for (let at = 0; at < unique.length; at += IN_BATCH) {
      const part = unique.slice(at, at + IN_BATCH);
      for (const row of this.inQuery(columns, part.length, index).all(...part) as Array<T & { id: string }>) out.set(row.id, row);
    }
    return out;
  }

  private readonly inCache = new Map<string, Database.Statement>();
  private inQuery(columns: string, n: number, index: LookupIndex): Database.Statement {
    const key = `${columns}|${n}|${index}`;
    let stmt = this.inCache.get(key);
    if (!stmt) {
      stmt = this.db.prepare(`SELECT id, ${columns} FROM chunks INDEXED BY ${index} WHERE id IN (${new Array(n).fill('?').join(', ')})`);
      this.inCache.set(key, stmt);
    }
    return stmt;
  }

  manifest(owner: ChunkOwner, ownerId: number): ChunkRef[] {
    return this.stmt.manifest[owner].all(ownerId) as ChunkRef[];
  }

  /**
   * One step of the by-chunk index's catch-up, inside the caller's transaction: the refs of the versions above
   * the mark, about `maxRefs` of them (whole versions), copied into version_refs_by_chunk sorted by chunk — so
   * a page of it is written once per catch-up, not once per version naming a chunk on it. Returns whether
   * every ref is indexed now. A version's id (AUTOINCREMENT, never reused) is handed out in the transaction
   * that writes its refs, under the write lock: the refs above the mark are exactly those not indexed yet.
   */
  catchUpRefs(maxRefs = REFS_CATCH_UP_STEP): boolean {
    const last = (this.stmt.refsLast.get() as { v: number | null }).v;
    if (last === null) return true;
    const stepEnd = (this.stmt.refsStepEnd.get(Math.max(1, maxRefs)) as { v: number } | undefined)?.v;
    const upto = stepEnd ?? last;
    this.stmt.refsCatchUp.run(upto);
    this.stmt.setRefsMark.run(upto);
    return upto === last;
  }

  /** One catch-up step in a transaction of its own; true once nothing is left. */
  catchUpRefsStep(): boolean {
    return this.db.transaction(() => this.catchUpRefs()).immediate();
  }

  /**
   * Deletes unreferenced chunks stamped before `olderThan`, one batch per transaction. Each batch, holding the
   * write lock, first files the refs committed since the last catch-up (the caller has run catchUpRefsStep until
   * done just before: only what came since is left), then decides which chunks nobody names.
   */
  sweep(olderThan: string): number {
    let total = 0;
    const batch = this.db.transaction(() => {
      while (!this.catchUpRefs());
      return this.stmt.sweep.run(olderThan).changes;
    });
    for (;;) {
      const n = batch.immediate();
      total += n;
      if (n < SWEEP_BATCH) return total;
    }
  }

  stats(): { chunks: number; storedBytes: number } {
    const r = this.stmt.stats.get() as { n: number; b: number };
    return { chunks: r.n, storedBytes: r.b };
  }

  /**
   * rewriteBodies for chunks: batches of at most 64 rows or 64 MiB, each one IMMEDIATE transaction that
   * reads the rows it rewrites (a row re-filed or merged meanwhile by another rewrite is seen as it now is).
   */
  rewrite(transform: (chunk: StoredChunk) => StoredChunk | null, count: { scanned: number; rewritten: number }, translate: <T>(fn: () => T) => T): void {
    const rewriteBatch = this.db.transaction((ks: number[]) => {
      for (const k of ks) {
        const row = this.stmt.readForRewrite.get(k) as StoredChunk | undefined;
        if (!row) continue;
        count.scanned++;
        const next = transform(row);
        if (!next) continue;
        count.rewritten++;
        if (next.id === row.id) {
          this.stmt.updateInPlace.run(row.id, next.codec, next.data, k);
          continue;
        }
        const existing = this.stmt.rowOf.get(next.id) as { r: number } | undefined;
        if (existing) {
          // Equal ids are equal plaintext: the stored row stands for both; the old one goes, and its refs move,
          // found through the by-chunk index once it has caught up.
          while (!this.catchUpRefs());
          this.stmt.moveVersionRefs.run(existing.r, k);
          this.stmt.moveIndexedRefs.run(existing.r, k);
          this.stmt.moveRejectedRefs.run(existing.r, k);
          this.stmt.deleteRow.run(k);
        } else {
          // Same rowid, new name: the refs (by rowid) follow without being touched.
          this.stmt.updateInPlace.run(next.id, next.codec, next.data, k);
        }
      }
    });
    const BATCH_ROWS = 64;
    const BATCH_BYTES = 64 * 1024 * 1024;
    // A merge moves refs found through the by-chunk index: file the refs first, a step per transaction.
    while (!translate(() => this.catchUpRefsStep()));
    let after = 0;
    for (;;) {
      const rows = translate(() => this.stmt.listForRewrite.all(after)) as Array<{ k: number; n: number }>;
      if (rows.length === 0) return;
      let batch: number[] = [];
      let bytes = 0;
      for (const { k, n } of rows) {
        if (batch.length > 0 && (batch.length >= BATCH_ROWS || bytes + n > BATCH_BYTES)) {
          const b = batch;
          translate(() => rewriteBatch.immediate(b));
          batch = [];
          bytes = 0;
        }
        batch.push(k);
        bytes += n;
      }
      const b = batch;
      translate(() => rewriteBatch.immediate(b));
      after = rows[rows.length - 1]!.k;
    }
  }
}
