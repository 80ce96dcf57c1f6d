import pg from 'pg';
import type { AuditAction, AuditEntry, ClientContext, NewAuditEntry } from '../../audit/audit-entry.js';
import { StatelockError } from '../../server/errors.js';
import { prefixUpperBound } from '../../state/state-key.js';
import { mapAudit, mapBucket, mapLock, mapLockTable, mapPart, mapPrincipal, mapRejected, mapSession, mapUpload, mapVersion, type Row } from '../rows.js';
import { sha256ChunkId, writesNothing, type AuditQuery, type BodyContent, type BucketRecord, type Changes, type Decision, type KeySnapshot, type LockRecord, type LockTableRecord, type Page, type PartRecord, type PrincipalRecord, type RejectedWrite, type SessionRecord, type StateSummary, type Store, type StoredChunk, type UpdateOptions, type UploadRecord, type VersionMeta } from '../store.js';
import { PostgresChunks } from './postgres-chunks.js';
import { readSnapshot } from './postgres-snapshot.js';
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js';

/**
 * Legacy bodies (versions written before migration 4) are stored whole in `version_chunks` pieces of this
 * size; rekey rewrites them in the same pieces.
 */
const CHUNK_BYTES = 4 * 1024 * 1024;
/** pg_advisory_lock key that serialises migrations when several replicas start at once. */
const MIGRATION_LOCK = 72_620_01;
/** NOTIFY channel: a lock was released or replaced on some replica; waiters on every replica wake. */
const RELEASED_CHANNEL = 'statelock_lock_released';
/**
 * A lock was released or replaced: remember its ID (a late UNLOCK of it is then answered as already done) and
 * wake the waiters of every replica — the NOTIFY is delivered on commit. One statement: a data-modifying WITH
 * runs whether or not the query reads it. $1 key, $2 the released ID, $3 when, $4 the channel.
 */
const RELEASE_CTE = 'r AS (INSERT INTO released_locks (key, lock_id, released_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING)';
const RELEASE_SQL = `WITH ${RELEASE_CTE} SELECT pg_notify($4, $1)`;
/** The same, deleting the lock row in the same statement (an UNLOCK, a force-unlock). */
const CLEAR_SQL = `WITH d AS (DELETE FROM locks WHERE key = $1), ${RELEASE_CTE} SELECT pg_notify($4, $1)`;
const LOCK_SET_SQL = `INSERT INTO locks (key, lock_id, operation, who, version, created, info, path, raw, acquired_at, last_activity_at, client_addr, user_agent, session_id, holds)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
  ON CONFLICT (key) DO UPDATE SET lock_id = excluded.lock_id, operation = excluded.operation, who = excluded.who, version = excluded.version,
    created = excluded.created, info = excluded.info, path = excluded.path, raw = excluded.raw, acquired_at = excluded.acquired_at,
    last_activity_at = excluded.last_activity_at, client_addr = excluded.client_addr, user_agent = excluded.user_agent, session_id = excluded.session_id,
    holds = excluded.holds`;
/** One audit row; `$n` numbered from `first` (its 9 values: auditValues). */
const auditInsert = (first: number) =>
  `INSERT INTO audit (at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail) VALUES (${Array.from({ length: 9 }, (_, i) => `$${first + i}`).join(', ')})`;
/**
 * A LOCK's or an UNLOCK's lock change and its one audit entry in one statement, one round trip less (a
 * data-modifying WITH always runs; both rows land in the same transaction either way).
 */
const AUDIT_SQL = auditInsert(1);
const LOCK_SET_AUDITED_SQL = `WITH a AS (${auditInsert(16)}) ${LOCK_SET_SQL}`;
const CLEAR_AUDITED_SQL = `WITH d AS (DELETE FROM locks WHERE key = $1), ${RELEASE_CTE}, a AS (${auditInsert(5)}) SELECT pg_notify($4, $1)`;

const VERSION_COLUMNS = 'v.id, v.key, v.seq, v.serial, v.lineage, v.md5, v.sha256, v.size, v.encrypted, v.created_at, v.lock_id, v.operation, v.client_addr, v.forced, v.chunked';
const LOCK_SELECT =
  'SELECT l.*, s.id AS s_id, s.key AS s_key, s.ttl_ms AS s_ttl_ms, s.created_at AS s_created_at, s.expires_at AS s_expires_at, s.last_heartbeat_at AS s_last_heartbeat_at, s.ended_at AS s_ended_at, s.end_reason AS s_end_reason, s.client_addr AS s_client_addr, s.user_agent AS s_user_agent, s.holder AS s_holder, s.ci AS s_ci FROM locks l LEFT JOIN sessions s ON s.id = l.session_id';

type Q = pg.PoolClient | pg.Pool;

