import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditAction, AuditEntry, ClientContext } from '../../audit/audit-entry.js';
import { StatelockError } from '../../server/errors.js';
import { prefixUpperBound } from '../../state/state-key.js';
import type {
  BodyContent,
  NewVersion,
  StoredChunk,
  RejectedWrite,
  SessionRecord,
  AuditQuery,
  Changes,
  Decision,
  KeySnapshot,
  LockRecord,
  Page,
  StateSummary,
  Store,
  VersionMeta,
  BucketRecord,
  LockTableRecord,
  UploadRecord,
  PartRecord,
  PrincipalRecord,
  UpdateOptions,
} from '../store.js';
import type { NewAuditEntry } from '../../audit/audit-entry.js';
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js';
import { DiskReserve, type DiskReserveOptions } from './disk-reserve.js';
import { GroupCommit } from './group-commit.js';
import { WalSync, type WalSyncIo } from './wal-sync.js';
import { SqliteChunks } from './sqlite-chunks.js';
import { DeferredKeyIndexes, auditFilters, type CatchUpWhen } from './deferred-key-indexes.js';
import { sha256ChunkId } from '../store.js';
import { isoNow } from '../../shared/iso-now.js';
import { mapAudit, mapBucket, mapLock, mapLockTable, mapPart, mapPrincipal, mapRejected, mapSession, mapUpload, mapVersion, type Row } from '../rows.js';


const LOCK_SELECT =
  'SELECT l.*, s.id AS s_id, s.key AS s_key, s.ttl_ms AS s_ttl_ms, s.created_at AS s_created_at, s.expires_at AS s_expires_at, s.last_heartbeat_at AS s_last_heartbeat_at, s.ended_at AS s_ended_at, s.end_reason AS s_end_reason, s.client_addr AS s_client_addr, s.user_agent AS s_user_agent, s.holder AS s_holder, s.ci AS s_ci FROM locks l LEFT JOIN sessions s ON s.id = l.session_id';

const VERSION_COLUMNS =
  'v.key, v.seq, v.serial, v.lineage, v.md5, v.sha256, v.size, v.encrypted, v.created_at, v.lock_id, v.operation, v.client_addr, v.forced';

/** SQLite's page cache for the server's connection, in KiB (see the constructor). */
export const PAGE_CACHE_KIB = 4000;

/** `PRAGMA temp_store` values: temporary files (sub-journals, temporary databases) in memory, or on disk. */
export const TEMP_STORE_MEMORY = 2;
const TEMP_STORE_FILE = 1;

/**
 * The embedded engine: one SQLite file in WAL mode; every acknowledged change has been fsynced, so it
 * survives a crash or a power cut. {@link Store.update}s are group-committed (group-commit.ts): those that
 * arrive in the same event-loop turn run in one `BEGIN IMMEDIATE` transaction, which takes the database's
 * write lock before any snapshot is read, and share one COMMIT; an update that throws is undone alone. The
 * WAL is then fdatasynced on the thread pool (wal-sync.ts) before their callers are answered, and reads wait
 * for that sync too. Every other write commits with `synchronous = FULL`. A disk reserve (disk-reserve.ts)
 * keeps locks working when the disk is full.
 */
export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  private readonly db: Database.Database;
  private readonly stmt: ReturnType<SqliteStore['prepare']>;
  private readonly batches: GroupCommit;
  private readonly wal: WalSync;
  private readonly reserve: DiskReserve;
  private readonly chunks: SqliteChunks;
  private readonly keyIndexes: DeferredKeyIndexes;
  private closed = false;
  private checkpointScheduled = false;
  /** Body bytes written to the WAL since the last checkpoint this store ran (see bodyBytesWritten). */
  private bodyBytesInWal = 0;
  private checkpointTimer: NodeJS.Timeout | null = null;

  constructor(dataDir: string, opts: SqliteStoreOptions = {}) {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, 'statelock.db');
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    // 4 MiB of page cache instead of better-sqlite3's 16: the hot pages (lock rows, audit and index leaves, the
    // chunk lookup index) fit, while a large body's chunk pages pass through once; the other 12 MiB were resident
    // after the first large write or read and put the 100 MiB peaks at 1.33-1.49x the state (bench/README.md).
    this.db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
    migrate(this.db);
    // SQLite copies each page a savepoint changes into a sub-journal, which it moves to a temporary file past
    // 64 KiB. When every group-committed update ran in a savepoint, a by-key index catch-up changed hundreds of
    // pages in its savepoint: under lock traffic that was a file created, written page by page (~400 writes) and
    // deleted every ~100 ms, on the event loop (bench/README.md). Savepoints now come only with a batch run
    // again (group-commit.ts), and statements keep their own journals; in memory, a sub-journal holds what its
    // savepoint changed until it ends. Set after the migrations, whose sorts and rebuilds may be large;
    // compact() puts VACUUM's temporary copy of the database back on disk.
    this.db.pragma(`temp_store = ${TEMP_STORE_MEMORY}`);
    this.stmt = this.prepare();
    this.reserve = new DiskReserve(dataDir, { bytes: opts.diskReserveBytes ?? 0, ...(opts.onDiskReserve ? { onEvent: opts.onDiskReserve } : {}) });
    this.wal = new WalSync(`${file}-wal`, opts.walIo, translateDriverError);
    this.batches = new GroupCommit(this.db, {
      wal: this.wal,
      maxOps: GROUP_COMMIT_MAX_OPS,
      maxBodyBytes: GROUP_COMMIT_MAX_BODY_BYTES,
      translate: translateDriverError,
      onDiskFull: (attempt, inTransaction) => this.makeRoom(attempt, inTransaction),
      afterBodies: (bytes) => this.bodiesWritten(bytes),
    });
    this.chunks = new SqliteChunks(this.db);
    this.keyIndexes = new DeferredKeyIndexes(this.db, (work) => this.batches.submit(work), opts.keyIndexCatchUp);
    // What the last process left unindexed (a crash, a close before its catch-up): indexed at once.
    this.db.transaction(() => this.keyIndexes.catchUp()).immediate();
  }

  /**
   * State body bytes (chunks, multipart parts) are copied from the WAL into the database file right after they
   * were written once they add up to CHECKPOINT_AFTER_BODY_BYTES, while the room for them that assertRoomFor
   * checked is still there: so the WAL holds only small changes when something else fills the disk, and lock
   * traffic keeps reusing it instead of growing it — also after a write whose chunks were stored and which was
   * then refused. Fewer bytes (a re-sent state's few new chunks: most writes) wait for SQLite's auto-checkpoint
   * with the rest of the WAL's small changes; a checkpoint after each such write cost it two fsyncs after its
   * answer and, as it let the next commit start the WAL over, a third (the WAL header's) on the next write.
   * Returns whether a checkpoint is due.
   */
  private bodyBytesWritten(bytes: number): boolean {
    this.bodyBytesInWal += bytes;
    return this.bodyBytesInWal >= CHECKPOINT_AFTER_BODY_BYTES;
  }

  /** After a COMMIT that wrote state bodies (their versions; their chunks were counted when stored). */
  private bodiesWritten(bytes: number): void {
    if (this.bodyBytesWritten(bytes)) this.checkpointSoon();
  }

  private checkpointSoon(): void {
    if (this.checkpointTimer) {
      clearTimeout(this.checkpointTimer);
      this.checkpointTimer = null;
    }
    if (this.checkpointScheduled) return;
    this.checkpointScheduled = true;
    setImmediate(() => {
      this.checkpointScheduled = false;
      if (this.closed) return;
      this.bodyBytesInWal = 0;
      try {
        this.db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // best effort: SQLite checkpoints again later by itself
      }
    });
  }

  /**
   * After chunks were stored: the same checkpoint, but not between the chunks and the version that names
   * them. A body's last chunks are normally followed at once by the COMMIT of its version (whose
   * afterBodies checkpoint takes this one's place); checkpointing first would put a checkpoint — two fsyncs,
   * and a WAL restart costing the COMMIT one more — on the write's critical path. The timer is the
   * fallback for chunks no version follows (a refused write) and, during a long body, checkpoints the
   * batches stored so far every CHUNK_CHECKPOINT_DELAY_MS.
   */
  private checkpointAfterChunks(): void {
    if (this.checkpointTimer || this.checkpointScheduled) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      this.checkpointSoon();
    }, CHUNK_CHECKPOINT_DELAY_MS);
    this.checkpointTimer.unref();
  }

  private prepare() {
    const db = this.db;
    return {
      current: db.prepare(
        `SELECT ${VERSION_COLUMNS} FROM states s JOIN versions v ON v.id = s.current_version_id WHERE s.key = ?`,
      ),
      currentWithBody: db.prepare(
        `SELECT ${VERSION_COLUMNS}, v.id AS vid, v.chunked, v.body FROM states s JOIN versions v ON v.id = s.current_version_id WHERE s.key = ?`,
      ),
      versionBySeq: db.prepare(`SELECT ${VERSION_COLUMNS}, v.id AS vid, v.chunked, v.body FROM versions v WHERE v.key = ? AND v.seq = ?`),
      versionBySerial: db.prepare(
        `SELECT ${VERSION_COLUMNS}, v.id AS vid, v.chunked, v.body FROM versions v WHERE v.key = ? AND v.serial = ? ORDER BY v.seq DESC LIMIT 1`,
      ),
      versions: db.prepare(`SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.key = ? AND v.seq > ? ORDER BY v.seq LIMIT ?`),
      stateRow: db.prepare('SELECT version_count FROM states WHERE key = ?'),
      highestSerial: db.prepare('SELECT max(serial) AS s FROM versions WHERE key = ? AND lineage = ?'),
      insertVersion: db.prepare(
        `INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, body, chunked)
         VALUES (@key, @seq, @serial, @lineage, @md5, @sha256, @size, @encrypted, @createdAt, @lockId, @operation, @clientAddr, @forced, x'', 1)`,
      ),
      upsertState: db.prepare(
        `INSERT INTO states (key, current_version_id, version_count, deleted_at, updated_at) VALUES (?, ?, ?, NULL, ?)
         ON CONFLICT (key) DO UPDATE SET current_version_id = excluded.current_version_id,
           version_count = excluded.version_count, deleted_at = NULL, updated_at = excluded.updated_at`,
      ),
      softDelete: db.prepare('UPDATE states SET current_version_id = NULL, deleted_at = ?, updated_at = ? WHERE key = ?'),
      lock: db.prepare(`${LOCK_SELECT} WHERE l.key = ?`),
      // Inside a transaction (a snapshot): the lock alone, and its session only when it has one. Every column
      // read costs (the driver builds each value and property name), and the join's 12 session columns are
      // nearly always NULL.
      lockOnly: db.prepare('SELECT * FROM locks WHERE key = ?'),
      heldLockId: db.prepare('SELECT lock_id FROM locks WHERE key = ?'),
      // Positional parameters: binding by name looks each one up, per run.
      setLock: db.prepare(
        `INSERT OR REPLACE INTO locks (key, lock_id, operation, who, version, created, info, path, raw, acquired_at, last_activity_at, client_addr, user_agent, session_id, holds)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertRejected: db.prepare(
        `INSERT INTO rejected_writes (key, lock_id, at, serial, lineage, size, sha256, reason, client_addr, body, chunked)
         VALUES (@key, @lockId, @at, @serial, @lineage, @size, @sha256, @reason, @clientAddr, x'', 1)`,
      ),
      listRejected: db.prepare('SELECT id, key, lock_id, at, serial, lineage, size, sha256, reason, client_addr FROM rejected_writes WHERE key = ? AND id > ? ORDER BY id LIMIT ?'),
      readRejected: db.prepare('SELECT * FROM rejected_writes WHERE key = ? AND id = ?'),
      insertSession: db.prepare(
        `INSERT INTO sessions (id, key, ttl_ms, created_at, expires_at, last_heartbeat_at, ended_at, end_reason, client_addr, user_agent, holder, ci)
         VALUES (@id, @key, @ttlMs, @createdAt, @expiresAt, @lastHeartbeatAt, NULL, NULL, @clientAddr, @userAgent, @holder, @ci)`,
      ),
      renewSession: db.prepare('UPDATE sessions SET expires_at = ?, last_heartbeat_at = ? WHERE id = ? AND ended_at IS NULL'),
      endSession: db.prepare('UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL'),
      session: db.prepare('SELECT * FROM sessions WHERE id = ?'),
      clearLock: db.prepare('DELETE FROM locks WHERE key = ?'),
      touchLock: db.prepare('UPDATE locks SET last_activity_at = ? WHERE key = ?'),
      setHolds: db.prepare('UPDATE locks SET holds = ? WHERE key = ?'),
      insertBucket: db.prepare('INSERT OR IGNORE INTO buckets (name, region, created_at) VALUES (@name, @region, @createdAt)'),
      bucket: db.prepare('SELECT * FROM buckets WHERE name = ?'),
      buckets: db.prepare('SELECT * FROM buckets ORDER BY name'),
      deleteBucket: db.prepare('DELETE FROM buckets WHERE name = ?'),
      insertTable: db.prepare('INSERT OR IGNORE INTO lock_tables (name, definition, created_at) VALUES (?, ?, ?)'),
      table: db.prepare('SELECT * FROM lock_tables WHERE name = ?'),
      tables: db.prepare('SELECT * FROM lock_tables ORDER BY name'),
      deleteTable: db.prepare('DELETE FROM lock_tables WHERE name = ?'),
      insertUpload: db.prepare('INSERT INTO uploads (id, key, content_type, created_at, client_addr) VALUES (@id, @key, @contentType, @createdAt, @clientAddr)'),
      upload: db.prepare('SELECT * FROM uploads WHERE id = ?'),
      putPart: db.prepare('INSERT OR REPLACE INTO upload_parts (upload_id, part_number, md5, size, body) VALUES (?, ?, ?, ?, ?)'),
      parts: db.prepare('SELECT upload_id, part_number, md5, size FROM upload_parts WHERE upload_id = ? ORDER BY part_number'),
      part: db.prepare('SELECT body FROM upload_parts WHERE upload_id = ? AND part_number = ?'),
      deleteUpload: db.prepare('DELETE FROM uploads WHERE id = ?'),
      insertPrincipal: db.prepare(
        `INSERT INTO principals (id, name, token_hash, grants, aws_access_key_id, aws_secret, created_at, revoked_at)
         VALUES (@id, @name, @tokenHash, @grants, @awsAccessKeyId, @awsSecret, @createdAt, NULL)`,
      ),
      livePrincipalByName: db.prepare('SELECT * FROM principals WHERE name = ? AND revoked_at IS NULL'),
      principal: db.prepare('SELECT * FROM principals WHERE id = ?'),
      principalByAccessKey: db.prepare('SELECT * FROM principals WHERE aws_access_key_id = ? AND revoked_at IS NULL'),
      principals: db.prepare('SELECT * FROM principals ORDER BY created_at, id'),
      revokePrincipal: db.prepare('UPDATE principals SET revoked_at = ? WHERE id = ?'),
      countLivePrincipals: db.prepare('SELECT count(*) AS n FROM principals WHERE revoked_at IS NULL'),
      countLocks: db.prepare('SELECT count(*) AS n FROM locks'),
      insertAudit: db.prepare(
        `INSERT INTO audit (at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
    };
  }

  update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, opts: UpdateOptions<T> = {}): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    const done = this.batches.submit((job): Decision<T> => {
      job.unwritten = true; // until apply: a throw before it (a rule's bug, no room for the body) leaves nothing to undo
      const snapshot = new LazySnapshot(this.stmt, this.keyIndexes, key, opts.probeLockId ?? null);
      let decision: Decision<T>;
      try {
        decision = decide(snapshot);
        // A rule may hand the snapshot itself back as its result: then it must be read whole, here.
        if ('result' in decision && decision.result === snapshot) snapshot.readAll();
      } finally {
        snapshot.seal();
      }
      job.bodyBytes = bodyBytesOf(decision.changes);
      if (job.bodyBytes > 0) this.reserve.assertRoomFor(job.bodyBytes);
      job.unwritten = false;
      this.apply(key, client, decision.changes, snapshot.lockIdIfRead());
      // Still inside the batch: an update started from here joins this transaction (see UpdateOptions.applied).
      if (opts.applied && 'result' in decision) opts.applied(decision.result);
      return decision;
    });
    return done.then((decision) => {
      if ('error' in decision) throw decision.error;
      return decision.result;
    });
  }

  /**
   * A write without a state body found the disk full. First remedy: a checkpoint — the WAL's frames are
   * copied into the database file, and the next transaction starts the WAL over from its beginning, in
   * space it already has (a WAL only grows when it is not checkpointed in time). Then: release the disk
   * reserve (and checkpoint again, now that there is room for the database file to grow).
   */
  private makeRoom(attempt: number, inTransaction: boolean): boolean {
    const checkpoint = () => {
      try {
        this.db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // no room even for that: the reserve is next
      }
    };
    if (attempt === 0 && !inTransaction) {
      checkpoint();
      return true;
    }
    const released = this.reserve.release();
    if (released && !inTransaction) checkpoint();
    return released;
  }

  /** COMMITs of {@link update} batches so far: each one WAL append, however many updates it held. */
  get commits(): number {
    return this.batches.commits;
  }

  /** Updates committed so far (updates ÷ commits = how many shared each commit). */
  get committedUpdates(): number {
    return this.batches.updates;
  }

  /** Batches run a second time, each update in a savepoint, because one of them threw after writing (group-commit.ts). */
  get batchReruns(): number {
    return this.batches.reruns;
  }

  /** Fsyncs of the WAL after group commits (one may cover several commits). */
  get walSyncs(): number {
    return this.wal.syncs;
  }

  /** The disk reserve kept for locks (see disk-reserve.ts): body-writing paths call `reserve.assertRoomFor(bytes)`. */
  get diskReserve(): DiskReserve {
    return this.reserve;
  }

  /** `heldLockId`: the lock's ID as the snapshot read it (null: free), when it did — spares reading it again. */
  private apply(key: string, client: ClientContext, changes: Changes, heldLockId?: string | null): void {
    const now = isoNow();
    if (changes.newVersion) this.insertVersion(key, changes.newVersion, now);
    if (changes.deleteState) this.stmt.softDelete.run(now, now, key);
    const lock = changes.lock;
    if (lock && ('set' in lock || 'clear' in lock)) {
      const held = heldLockId !== undefined ? (heldLockId ?? undefined) : (this.stmt.heldLockId.get(key) as { lock_id: string } | undefined)?.lock_id;
      const next = 'set' in lock ? lock.set.id : null;
      if (held !== undefined && held !== next) this.keyIndexes.recordReleased(key, held, now);
    }
    if (lock && 'set' in lock) {
      const l = lock.set;
      this.stmt.setLock.run(l.key, l.id, l.operation, l.who, l.version, l.created, l.info, l.path, l.raw, l.acquiredAt, l.lastActivityAt, l.clientAddr, l.userAgent, l.sessionId, l.holds.join(','));
    }
    if (lock && 'clear' in lock) this.stmt.clearLock.run(key);
    if (changes.rejectedWrite) this.insertRejected(key, changes.rejectedWrite, now);
    if (changes.endSession) this.stmt.endSession.run(now, changes.endSession.reason, changes.endSession.id);
    if (lock && 'touch' in lock) {
      this.stmt.touchLock.run(lock.touch, key);
      if (lock.holds) this.stmt.setHolds.run(lock.holds.join(','), key);
    }
    const audit = changes.audit ?? [];
    for (const entry of audit) {
      this.stmt.insertAudit.run(
        now,
        entry.action,
        entry.key,
        entry.lockId,
        entry.outcome,
        client.addr,
        client.userAgent,
        client.principal,
        JSON.stringify(entry.detail),
      );
    }
    this.keyIndexes.appended(audit.length);
  }

  /** A version row and its manifest (inside apply's transaction: a chunk that is not stored rolls it back). */
  private insertVersion(key: string, v: NewVersion, now: string): void {
    const { chunks, ...meta } = v;
    const info = this.stmt.insertVersion.run({ ...meta, key, encrypted: v.encrypted ? 1 : 0 });
    this.chunks.writeRefs('version', info.lastInsertRowid, chunks);
    this.stmt.upsertState.run(key, info.lastInsertRowid, v.seq, now);
  }

  private insertRejected(key: string, r: NonNullable<Changes['rejectedWrite']>, now: string): void {
    const { chunks, ...meta } = r;
    const info = this.stmt.insertRejected.run({ ...meta, key, at: now });
    this.chunks.writeRefs('rejected', info.lastInsertRowid, chunks);
  }

  /** A read's content: a chunked row's manifest, or a legacy row's whole body. */
  private contentOf(owner: 'version' | 'rejected', r: Row): BodyContent {
    if (r.chunked === 1) return { kind: 'chunks', chunks: this.chunks.manifest(owner, r.vid as number) };
    return { kind: 'whole', body: r.body as Buffer };
  }

  private withContent(r: Row | undefined): { meta: VersionMeta; content: BodyContent } | null {
    return r ? { meta: mapVersion(r)!, content: this.contentOf('version', r) } : null;
  }

  async readCurrent(key: string) {
    await this.wal.settled();
    return this.withContent(this.stmt.currentWithBody.get(key) as Row | undefined);
  }

  async readVersion(key: string, which: { seq: number } | { serial: number }) {
    await this.wal.settled();
    const row = 'seq' in which ? this.stmt.versionBySeq.get(key, which.seq) : this.stmt.versionBySerial.get(key, which.serial);
    return this.withContent(row as Row | undefined);
  }

  chunkId(plain: Buffer): string {
    return sha256ChunkId(plain);
  }

  async putChunks(chunks: StoredChunk[]): Promise<void> {
    // A body's bytes are written here, before its version: refused while they would eat the room kept for locks.
    const bytes = chunks.reduce((n, c) => n + c.data.length, 0);
    this.reserve.assertRoomFor(bytes);
    translateDriverErrors(() => this.chunks.put(chunks));
    if (this.bodyBytesWritten(bytes)) this.checkpointAfterChunks();
  }

  async presentChunks(ids: readonly string[]): Promise<Set<string>> {
    await this.wal.settled();
    return translateDriverErrors(() => this.chunks.present(ids));
  }

  async getChunks(ids: readonly string[]): Promise<StoredChunk[]> {
    await this.wal.settled();
    return translateDriverErrors(() => this.chunks.get(ids));
  }

  async sweepChunks(olderThan: string): Promise<number> {
    // The refs written since the last sweep are filed by chunk first, a step (~10,000 refs, whole versions) at a
    // time, with requests served between the steps. Measured here: 1,000 versions of a 1 MiB state in 13 steps of
    // ~10 ms; 100 versions of a 100 MiB state in 100 steps of 50-95 ms (each of those versions' 12,800 chunks
    // falls on its own index page), which is what each such write used to spend on the index inside its commit.
    while (!translateDriverErrors(() => this.chunks.catchUpRefsStep())) await new Promise((resolve) => setImmediate(resolve));
    return translateDriverErrors(() => this.chunks.sweep(olderThan));
  }

  async chunkStats(): Promise<{ chunks: number; storedBytes: number }> {
    await this.wal.settled();
    return this.chunks.stats();
  }

  async listVersions(key: string, opts: { after?: number; limit: number }): Promise<Page<VersionMeta>> {
    await this.wal.settled();
    const rows = this.stmt.versions.all(key, opts.after ?? 0, opts.limit + 1) as Row[];
    const items = rows.slice(0, opts.limit).map((r) => mapVersion(r)!);
    return { items, next: rows.length > opts.limit ? String(items[items.length - 1]!.seq) : null };
  }

  async listStates(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<StateSummary>> {
    await this.wal.settled();
    const { where, params } = keyRange('s.key', opts.prefix, opts.after);
    const rows = this.db
      .prepare(
        `SELECT ${VERSION_COLUMNS}, s.version_count, (l.key IS NOT NULL) AS locked
         FROM states s JOIN versions v ON v.id = s.current_version_id LEFT JOIN locks l ON l.key = s.key
         WHERE ${where} ORDER BY s.key LIMIT ?`,
      )
      .all(...params, opts.limit + 1) as Row[];
    const items = rows.slice(0, opts.limit).map((r) => ({
      key: r.key as string,
      current: mapVersion(r)!,
      versionCount: r.version_count as number,
      locked: r.locked === 1,
    }));
    return { items, next: rows.length > opts.limit ? items[items.length - 1]!.key : null };
  }

  async getLock(key: string) {
    await this.wal.settled();
    return mapLock(this.stmt.lock.get(key) as Row | undefined);
  }

  async listLocks(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<LockRecord>> {
    await this.wal.settled();
    const { where, params } = keyRange('l.key', opts.prefix, opts.after);
    const rows = this.db.prepare(`${LOCK_SELECT} WHERE ${where} ORDER BY l.key LIMIT ?`).all(...params, opts.limit + 1) as Row[];
    const items = rows.slice(0, opts.limit).map((r) => mapLock(r)!);
    return { items, next: rows.length > opts.limit ? items[items.length - 1]!.key : null };
  }

  async countLocks() {
    await this.wal.settled();
    return (this.stmt.countLocks.get() as { n: number }).n;
  }

  async countStates(prefix?: string): Promise<number> {
    await this.wal.settled();
    const { where, params } = keyRange('key', prefix);
    return (this.db.prepare(`SELECT count(*) AS n FROM states WHERE current_version_id IS NOT NULL AND ${where}`).get(...params) as { n: number }).n;
  }

  async listAudit(query: AuditQuery): Promise<Page<AuditEntry>> {
    await this.wal.settled();
    if (query.key !== undefined) return auditPage(this.keyIndexes.auditOfKey({ ...query, key: query.key }), query.limit);
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (query.newestFirst) {
      if (query.before !== undefined) conditions.push('id < ?'), params.push(query.before);
    } else conditions.push('id > ?'), params.push(query.after ?? 0);
    const filters = auditFilters(query);
    conditions.push(...filters.conditions);
    params.push(...filters.params);
    const rows = this.db
      .prepare(`SELECT * FROM audit WHERE ${conditions.length ? conditions.join(' AND ') : '1 = 1'} ORDER BY id ${query.newestFirst ? 'DESC' : ''} LIMIT ?`)
      .all(...params, query.limit + 1) as Row[];
    return auditPage(rows, query.limit);
  }

  async countAudit(query: { since: string; actions: readonly AuditAction[] }): Promise<number> {
    await this.wal.settled();
    if (query.actions.length === 0) return 0;
    const sql = `SELECT count(*) AS n FROM audit WHERE at >= ? AND action IN (${query.actions.map(() => '?').join(', ')})`;
    return (this.db.prepare(sql).get(query.since, ...query.actions) as { n: number }).n;
  }

  async createSession(session: SessionRecord): Promise<void> {
    translateDriverErrors(() => this.stmt.insertSession.run({ ...session, holder: JSON.stringify(session.holder), ci: JSON.stringify(session.ci) }));
  }

  async renewSession(id: string, expiresAt: string, at: string): Promise<SessionRecord | null> {
    await this.wal.settled();
    translateDriverErrors(() => this.stmt.renewSession.run(expiresAt, at, id));
    return this.getSession(id);
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    await this.wal.settled();
    const r = this.stmt.session.get(id) as Row | undefined;
    return r ? mapSession(r, '') : null;
  }

  async listRejected(key: string, opts: { after?: number; limit: number }): Promise<Page<RejectedWrite>> {
    await this.wal.settled();
    const rows = this.stmt.listRejected.all(key, opts.after ?? 0, opts.limit + 1) as Row[];
    const items = rows.slice(0, opts.limit).map(mapRejected);
    return { items, next: rows.length > opts.limit ? String(items[items.length - 1]!.id) : null };
  }

  async readRejected(key: string, id: number) {
    await this.wal.settled();
    const r = this.stmt.readRejected.get(key, id) as Row | undefined;
    return r ? { meta: mapRejected(r), content: this.contentOf('rejected', { ...r, vid: r.id }) } : null;
  }

  async createPrincipal(principal: PrincipalRecord, audit: NewAuditEntry, client: ClientContext): Promise<boolean> {
    const run = this.db.transaction((): boolean => {
      if (this.stmt.livePrincipalByName.get(principal.name)) return false;
      this.stmt.insertPrincipal.run({ ...principal, grants: JSON.stringify(principal.grants) });
      this.apply(audit.key, client, { audit: [audit] });
      return true;
    });
    return translateDriverErrors(() => run.immediate());
  }

  async getPrincipal(id: string): Promise<PrincipalRecord | null> {
    await this.wal.settled();
    return mapPrincipal(this.stmt.principal.get(id) as Row | undefined);
  }

  async getPrincipalByAccessKey(accessKeyId: string): Promise<PrincipalRecord | null> {
    await this.wal.settled();
    return mapPrincipal(this.stmt.principalByAccessKey.get(accessKeyId) as Row | undefined);
  }

  async listPrincipals(): Promise<PrincipalRecord[]> {
    await this.wal.settled();
    return (this.stmt.principals.all() as Row[]).map((r) => mapPrincipal(r)!);
  }

  async revokePrincipal(name: string, at: string, audit: NewAuditEntry, client: ClientContext): Promise<PrincipalRecord | null> {
    const run = this.db.transaction((): PrincipalRecord | null => {
      const live = mapPrincipal(this.stmt.livePrincipalByName.get(name) as Row | undefined);
      if (!live) return null;
      this.stmt.revokePrincipal.run(at, live.id);
      this.apply(audit.key, client, { audit: [audit] });
      return { ...live, revokedAt: at };
    });
    return translateDriverErrors(() => run.immediate());
  }

  async countLivePrincipals(): Promise<number> {
    await this.wal.settled();
    return (this.stmt.countLivePrincipals.get() as { n: number }).n;
  }

  async rewriteBodies(
    transform: (body: Buffer) => Buffer | null,
    transformSecret?: (text: string) => string | null,
    transformChunk?: (chunk: StoredChunk) => StoredChunk | null,
  ): Promise<{ scanned: number; rewritten: number }> {
    let scanned = 0;
    let rewritten = 0;
    // Rows are listed with their sizes outside any transaction; each batch (at most 64 rows or 64 MiB of
    // bodies) is then one BEGIN IMMEDIATE transaction that reads the bodies it rewrites. So a row changed or
    // removed meanwhile by a running server (a part re-sent, an upload completed) is never overwritten with
    // stale bytes, and the server waits at most one batch for the write lock.
    const tables = [
      // Legacy rows only: a chunked row's body is in its chunks (below).
      { list: 'SELECT id AS k, length(body) AS n FROM versions WHERE id > ? AND chunked = 0 ORDER BY id LIMIT 256', read: 'SELECT body FROM versions WHERE id = ?', update: 'UPDATE versions SET body = ? WHERE id = ?' },
      { list: 'SELECT id AS k, length(body) AS n FROM rejected_writes WHERE id > ? AND chunked = 0 ORDER BY id LIMIT 256', read: 'SELECT body FROM rejected_writes WHERE id = ?', update: 'UPDATE rejected_writes SET body = ? WHERE id = ?' },
      // A re-sent part replaces its row (INSERT OR REPLACE): a new rowid, visited later or already sealed.
      { list: 'SELECT rowid AS k, length(body) AS n FROM upload_parts WHERE rowid > ? ORDER BY rowid LIMIT 256', read: 'SELECT body FROM upload_parts WHERE rowid = ?', update: 'UPDATE upload_parts SET body = ? WHERE rowid = ?' },
    ];
    const BATCH_ROWS = 64;
    const BATCH_BYTES = 64 * 1024 * 1024;
    for (const t of tables) {
      const list = this.db.prepare(t.list);
      const read = this.db.prepare(t.read);
      const update = this.db.prepare(t.update);
      const rewriteBatch = this.db.transaction((ks: number[]) => {
        for (const k of ks) {
          const row = read.get(k) as { body: Buffer } | undefined;
          if (!row) continue;
          scanned++;
          const next = transform(row.body);
          if (next) update.run(next, k), rewritten++;
        }
      });
      let after = 0;
      for (;;) {
        const rows = translateDriverErrors(() => list.all(after)) as Array<{ k: number; n: number }>;
        if (rows.length === 0) break;
        let batch: number[] = [];
        let bytes = 0;
        for (const { k, n } of rows) {
          if (batch.length > 0 && (batch.length >= BATCH_ROWS || bytes + n > BATCH_BYTES)) {
            translateDriverErrors(() => rewriteBatch.immediate(batch));
            batch = [];
            bytes = 0;
          }
          batch.push(k);
          bytes += n;
        }
        translateDriverErrors(() => rewriteBatch.immediate(batch));
        after = rows[rows.length - 1]!.k;
      }
    }
    if (transformChunk) {
      const count = { scanned: 0, rewritten: 0 };
      this.chunks.rewrite(transformChunk, count, translateDriverErrors);
      scanned += count.scanned;
      rewritten += count.rewritten;
    }
    if (transformSecret) {
      const secrets = this.db.prepare('SELECT id, aws_secret FROM principals WHERE aws_secret IS NOT NULL ORDER BY id');
      const updateSecret = this.db.prepare('UPDATE principals SET aws_secret = ? WHERE id = ?');
      translateDriverErrors(() =>
        this.db
          .transaction(() => {
            for (const p of secrets.all() as Array<{ id: string; aws_secret: string }>) {
              scanned++;
              const next = transformSecret(p.aws_secret);
              if (next !== null) updateSecret.run(next, p.id), rewritten++;
            }
          })
          .immediate(),
      );
    }
    return { scanned, rewritten };
  }

  /** Writes the WAL back and rebuilds the file, so that free pages keep no old bytes (after a rekey). */
  async compact(): Promise<void> {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    // VACUUM builds the new database in a temporary one first: on disk, not in memory, whatever its size.
    this.db.pragma(`temp_store = ${TEMP_STORE_FILE}`);
    try {
      this.db.exec('VACUUM');
    } finally {
      this.db.pragma(`temp_store = ${TEMP_STORE_MEMORY}`);
    }
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  async createBucket(bucket: BucketRecord): Promise<boolean> {
    return translateDriverErrors(() => this.stmt.insertBucket.run(bucket).changes === 1);
  }

  async getBucket(name: string): Promise<BucketRecord | null> {
    await this.wal.settled();
    return mapBucket(this.stmt.bucket.get(name) as Row | undefined);
  }

  async listBuckets(): Promise<BucketRecord[]> {
    await this.wal.settled();
    return (this.stmt.buckets.all() as Row[]).map((r) => mapBucket(r)!);
  }

  async deleteBucket(name: string): Promise<boolean> {
    return translateDriverErrors(() => this.stmt.deleteBucket.run(name).changes === 1);
  }

  async createLockTable(table: LockTableRecord): Promise<boolean> {
    return translateDriverErrors(() => this.stmt.insertTable.run(table.name, JSON.stringify(table.definition), table.createdAt).changes === 1);
  }

  async getLockTable(name: string): Promise<LockTableRecord | null> {
    await this.wal.settled();
    return mapLockTable(this.stmt.table.get(name) as Row | undefined);
  }

  async listLockTables(): Promise<LockTableRecord[]> {
    await this.wal.settled();
    return (this.stmt.tables.all() as Row[]).map((r) => mapLockTable(r)!);
  }

  async deleteLockTable(name: string): Promise<boolean> {
    return translateDriverErrors(() => this.stmt.deleteTable.run(name).changes === 1);
  }

  async createUpload(upload: UploadRecord): Promise<void> {
    translateDriverErrors(() => this.stmt.insertUpload.run(upload));
  }

  async getUpload(id: string): Promise<UploadRecord | null> {
    await this.wal.settled();
    return mapUpload(this.stmt.upload.get(id) as Row | undefined);
  }

  async putPart(uploadId: string, partNumber: number, body: Buffer, md5: string): Promise<void> {
    this.reserve.assertRoomFor(body.length);
    translateDriverErrors(() => this.stmt.putPart.run(uploadId, partNumber, md5, body.length, body));
    if (this.bodyBytesWritten(body.length)) this.checkpointSoon();
  }

  async listParts(uploadId: string): Promise<PartRecord[]> {
    await this.wal.settled();
    return (this.stmt.parts.all(uploadId) as Row[]).map(mapPart);
  }

  async readPart(uploadId: string, partNumber: number): Promise<Buffer | null> {
    await this.wal.settled();
    return ((this.stmt.part.get(uploadId, partNumber) as Row | undefined)?.body as Buffer | undefined) ?? null;
  }

  async deleteUpload(id: string): Promise<boolean> {
    return translateDriverErrors(() => this.stmt.deleteUpload.run(id).changes === 1);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.batches.drain(); // updates already queued commit (or fail) before the connection goes
    this.closed = true;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.keyIndexes.close();
    await this.wal.close().catch(() => undefined); // their callers answered (or refused) before the connection goes
    this.reserve.close();
    this.db.close();
  }
}

/**
 * Driver errors become domain errors here, once: a database that stays busy or locked past
 * busy_timeout, or an I/O error, is a 503 the client may retry; a full disk is 507; anything else is a
 * bug and stays as is.
 */
function translateDriverErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw translateDriverError(err);
  }
}