/**
 * The replicated engine: several statelock processes on one PostgreSQL database. Each
 * {@link Store.update} is one transaction that first takes a transaction-scoped advisory lock on the
 * key (so it works for keys that have no row yet), then reads the snapshot, applies the rule's changes
 * and commits: two replicas can never act on the same snapshot. Lock releases are announced with
 * NOTIFY so that `?wait=` waiters on every replica wake within milliseconds. Bodies are content-addressed
 * chunks shared by every replica (postgres-chunks.ts).
 */
export class PostgresStore implements Store {
  readonly engine = 'postgres';
  private readonly pool: pg.Pool;
  private listener: pg.Client | null = null;
  private readonly releaseListeners: Array<(key: string) => void> = [];
  private closed = false;
  private readonly chunks: PostgresChunks;

  private constructor(private readonly url: string, private readonly onError: (err: Error) => void) {
    this.pool = new pg.Pool({ connectionString: url, max: 16, connectionTimeoutMillis: 5_000 });
    // An idle client's connection dying (a restart of PostgreSQL) must not crash the process.
    this.pool.on('error', (err) => this.onError(err));
    this.chunks = new PostgresChunks(this.pool, (fn) => this.transaction(fn));
  }

  /** Connects, creates or migrates the schema (safe when several replicas start at once), and starts listening. */
  static async open(url: string, onError: (err: Error) => void = () => undefined): Promise<PostgresStore> {
    const store = new PostgresStore(url, onError);
    try {
      await translate(() => store.migrate());
      void store.listen();
      return store;
    } catch (err) {
      await store.pool.end().catch(() => undefined);
      throw err;
    }
  }

  /**
   * A pooled client for a transaction. A checked-out client whose connection dies emits 'error' on
   * itself (the pool's handler covers idle ones only); unhandled, that would crash the server.
   */
  private async checkout(): Promise<pg.PoolClient & { done(broken?: boolean): void }> {
    const c = await this.pool.connect();
    const onError = (err: Error) => this.onError(err);
    c.on('error', onError);
    return Object.assign(c, {
      done: (broken = false) => {
        c.off('error', onError);
        c.release(broken);
      },
    });
  }

  /**
   * Runs `fn` in one transaction on a pooled client: `begin`, then COMMIT, or ROLLBACK on any error (a client
   * whose ROLLBACK fails too is dropped from the pool rather than reused).
   */
  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>, begin: string | ((c: pg.PoolClient) => string) = 'BEGIN'): Promise<T> {
    const c = await this.checkout();
    let broken = false;
    try {
      await c.query(typeof begin === 'string' ? begin : begin(c));
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      broken = await c.query('ROLLBACK').then(
        () => false,
        () => true,
      );
      throw err;
    } finally {
      c.done(broken);
    }
  }

  private async migrate(): Promise<void> {
    const c = await this.checkout();
    try {
      await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await c.query('CREATE TABLE IF NOT EXISTS statelock_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
      const applied = Number((await c.query('SELECT coalesce(max(version), 0) AS v FROM statelock_migrations')).rows[0].v);
      for (let i = applied; i < POSTGRES_MIGRATIONS.length; i++) {
        await c.query('BEGIN');
        try {
          await c.query(POSTGRES_MIGRATIONS[i]!);
          await c.query('INSERT INTO statelock_migrations (version, applied_at) VALUES ($1, $2)', [i + 1, new Date().toISOString()]);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      c.done();
    }
  }

  /**
   * A dedicated connection for LISTEN; reconnects by itself after an outage. `listener` is the current
   * client from the moment it is made, connecting or not: close() may come first (a short-lived CLI such as
   * rekey, a server stopped at once) and must end it too, or its socket keeps the process alive.
   */
  private async listen(): Promise<void> {
    while (!this.closed) {
      const client = new pg.Client({ connectionString: this.url });
      const lost = new Promise<void>((resolve) => {
        client.on('error', () => resolve());
        client.on('end', () => resolve());
      });
      this.listener = client;
      try {
        await client.connect();
        client.on('notification', (msg) => {
          if (msg.payload) for (const l of this.releaseListeners) l(msg.payload);
        });
        await client.query(`LISTEN ${RELEASED_CHANNEL}`);
        if (!this.closed) await lost;
      } catch {
        // PostgreSQL unreachable, or closed while connecting: retry below unless closed.
      }
      if (this.listener === client) this.listener = null;
      await client.end().catch(() => undefined);
      if (!this.closed) await new Promise((r) => setTimeout(r, 250));
    }
  }

  onLockReleased(listener: (key: string) => void): void {
    this.releaseListeners.push(listener);
  }

  async update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, opts: UpdateOptions<T> = {}): Promise<T> {
    const probe = opts.probeLockId ?? null;
    const early = opts.readFirst ? await translate(() => this.decideUnlocked(key, decide, probe)) : null;
    const decision = early ?? (await translate(() => this.decideLocked(key, client, decide, probe)));
    if ('error' in decision) throw decision.error;
    return decision.result;
  }

  /** The update's one transaction: the key's advisory lock, its snapshot, the decision and its changes, COMMIT. */
  private decideLocked<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, probeLockId: string | null): Promise<Decision<T>> {
    return this.transaction(
      async (c) => {
        const snapshot = await readSnapshot(c, key, probeLockId);
        const d = decide(snapshot);
        await this.apply(c, key, client, d.changes, snapshot.lock?.id ?? null);
        return d;
      },
      // BEGIN and the key's advisory lock in one round trip (a simple query may hold several statements; it
      // takes no parameters, hence the escaped literal).
      (c) => `BEGIN; SELECT pg_advisory_xact_lock(hashtextextended(${c.escapeLiteral(key)}, 0))`,
    );
  }

  /**
   * UpdateOptions.readFirst: the decision on a snapshot read without the key's lock (one statement), when it
   * writes nothing; null, to be decided again under the lock, when it does.
   */
  private async decideUnlocked<T>(key: string, decide: (snapshot: KeySnapshot) => Decision<T>, probeLockId: string | null): Promise<Decision<T> | null> {
    const c = await this.checkout();
    try {
      const d = decide(await readSnapshot(c, key, probeLockId));
      return writesNothing(d.changes) ? d : null;
    } finally {
      c.done();
    }
  }

  /** `held`: the lock ID the snapshot read under this transaction's advisory lock (every lock write takes it). */
  private async apply(c: pg.PoolClient, key: string, client: ClientContext, changes: Changes, held: string | null): Promise<void> {
    const now = new Date().toISOString();
    // What is left to insert; a lock change takes a lone entry into its own statement.
    const audit = [...(changes.audit ?? [])];
    const v = changes.newVersion;
    if (v) {
      const inserted = await c.query(
        `INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, chunked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, true) RETURNING id`,
        [key, v.seq, v.serial, v.lineage, v.md5, v.sha256, v.size, v.encrypted, v.createdAt, v.lockId, v.operation, v.clientAddr, v.forced],
      );
      const id = inserted.rows[0].id as string;
      await this.chunks.writeRefs(c, 'version', id, v.chunks);
      await c.query(
        `INSERT INTO states (key, current_version_id, version_count, deleted_at, updated_at) VALUES ($1, $2, $3, NULL, $4)
         ON CONFLICT (key) DO UPDATE SET current_version_id = excluded.current_version_id, version_count = excluded.version_count, deleted_at = NULL, updated_at = excluded.updated_at`,
        [key, id, v.seq, now],
      );
    }
    if (changes.deleteState) await c.query('UPDATE states SET current_version_id = NULL, deleted_at = $1, updated_at = $1 WHERE key = $2', [now, key]);
    const lock = changes.lock;
    if (lock && 'set' in lock) {
      const l: LockRecord = lock.set;
      if (held !== null && held !== l.id) await c.query({ name: 'statelock_lock_replaced_v1', text: RELEASE_SQL, values: [key, held, now, RELEASED_CHANNEL] });
      const values = [key, l.id, l.operation, l.who, l.version, l.created, l.info, l.path, l.raw, l.acquiredAt, l.lastActivityAt, l.clientAddr, l.userAgent, l.sessionId, l.holds.join(',')];
      if (audit.length === 1) await c.query({ name: 'statelock_lock_set_audited_v1', text: LOCK_SET_AUDITED_SQL, values: [...values, ...auditValues(audit.shift()!, now, client)] });
      else await c.query({ name: 'statelock_lock_set_v1', text: LOCK_SET_SQL, values });
    }
    // No lock row to delete when the snapshot (read under this transaction's advisory lock) found none.
    if (lock && 'clear' in lock && held !== null) {
      const values = [key, held, now, RELEASED_CHANNEL];
      if (audit.length === 1) await c.query({ name: 'statelock_lock_cleared_audited_v1', text: CLEAR_AUDITED_SQL, values: [...values, ...auditValues(audit.shift()!, now, client)] });
      else await c.query({ name: 'statelock_lock_cleared_v1', text: CLEAR_SQL, values });
    }
    if (lock && 'touch' in lock) {
      if (lock.holds) await c.query({ name: 'statelock_lock_touch_holds_v1', text: 'UPDATE locks SET last_activity_at = $1, holds = $2 WHERE key = $3', values: [lock.touch, lock.holds.join(','), key] });
      else await c.query({ name: 'statelock_lock_touch_v1', text: 'UPDATE locks SET last_activity_at = $1 WHERE key = $2', values: [lock.touch, key] });
    }
    const r = changes.rejectedWrite;
    if (r) {
      const inserted = await c.query(
        `INSERT INTO rejected_writes (key, lock_id, at, serial, lineage, size, sha256, reason, client_addr, body, chunked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ''::bytea, true) RETURNING id`,
        [key, r.lockId, now, r.serial, r.lineage, r.size, r.sha256, r.reason, r.clientAddr],
      );
      await this.chunks.writeRefs(c, 'rejected', inserted.rows[0].id as string, r.chunks);
    }
    if (changes.endSession) await c.query('UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL', [now, changes.endSession.reason, changes.endSession.id]);
    for (const e of audit) await c.query({ name: 'statelock_audit_v1', text: AUDIT_SQL, values: auditValues(e, now, client) });
  }

  /**
   * Reads a legacy body (a version written before migration 4) piece by piece, one piece at a time in flight. A plaintext body goes into one buffer
   * of its known size; a sealed one (encryption at rest) is longer than the plaintext size the metadata
   * records, and the decorator that opens it checks its integrity.
   *
   * A body that fits in chunk 0 is read by one statement. A longer one is read inside one REPEATABLE READ
   * snapshot: `rewriteBodies` (statelock rekey, beside a running server) replaces a version's chunks, and
   * chunk reads from two sides of its commit would splice two different bodies together.
   */
  private async body(versionId: unknown, size: number): Promise<Buffer> {
    const chunk = (q: Q, n: number) => q.query('SELECT data FROM version_chunks WHERE version_id = $1 AND n = $2', [versionId, n]).then((r) => r.rows[0] as { data: Buffer } | undefined);
    const first = await chunk(this.pool, 0);
    const chunks: Buffer[] = [];
    if (!first || first.data.length < CHUNK_BYTES) {
      if (first) chunks.push(first.data);
    } else {
      await this.transaction(async (c) => {
        for (let n = 0; ; n++) {
          const row = await chunk(c, n);
          if (!row) break;
          chunks.push(row.data);
        }
      }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    }
    const total = chunks.reduce((sum, b) => sum + b.length, 0);
    const sealed = chunks.length > 0 && chunks[0]!.subarray(0, 4).toString('latin1') === 'SLE1';
    if (!sealed && total !== size) throw new Error(`version ${String(versionId)}: stored chunks hold ${total} bytes, not ${size}`);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  }

  /** A version's content: its manifest, or the whole body of a legacy row. */
  private async withContent(row: Row | undefined): Promise<{ meta: VersionMeta; content: BodyContent } | null> {
    if (!row) return null;
    const meta = mapVersion(row)!;
    const content: BodyContent = row.chunked === true ? { kind: 'chunks', chunks: await this.chunks.manifest(this.pool, 'version', row.id) } : { kind: 'whole', body: await this.body(row.id, meta.size) };
    return { meta, content };
  }

  readCurrent(key: string) {
    return translate(async () => this.withContent((await this.pool.query(`SELECT ${VERSION_COLUMNS} FROM states s JOIN versions v ON v.id = s.current_version_id WHERE s.key = $1`, [key])).rows[0]));
  }

  readVersion(key: string, which: { seq: number } | { serial: number }) {
    return translate(async () => {
      const res =
        'seq' in which
          ? await this.pool.query(`SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.key = $1 AND v.seq = $2`, [key, which.seq])
          : await this.pool.query(`SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.key = $1 AND v.serial = $2 ORDER BY v.seq DESC LIMIT 1`, [key, which.serial]);
      return this.withContent(res.rows[0]);
    });
  }

  listVersions(key: string, opts: { after?: number; limit: number }): Promise<Page<VersionMeta>> {
    return translate(async () => {
      const rows = (await this.pool.query(`SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.key = $1 AND v.seq > $2 ORDER BY v.seq LIMIT $3`, [key, opts.after ?? 0, opts.limit + 1])).rows as Row[];
      const items = rows.slice(0, opts.limit).map((r) => mapVersion(r)!);
      return { items, next: rows.length > opts.limit ? String(items[items.length - 1]!.seq) : null };
    });
  }

  listStates(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<StateSummary>> {
    return translate(async () => {
      const { where, params } = keyRange('s.key', opts.prefix, opts.after);
      const rows = (
        await this.pool.query(
          `SELECT ${VERSION_COLUMNS}, s.version_count, (l.key IS NOT NULL) AS locked
           FROM states s JOIN versions v ON v.id = s.current_version_id LEFT JOIN locks l ON l.key = s.key
           WHERE ${where} ORDER BY s.key LIMIT $${params.length + 1}`,
          [...params, opts.limit + 1],
        )
      ).rows as Row[];
      const items = rows.slice(0, opts.limit).map((r) => ({ key: r.key as string, current: mapVersion(r)!, versionCount: Number(r.version_count), locked: r.locked === true }));
      return { items, next: rows.length > opts.limit ? items[items.length - 1]!.key : null };
    });
  }

  getLock(key: string) {
    return translate(async () => mapLock((await this.pool.query(`${LOCK_SELECT} WHERE l.key = $1`, [key])).rows[0]));
  }

  listLocks(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<LockRecord>> {
    return translate(async () => {
      const { where, params } = keyRange('l.key', opts.prefix, opts.after);
      const rows = (await this.pool.query(`${LOCK_SELECT} WHERE ${where} ORDER BY l.key LIMIT $${params.length + 1}`, [...params, opts.limit + 1])).rows as Row[];
      const items = rows.slice(0, opts.limit).map((r) => mapLock(r)!);
      return { items, next: rows.length > opts.limit ? items[items.length - 1]!.key : null };
    });
  }

  countLocks() {
    return translate(async () => Number((await this.pool.query('SELECT count(*) AS n FROM locks')).rows[0].n));
  }

  countStates(prefix?: string): Promise<number> {
    return translate(async () => {
      const { where, params } = keyRange('key', prefix);
      return Number((await this.pool.query(`SELECT count(*) AS n FROM states WHERE current_version_id IS NOT NULL AND ${where}`, params)).rows[0].n);
    });
  }

  listAudit(query: AuditQuery): Promise<Page<AuditEntry>> {
    return translate(async () => {
      const params: unknown[] = [];
      const conditions = ['true'];
      if (query.newestFirst) {
        if (query.before !== undefined) params.push(query.before), conditions.push(`id < $${params.length}`);
      } else params.push(query.after ?? 0), conditions.push(`id > $${params.length}`);
      if (query.key !== undefined) params.push(query.key), conditions.push(`key = $${params.length}`);
      if (query.since !== undefined) params.push(query.since), conditions.push(`at >= $${params.length}`);
      if (query.action !== undefined) params.push(query.action), conditions.push(`action = $${params.length}`);
      params.push(query.limit + 1);
      const rows = (await this.pool.query(`SELECT * FROM audit WHERE ${conditions.join(' AND ')} ORDER BY id ${query.newestFirst ? 'DESC' : ''} LIMIT $${params.length}`, params)).rows as Row[];
      const items = rows.slice(0, query.limit).map(mapAudit);
      return { items, next: rows.length > query.limit ? String(items[items.length - 1]!.id) : null };
    });
  }

  countAudit(query: { since: string; actions: readonly AuditAction[] }): Promise<number> {
    return translate(async () => {
      const rows = (await this.pool.query('SELECT count(*) AS n FROM audit WHERE at >= $1 AND action = ANY($2::text[])', [query.since, [...query.actions]])).rows;
      return Number(rows[0].n);
    });
  }

  createSession(s: SessionRecord): Promise<void> {
    return translate(async () => {
      await this.pool.query(
        `INSERT INTO sessions (id, key, ttl_ms, created_at, expires_at, last_heartbeat_at, ended_at, end_reason, client_addr, user_agent, holder, ci)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8, $9, $10)`,
        [s.id, s.key, s.ttlMs, s.createdAt, s.expiresAt, s.lastHeartbeatAt, s.clientAddr, s.userAgent, JSON.stringify(s.holder), JSON.stringify(s.ci)],
      );
    });
  }

  renewSession(id: string, expiresAt: string, at: string) {
    return translate(async () => {
      await this.pool.query('UPDATE sessions SET expires_at = $1, last_heartbeat_at = $2 WHERE id = $3 AND ended_at IS NULL', [expiresAt, at, id]);
      return this.getSession(id);
    });
  }

  getSession(id: string) {
    return translate(async () => {
      const row = (await this.pool.query('SELECT * FROM sessions WHERE id = $1', [id])).rows[0] as Row | undefined;
      return row ? mapSession(row, '') : null;
    });
  }

  listRejected(key: string, opts: { after?: number; limit: number }): Promise<Page<RejectedWrite>> {
    return translate(async () => {
      const rows = (
        await this.pool.query('SELECT id, key, lock_id, at, serial, lineage, size, sha256, reason, client_addr FROM rejected_writes WHERE key = $1 AND id > $2 ORDER BY id LIMIT $3', [key, opts.after ?? 0, opts.limit + 1])
      ).rows as Row[];
      const items = rows.slice(0, opts.limit).map(mapRejected);
      return { items, next: rows.length > opts.limit ? String(items[items.length - 1]!.id) : null };
    });
  }

  readRejected(key: string, id: number) {
    return translate(async () => {
      const row = (await this.pool.query('SELECT * FROM rejected_writes WHERE key = $1 AND id = $2', [key, id])).rows[0] as Row | undefined;
      if (!row) return null;
      const content: BodyContent = row.chunked === true ? { kind: 'chunks', chunks: await this.chunks.manifest(this.pool, 'rejected', row.id) } : { kind: 'whole', body: row.body as Buffer };
      return { meta: mapRejected(row), content };
    });
  }

  chunkId(plain: Buffer): string {
    return sha256ChunkId(plain);
  }

  putChunks(chunks: StoredChunk[]): Promise<void> {
    return translate(() => this.chunks.put(chunks));
  }

  presentChunks(ids: readonly string[]): Promise<Set<string>> {
    return translate(() => this.chunks.present(ids));
  }

  getChunks(ids: readonly string[]): Promise<StoredChunk[]> {
    return translate(() => this.chunks.get(ids));
  }

  sweepChunks(olderThan: string): Promise<number> {
    return translate(() => this.chunks.sweep(olderThan));
  }

  chunkStats(): Promise<{ chunks: number; storedBytes: number }> {
    return translate(() => this.chunks.stats());
  }

  /** One transaction for a principal change and its audit entry, serialised with the other principal changes. */
  private async principalTransaction<T>(fn: (c: pg.PoolClient) => Promise<T | null>, audit: NewAuditEntry, client: ClientContext): Promise<T | null> {
    return translate(() =>
      this.transaction(async (c) => {
        await c.query("SELECT pg_advisory_xact_lock(hashtextextended('statelock principals', 0))");
        const result = await fn(c);
        if (result !== null) await this.apply(c, audit.key, client, { audit: [audit] }, null); // no lock change: `held` unread
        return result;
      }),
    );
  }

  async createPrincipal(p: PrincipalRecord, audit: NewAuditEntry, client: ClientContext): Promise<boolean> {
    const created = await this.principalTransaction(
      async (c) => {
        if (((await c.query('SELECT 1 FROM principals WHERE name = $1 AND revoked_at IS NULL', [p.name])).rowCount ?? 0) > 0) return null;
        await c.query(
          'INSERT INTO principals (id, name, token_hash, grants, aws_access_key_id, aws_secret, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)',
          [p.id, p.name, p.tokenHash, JSON.stringify(p.grants), p.awsAccessKeyId, p.awsSecret, p.createdAt],
        );
        return true;
      },
      audit,
      client,
    );
    return created === true;
  }

  getPrincipal(id: string): Promise<PrincipalRecord | null> {
    return translate(async () => mapPrincipal((await this.pool.query('SELECT * FROM principals WHERE id = $1', [id])).rows[0] as Row | undefined));
  }

  getPrincipalByAccessKey(accessKeyId: string): Promise<PrincipalRecord | null> {
    return translate(async () => mapPrincipal((await this.pool.query('SELECT * FROM principals WHERE aws_access_key_id = $1 AND revoked_at IS NULL', [accessKeyId])).rows[0] as Row | undefined));
  }

  listPrincipals(): Promise<PrincipalRecord[]> {
    return translate(async () => ((await this.pool.query('SELECT * FROM principals ORDER BY created_at, id')).rows as Row[]).map((r) => mapPrincipal(r)!));
  }

  revokePrincipal(name: string, at: string, audit: NewAuditEntry, client: ClientContext): Promise<PrincipalRecord | null> {
    return this.principalTransaction(
      async (c) => {
        const live = mapPrincipal((await c.query('SELECT * FROM principals WHERE name = $1 AND revoked_at IS NULL', [name])).rows[0] as Row | undefined);
        if (!live) return null;
        await c.query('UPDATE principals SET revoked_at = $1 WHERE id = $2', [at, live.id]);
        return { ...live, revokedAt: at };
      },
      audit,
      client,
    );
  }

  countLivePrincipals(): Promise<number> {
    return translate(async () => Number((await this.pool.query('SELECT count(*) AS n FROM principals WHERE revoked_at IS NULL')).rows[0].n));
  }

  async rewriteBodies(
    transform: (body: Buffer) => Buffer | null,
    transformSecret?: (text: string) => string | null,
    transformChunk?: (chunk: StoredChunk) => StoredChunk | null,
  ): Promise<{ scanned: number; rewritten: number }> {
    let scanned = 0;
    let rewritten = 0;
    const inTransaction = (fn: (c: pg.PoolClient) => Promise<void>) => translate(() => this.transaction(fn));
    // Legacy versions: a body is its pieces; each version is rewritten (its pieces replaced) in one transaction.
    let after = '0';
    for (;;) {
      const ids = (await translate(() => this.pool.query('SELECT id FROM versions WHERE id > $1 AND NOT chunked ORDER BY id LIMIT 256', [after]))).rows as Array<{ id: string }>;
      if (ids.length === 0) break;
      for (const { id } of ids) {
        await inTransaction(async (c) => {
          // The version row's lock serializes two rewrites of one body (two rekeys at once): the second then
          // reads the chunks the first committed. (Locking the chunk rows would not do: READ COMMITTED would
          // hand the second an empty set once the first had replaced them, and it would store an empty body.)
          // NO KEY UPDATE leaves the KEY SHARE locks of foreign keys (states.current_version_id) unblocked.
          if ((await c.query('SELECT id FROM versions WHERE id = $1 FOR NO KEY UPDATE', [id])).rowCount !== 1) return;
          const chunks = (await c.query('SELECT data FROM version_chunks WHERE version_id = $1 ORDER BY n', [id])).rows as Array<{ data: Buffer }>;
          if (chunks.length === 0) return;
          scanned++;
          const next = transform(Buffer.concat(chunks.map((r) => r.data)));
          if (!next) return;
          await c.query('DELETE FROM version_chunks WHERE version_id = $1', [id]);
          for (let n = 0, at = 0; at < next.length || n === 0; n++, at += CHUNK_BYTES) {
            await c.query('INSERT INTO version_chunks (version_id, n, data) VALUES ($1, $2, $3)', [id, n, next.subarray(at, at + CHUNK_BYTES)]);
          }
          rewritten++;
        });
      }
      after = ids[ids.length - 1]!.id;
    }
    // Legacy fenced writes and parts: one row each, locked, read, rewritten (a row gone meanwhile is skipped).
    let afterRejected = '0';
    for (;;) {
      const ids = (await translate(() => this.pool.query('SELECT id FROM rejected_writes WHERE id > $1 AND NOT chunked ORDER BY id LIMIT 256', [afterRejected]))).rows as Array<{ id: string }>;
      if (ids.length === 0) break;
      for (const { id } of ids) {
        await inTransaction(async (c) => {
          const body = (await c.query('SELECT body FROM rejected_writes WHERE id = $1 FOR UPDATE', [id])).rows[0]?.body as Buffer | undefined;
          if (!body) return;
          scanned++;
          const next = transform(body);
          if (next) await c.query('UPDATE rejected_writes SET body = $1 WHERE id = $2', [next, id]), rewritten++;
        });
      }
      afterRejected = ids[ids.length - 1]!.id;
    }
    const parts = (await translate(() => this.pool.query('SELECT upload_id, part_number FROM upload_parts ORDER BY upload_id, part_number'))).rows as Array<{ upload_id: string; part_number: number }>;
    for (const p of parts) {
      await inTransaction(async (c) => {
        const body = (await c.query('SELECT body FROM upload_parts WHERE upload_id = $1 AND part_number = $2 FOR UPDATE', [p.upload_id, p.part_number])).rows[0]?.body as Buffer | undefined;
        if (!body) return;
        scanned++;
        const next = transform(body);
        if (next) await c.query('UPDATE upload_parts SET body = $1 WHERE upload_id = $2 AND part_number = $3', [next, p.upload_id, p.part_number]), rewritten++;
      });
    }
    if (transformChunk) {
      const count = { scanned: 0, rewritten: 0 };
      await translate(() => this.chunks.rewrite(transformChunk, count));
      scanned += count.scanned;
      rewritten += count.rewritten;
    }
    if (transformSecret) {
      for (const p of (await translate(() => this.pool.query('SELECT id, aws_secret FROM principals WHERE aws_secret IS NOT NULL ORDER BY id'))).rows as Array<{ id: string; aws_secret: string }>) {
        scanned++;
        const next = transformSecret(p.aws_secret);
        // Only if unchanged since read: a concurrent rekey's result is never overwritten with a stale one.
        if (next !== null && ((await translate(() => this.pool.query('UPDATE principals SET aws_secret = $1 WHERE id = $2 AND aws_secret = $3', [next, p.id, p.aws_secret]))).rowCount ?? 0) === 1) rewritten++;
      }
    }
    return { scanned, rewritten };
  }

  createBucket(b: BucketRecord): Promise<boolean> {
    return translate(async () => ((await this.pool.query('INSERT INTO buckets (name, region, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [b.name, b.region, b.createdAt])).rowCount ?? 0) === 1);
  }

  getBucket(name: string): Promise<BucketRecord | null> {
    return translate(async () => mapBucket((await this.pool.query('SELECT * FROM buckets WHERE name = $1', [name])).rows[0] as Row | undefined));
  }

  listBuckets(): Promise<BucketRecord[]> {
    return translate(async () => ((await this.pool.query('SELECT * FROM buckets ORDER BY name')).rows as Row[]).map((r) => mapBucket(r)!));
  }

  deleteBucket(name: string): Promise<boolean> {
    return translate(async () => ((await this.pool.query('DELETE FROM buckets WHERE name = $1', [name])).rowCount ?? 0) === 1);
  }

  createLockTable(t: LockTableRecord): Promise<boolean> {
    return translate(async () => ((await this.pool.query('INSERT INTO lock_tables (name, definition, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [t.name, JSON.stringify(t.definition), t.createdAt])).rowCount ?? 0) === 1);
  }

  getLockTable(name: string): Promise<LockTableRecord | null> {
    return translate(async () => mapLockTable((await this.pool.query('SELECT * FROM lock_tables WHERE name = $1', [name])).rows[0] as Row | undefined));
  }

  listLockTables(): Promise<LockTableRecord[]> {
    return translate(async () => ((await this.pool.query('SELECT * FROM lock_tables ORDER BY name')).rows as Row[]).map((r) => mapLockTable(r)!));
  }

  deleteLockTable(name: string): Promise<boolean> {
    return translate(async () => ((await this.pool.query('DELETE FROM lock_tables WHERE name = $1', [name])).rowCount ?? 0) === 1);
  }

  createUpload(u: UploadRecord): Promise<void> {
    return translate(async () => {
      await this.pool.query('INSERT INTO uploads (id, key, content_type, created_at, client_addr) VALUES ($1, $2, $3, $4, $5)', [u.id, u.key, u.contentType, u.createdAt, u.clientAddr]);
    });
  }

  getUpload(id: string): Promise<UploadRecord | null> {
    return translate(async () => mapUpload((await this.pool.query('SELECT * FROM uploads WHERE id = $1', [id])).rows[0] as Row | undefined));
  }

  putPart(uploadId: string, partNumber: number, body: Buffer, md5: string): Promise<void> {
    return translate(async () => {
      await this.pool.query(
        `INSERT INTO upload_parts (upload_id, part_number, md5, size, body) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (upload_id, part_number) DO UPDATE SET md5 = excluded.md5, size = excluded.size, body = excluded.body`,
        [uploadId, partNumber, md5, body.length, body],
      );
    });
  }

  listParts(uploadId: string): Promise<PartRecord[]> {
    return translate(async () => ((await this.pool.query('SELECT upload_id, part_number, md5, size FROM upload_parts WHERE upload_id = $1 ORDER BY part_number', [uploadId])).rows as Row[]).map(mapPart));
  }

  readPart(uploadId: string, partNumber: number): Promise<Buffer | null> {
    return translate(async () => ((await this.pool.query('SELECT body FROM upload_parts WHERE upload_id = $1 AND part_number = $2', [uploadId, partNumber])).rows[0]?.body as Buffer | undefined) ?? null);
  }

  deleteUpload(id: string): Promise<boolean> {
    return translate(async () => ((await this.pool.query('DELETE FROM uploads WHERE id = $1', [id])).rowCount ?? 0) === 1);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    await this.pool.end();
  }
}

function keyRange(column: string, prefix?: string, after?: string): { where: string; params: unknown[] } {
  const conditions = ['true'];
  const params: unknown[] = [];
  if (prefix) {
    params.push(prefix);
    conditions.push(`${column} >= $${params.length}`);
    const upper = prefixUpperBound(prefix);
    if (upper !== null) params.push(upper), conditions.push(`${column} < $${params.length}`);
  }
  if (after !== undefined) params.push(after), conditions.push(`${column} > $${params.length}`);
  return { where: conditions.join(' AND '), params };
}

/** SQLSTATE classes and socket errors that mean "the database is not reachable right now". */
const UNAVAILABLE = /^(08|57P0[1-3]|53300|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN)/;

/**
 * Driver errors become domain errors here, once: an unreachable or restarting PostgreSQL is a 503 the
 * client retries (Terraform does); anything else is a bug and stays as it is.
 */
async function translate<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StatelockError) throw err;
    const code = String((err as { code?: unknown }).code ?? '');
    // 53100 disk_full, 53200 out_of_memory are not outages of the connection: the database is full.
    if (code === '53100') throw new StatelockError('STORE_FULL', { reason: code });
    const message = (err as Error).message ?? '';
    if (UNAVAILABLE.test(code) || /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED|Client has encountered a connection error/i.test(message)) {
      throw new StatelockError('STORE_UNAVAILABLE', { reason: code || message });
    }
    throw err;
  }
}

/** An audit row's values, in auditInsert's order. */
function auditValues(e: NewAuditEntry, now: string, client: ClientContext): unknown[] {
  return [now, e.action, e.key, e.lockId, e.outcome, client.addr, client.userAgent, client.principal, JSON.stringify(e.detail)];
}