function translateDriverError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^SQLITE_FULL/.test(code)) return new StatelockError('STORE_FULL', { reason: code });
  if (typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|IOERR)/.test(code)) return new StatelockError('STORE_UNAVAILABLE', { reason: code });
  return err;
}

/** Updates in one group commit at most, and the state-body bytes after which a batch takes no more. */
const GROUP_COMMIT_MAX_OPS = 1000;
/**
 * Body bytes in the WAL that call for a checkpoint of their own (see bodyBytesWritten): a quarter of what SQLite's
 * auto-checkpoint lets the WAL hold (1,000 pages of 4 KiB), which the disk reserve already makes room for.
 */
export const CHECKPOINT_AFTER_BODY_BYTES = 1024 * 1024;

/** How long stored chunks may wait in the WAL for the version commit (and its checkpoint) before they are checkpointed alone. */
const CHUNK_CHECKPOINT_DELAY_MS = 20;
const GROUP_COMMIT_MAX_BODY_BYTES = 64 * 1024 * 1024;

export interface SqliteStoreOptions {
  /**
   * Disk space kept for lock traffic (see disk-reserve.ts): 'auto' (the server's default) is 1/8 of the
   * file system, at most 64 MiB; 0 or absent (tools, tests) keeps none.
   */
  diskReserveBytes?: number | 'auto';
  /** Told when the disk reserve is released for lock traffic, restored, or cannot be created. */
  onDiskReserve?: DiskReserveOptions['onEvent'];
  /** The WAL's fdatasync calls (tests hold or fail them; the default is node:fs). */
  walIo?: WalSyncIo;
  /** When the audit's and released lock IDs' by-key indexes catch up (deferred-key-indexes.ts; tests set it). */
  keyIndexCatchUp?: CatchUpWhen;
}

/**
 * Bytes of state body the changes write: a version's or a fenced write's body — or, for a body stored
 * as chunks beforehand, at least 1, so that it counts as a state write (refused on a full disk).
 */
function bodyBytesOf(changes: Changes): number {
  let n = 0;
  for (const b of [changes.newVersion, changes.rejectedWrite]) {
    if (!b) continue;
    if ('body' in b && Buffer.isBuffer(b.body)) n += b.body.length;
    if ('chunks' in b && Array.isArray(b.chunks)) n += 1;
  }
  return n;
}

/** A snapshot field not read yet. */
const NOT_READ = Symbol('not read');
type Lazy<V> = V | typeof NOT_READ;

/**
 * The snapshot a rule sees, read lazily: a LOCK's rule reads only the lock, so the version queries are
 * never run for it. Each field is read at most once, inside the update's transaction; `seal()` (called
 * when the rule returns) makes a first read after that fail loudly instead of reading outside the
 * transaction (`readAll()` first when the snapshot itself leaves the transaction as a result). A class, not
 * an object of closures: one is made for every LOCK and UNLOCK.
 */
class LazySnapshot implements KeySnapshot {
  private sealed = false;
  private currentRead: Lazy<VersionMeta | null> = NOT_READ;
  private highestSerialRead: Lazy<number> = NOT_READ;
  private releasedRead: Lazy<boolean> = NOT_READ;
  private lockRead: Lazy<LockRecord | null> = NOT_READ;
  private versionCountRead: Lazy<number> = NOT_READ;

  constructor(
    private readonly stmt: ReturnType<SqliteStore['prepare']>,
    private readonly keyIndexes: DeferredKeyIndexes,
    readonly key: string,
    private readonly probeLockId: string | null,
  ) {}

  get current(): VersionMeta | null {
    if (this.currentRead === NOT_READ) {
      this.assertOpen('current');
      this.currentRead = mapVersion(this.stmt.current.get(this.key) as Row | undefined);
    }
    return this.currentRead;
  }

  get highestSerial(): number {
    if (this.highestSerialRead === NOT_READ) {
      this.assertOpen('highestSerial');
      const c = this.current;
      this.highestSerialRead = c ? ((this.stmt.highestSerial.get(this.key, c.lineage) as { s: number | null }).s ?? 0) : 0;
    }
    return this.highestSerialRead;
  }

  get probedLockIdReleased(): boolean {
    if (this.releasedRead === NOT_READ) {
      this.assertOpen('probedLockIdReleased');
      this.releasedRead = this.probeLockId ? this.keyIndexes.isReleased(this.key, this.probeLockId) : false;
    }
    return this.releasedRead;
  }

  get lock(): LockRecord | null {
    if (this.lockRead === NOT_READ) {
      this.assertOpen('lock');
      const lock = mapLock(this.stmt.lockOnly.get(this.key) as Row | undefined);
      if (lock?.sessionId) {
        const session = this.stmt.session.get(lock.sessionId) as Row | undefined;
        lock.session = session ? mapSession(session, '') : null;
      }
      this.lockRead = lock;
    }
    return this.lockRead;
  }

  get versionCount(): number {
    if (this.versionCountRead === NOT_READ) {
      this.assertOpen('versionCount');
      this.versionCountRead = ((this.stmt.stateRow.get(this.key) as Row | undefined)?.version_count as number | undefined) ?? 0;
    }
    return this.versionCountRead;
  }

  /** Reads every field now (before the snapshot itself leaves the transaction). */
  readAll(): void {
    void [this.current, this.highestSerial, this.probedLockIdReleased, this.lock, this.versionCount];
  }

  seal(): void {
    this.sealed = true;
  }

  /** The lock's ID if the lock was read (null: there was none), undefined if it was not read. */
  lockIdIfRead(): string | null | undefined {
    return this.lockRead === NOT_READ ? undefined : (this.lockRead?.id ?? null);
  }

  /** A first read after the transaction ended would read outside it: refused loudly. */
  private assertOpen(field: string): void {
    if (this.sealed) throw new Error(`KeySnapshot.${field} read after its transaction ended`);
  }
}

/** A page of audit entries from `limit + 1` rows (the extra one says there is a next page). */
function auditPage(rows: Row[], limit: number): Page<AuditEntry> {
  const items = rows.slice(0, limit).map(mapAudit);
  return { items, next: rows.length > limit ? String(items[items.length - 1]!.id) : null };
}

function migrate(db: Database.Database): void {
  const applied = db.pragma('user_version', { simple: true }) as number;
  for (let i = applied; i < SQLITE_MIGRATIONS.length; i++) {
    db.transaction(() => {
      db.exec(SQLITE_MIGRATIONS[i]!);
      db.pragma(`user_version = ${i + 1}`);
    }).immediate();
  }
}

function keyRange(column: string, prefix?: string, after?: string): { where: string; params: unknown[] } {
  const conditions = ['1 = 1'];
  const params: unknown[] = [];
  if (prefix) {
    conditions.push(`${column} >= ?`);
    params.push(prefix);
    const upper = prefixUpperBound(prefix);
    if (upper !== null) conditions.push(`${column} < ?`), params.push(upper);
  }
  if (after !== undefined) conditions.push(`${column} > ?`), params.push(after);
  return { where: conditions.join(' AND '), params };
}

