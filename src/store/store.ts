import * as crypto from 'node:crypto';
import type { AuditAction, AuditEntry, ClientContext, NewAuditEntry } from '../audit/audit-entry.js';
import type { StatelockError } from '../server/errors.js';
import type { ForcedReason } from '../state/write-rules.js';

/** One stored version of a state. `seq` numbers a key's versions 1, 2, 3 … in write order. */
export interface VersionMeta {
  key: string;
  seq: number;
  serial: number;
  lineage: string;
  md5: string;
  sha256: string;
  size: number;
  encrypted: boolean;
  createdAt: string;
  lockId: string | null;
  operation: string | null;
  clientAddr: string;
  /** Set when this write overwrote a version the consistency rules would have protected. */
  forced: ForcedReason | null;
}

/**
 * A lease held by `statelock run` for the Terraform process it wraps: renewed by heartbeats, ended by
 * the wrapper when its child exits. A lock taken with `?session=` is bound to it.
 */
export interface SessionRecord {
  id: string;
  key: string;
  ttlMs: number;
  createdAt: string;
  expiresAt: string;
  lastHeartbeatAt: string;
  endedAt: string | null;
  endReason: string | null;
  clientAddr: string;
  userAgent: string;
  holder: Record<string, unknown>;
  ci: Record<string, string>;
}

/** A write refused because it carried a lock ID that had been released: kept so the work is never silently lost. */
export interface RejectedWrite {
  id: number;
  key: string;
  lockId: string;
  at: string;
  serial: number;
  lineage: string;
  size: number;
  sha256: string;
  reason: string;
  clientAddr: string;
}

/**
 * The doors through which a lock is held. The http backend and the API hold a lock as a whole. Terraform
 * and OpenTofu may lock one state through two AWS doors at once (`use_lockfile` and `dynamodb_table`),
 * as two separate objects on real AWS: each door's hold is released on its own, and the lock is free when
 * no hold remains.
 */
export type LockDoor = 'http' | 's3' | 'dynamodb';

/** A held lock: the client's lock info verbatim plus what the server observed. */
export interface LockRecord {
  key: string;
  id: string;
  operation: string;
  who: string;
  version: string;
  created: string | null;
  info: string;
  path: string;
  raw: string;
  acquiredAt: string;
  lastActivityAt: string;
  clientAddr: string;
  userAgent: string;
  sessionId: string | null;
  /** The doors holding it (at least one), in the order they acquired it. */
  holds: LockDoor[];
  /** The bound session, joined on read (never written through the lock). */
  session?: SessionRecord | null;
}

/** What a use case's rule sees: the key's live current version (null when empty or deleted) and its lock. */
export interface KeySnapshot {
  key: string;
  current: VersionMeta | null;
  lock: LockRecord | null;
  /** How many versions the key has ever had (deleted keys keep theirs): the next version's seq is this + 1. */
  versionCount: number;
  /** The highest serial among the key's versions with the current lineage (0 without a current version). */
  highestSerial: number;
  /** Whether the lock ID passed as `probeLockId` to update was once held on this key and released (fencing). */
  probedLockIdReleased: boolean;
}

/**
 * Bodies are stored as content-addressed chunks (docs/storage.md). A chunk is a run of a body's plaintext
 * bytes cut by the content-defined chunker (src/store/content/), named by {@link Store.chunkId} of those
 * bytes; `size` is the plaintext length. A body is the ordered list of its chunks (its manifest): versions
 * that share content share chunks, and each chunk is stored once.
 */
export interface ChunkRef {
  id: string;
  size: number;
}

/**
 * How a chunk's data encodes its plaintext: as it is, or zlib raw deflate (used only when smaller). The
 * `sealed-` forms are written only by the EncryptedStore (sealed after encoding) and opened by it on the way
 * out, so the content layer only ever sees `raw` and `deflate`; engines store the codec as text, opaquely.
 * (Sealing is recorded here rather than guessed from the data: a chunk's plaintext may start with anything.)
 */
export type ChunkCodec = 'raw' | 'deflate' | 'sealed-raw' | 'sealed-deflate';

/**
 * A chunk as the engine keeps it: `data` is the plaintext encoded by `codec` — and, with encryption at
 * rest, sealed by the EncryptedStore after compression. Engines store `data` opaquely.
 */
export interface StoredChunk extends ChunkRef {
  codec: ChunkCodec;
  data: Buffer;
}

/**
 * A body as a read returns it: the manifest (chunk refs in order; their sizes add up to the body's size),
 * or, for rows written before bodies were chunked (legacy rows), the whole stored bytes. Read the bytes
 * with src/store/content/body-reader.ts, which handles both.
 */
export type BodyContent = { kind: 'chunks'; chunks: ChunkRef[] } | { kind: 'whole'; body: Buffer };

/** A new version: its metadata and its manifest. Every chunk it names must have been stored with putChunks. */
export interface NewVersion extends Omit<VersionMeta, 'key'> {
  chunks: ChunkRef[];
}

/** What a decision writes, all in the transaction that read the snapshot. */
export interface Changes {
  newVersion?: NewVersion;
  /** Set (acquire), clear (release) or touch (record activity on) the key's lock. */
  lock?: { set: LockRecord } | { clear: true } | { touch: string; holds?: LockDoor[] };
  /** Soft delete: the key leaves reads and listings; its versions stay. */
  deleteState?: boolean;
  /** Keep a refused write's body (fencing): its manifest, as for a new version. */
  rejectedWrite?: Omit<RejectedWrite, 'id' | 'key' | 'at'> & { chunks: ChunkRef[] };
  /** End a session (its holder is known dead). */
  endSession?: { id: string; reason: string };
  audit?: NewAuditEntry[];
}

/**
 * Changes that write nothing at all: every field absent, false or an empty list. Derived from the fields
 * themselves, so a kind of change added to Changes later counts as a write without this being touched.
 */
export function writesNothing(c: Changes): boolean {
  return Object.values(c).every((v) => v === undefined || v === false || (Array.isArray(v) && v.length === 0));
}

/**
 * A rule's verdict. With `error`, the changes (usually an audit entry) are still committed and then
 * the error is thrown to the caller.
 */
export type Decision<T> = { result: T; changes: Changes } | { error: StatelockError; changes: Changes };

/**
 * putChunks may leave an existing chunk's stamp alone while it is younger than this; a write in flight
 * whose chunk was already stored therefore holds a stamp at most this old, plus its own duration.
 */
export const CHUNK_RESTAMP_MS = 60 * 60 * 1000;

/**
 * How old an unreferenced chunk must be before sweeping it: far longer than CHUNK_RESTAMP_MS plus the
 * longest request (--request-timeout), so a write in flight never loses a chunk it is about to name.
 */
export const CHUNK_SWEEP_GRACE_MS = 24 * 60 * 60 * 1000;

/** The engines' chunk id: SHA-256 of the plaintext, lower-case hex (one-shot crypto.hash where Node has it, 20.12+: cheaper per chunk). */
export function sha256ChunkId(plain: Buffer): string {
  return typeof crypto.hash === 'function' ? crypto.hash('sha256', plain, 'hex') : crypto.createHash('sha256').update(plain).digest('hex');
}

export interface Page<T> {
  items: T[];
  /** Pass as `after` to get the next page; null on the last page. */
  next: string | null;
}

export interface StateSummary {
  key: string;
  current: VersionMeta;
  versionCount: number;
  locked: boolean;
}

/** An S3 bucket made with CreateBucket. A bucket also exists, implicitly, while live states have keys under `<name>/`. */
export interface BucketRecord {
  name: string;
  region: string;
  createdAt: string;
}

/** A DynamoDB table made with CreateTable: a named view of statelock's locks (and state digests). */
export interface LockTableRecord {
  name: string;
  /** The CreateTable request's KeySchema, AttributeDefinitions and BillingMode, as given. */
  definition: Record<string, unknown>;
  createdAt: string;
}

/** An S3 multipart upload in progress: the parts are kept until CompleteMultipartUpload writes one version. */
export interface UploadRecord {
  id: string;
  key: string;
  contentType: string;
  createdAt: string;
  clientAddr: string;
}

export interface PartRecord {
  uploadId: string;
  partNumber: number;
  /** Hex MD5 of the part: its ETag without quotes. */
  md5: string;
  size: number;
}

/**
 * Someone who may use statelock: a token (only its hash is kept) with grants, and optionally an AWS access
 * key pair for the S3/DynamoDB/STS doors (the secret itself is kept: SigV4 verification needs it).
 */
export interface PrincipalRecord {
  id: string;
  name: string;
  /** Hex SHA-256 of the token's secret part. */
  tokenHash: string;
  /** `glob:perm,perm` texts (see src/auth/permissions.ts). */
  grants: string[];
  awsAccessKeyId: string | null;
  awsSecret: string | null;
  createdAt: string;
  revokedAt: string | null;
}

export interface AuditQuery {
  key?: string;
  since?: string;
  action?: AuditAction;
  /** Oldest first (the default): entries with an id above `after`. */
  after?: number;
  /** Newest first: entries with an id below `before` (all when absent); `next` is then the cursor for `before`. */
  newestFirst?: boolean;
  before?: number;
  limit: number;
}

export interface UpdateOptions<T> {
  /** A lock ID whose release on this key the snapshot should tell (KeySnapshot.probedLockIdReleased). */
  probeLockId?: string | null;
  /**
   * Engines that commit several updates together (SQLite's group commit) call this synchronously once this
   * update's changes are applied, inside its transaction, with its result (not for a refusal); an update
   * started from it joins the same transaction and COMMIT, ordered after this one. The lock service hands a
   * released lock to the next waiter this way: one commit for the release and the grant, both answered after
   * it. Engines that commit each update on its own (PostgreSQL) never call it: the caller acts after commit.
   */
  applied?: (result: T) => void;
  /**
   * The caller expects a refusal (a LOCK retried with an ID already refused on this key). An engine whose update
   * waits for the key's write lock over the network (PostgreSQL) may first run `decide` on a committed
   * snapshot read without that lock, and answer at once when the decision writes nothing: a refusal is as true
   * of a committed snapshot as of a locked one, and it then never queues on the key ahead of the holder's
   * UNLOCK. A decision that writes is thrown away and taken again under the lock, so `decide` may run twice.
   * Engines that lock in process (SQLite) may ignore it.
   */
  readFirst?: boolean;
}

/**
 * The storage contract every engine meets (test/store-conformance.test.ts runs it against each).
 *
 * Concurrency: {@link Store.update} is the only write path. It runs `decide` inside one transaction
 * that first reads the key's snapshot with a write lock on it (SQLite `BEGIN IMMEDIATE`, PostgreSQL
 * the key's transaction-scoped advisory lock), then writes what `decide` returned and commits — so two
 * callers, even in two server processes, can never both act on the same snapshot. (With
 * {@link UpdateOptions.readFirst} a decision that writes nothing may come from a committed snapshot read
 * without that lock; anything that writes still goes through it.) `decide` must be pure and synchronous.
 * Reads see committed data only.
 *
 * Durability: when `update` resolves, its changes survive a crash of the process or the machine.
 * Bodies: a body is written in two steps — its chunks with {@link Store.putChunks} (outside `update`,
 * while the request streams in), then the version or rejected write naming them, inside `update`. The
 * engine checks in that transaction that every named chunk is stored (CHUNK_GONE, nothing committed,
 * otherwise: a rekey re-filed it or the sweep took it after the ingest found it): no committed row ever
 * names a missing chunk. Chunks nobody names (a refused or failed write's) are removed later by
 * {@link Store.sweepChunks}.
 * Errors: driver failures are rethrown as-is (the server answers 500/503); rule refusals travel as
 * the Decision's `error`.
 */
export interface Store {
  readonly engine: string;
  /**
   * Whenever a change clears or replaces a held lock, the store records the old lock ID as released on
   * the key, in the same transaction (so fencing can never miss one).
   */
  update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, opts?: UpdateOptions<T>): Promise<T>;

  /** The live current version and its content (manifest), or null when the key is empty or deleted. */
  readCurrent(key: string): Promise<{ meta: VersionMeta; content: BodyContent } | null>;
  /** A specific version by seq, or the newest version with that serial. Deleted keys' versions stay readable. */
  readVersion(key: string, which: { seq: number } | { serial: number }): Promise<{ meta: VersionMeta; content: BodyContent } | null>;
  /** All versions of a key, oldest first, paginated by seq. */
  listVersions(key: string, opts: { after?: number; limit: number }): Promise<Page<VersionMeta>>;
  /** Live states whose key starts with `prefix`, ordered by key, paginated by key. */
  listStates(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<StateSummary>>;

  getLock(key: string): Promise<LockRecord | null>;
  listLocks(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<LockRecord>>;
  countLocks(): Promise<number>;
  /** How many live states have keys starting with `prefix` (all of them without one). */
  countStates(prefix?: string): Promise<number>;

  listAudit(query: AuditQuery): Promise<Page<AuditEntry>>;
  /** How many audit entries with one of `actions` were written at or after `since` (ISO time). */
  countAudit(query: { since: string; actions: readonly AuditAction[] }): Promise<number>;

  createSession(session: SessionRecord): Promise<void>;
  /** Moves a live session's lease forward; null when there is no such session, unchanged when it ended. */
  renewSession(id: string, expiresAt: string, at: string): Promise<SessionRecord | null>;
  getSession(id: string): Promise<SessionRecord | null>;

  listRejected(key: string, opts: { after?: number; limit: number }): Promise<Page<RejectedWrite>>;
  readRejected(key: string, id: number): Promise<{ meta: RejectedWrite; content: BodyContent } | null>;

  /**
   * The id under which this store files a plaintext chunk. Engines: the SHA-256 of the bytes, lower-case
   * hex (`sha256ChunkId`). The EncryptedStore, with keys: an HMAC-SHA256 under a key derived from the
   * newest encryption key, so that the database alone cannot confirm a guessed chunk (docs/storage.md).
   * Equal ids mean equal plaintext; that is all dedup relies on.
   */
  chunkId(plain: Buffer): string;
  /**
   * Stores chunks before the version (or rejected write) that names them is committed. Idempotent: an id
   * already present keeps its data (equal ids are equal plaintext), but its stamp moves forward (an engine
   * may skip that when the stamp is less than CHUNK_RESTAMP_MS old), so that sweepChunks cannot take it
   * from under the write about to reference it. Each call is one transaction; it need not be durable by
   * itself: it is durable once the next update on the same engine has committed (SQLite's WAL and
   * PostgreSQL's WAL are both written in commit order). The single place where a body write starts (the
   * SQLite engine's disk-space check goes there).
   */
  putChunks(chunks: StoredChunk[]): Promise<void>;
  /**
   * Which of these ids are already stored — each one returned is restamped exactly as putChunks would
   * restamp it, so it is as safe from the sweep as a chunk just put. The ingest asks before compressing a
   * batch and puts only the others: an unchanged chunk costs a hash and an index lookup, not a deflate.
   */
  presentChunks(ids: readonly string[]): Promise<Set<string>>;
  /**
   * The chunks with these ids, in the order asked (an id asked twice comes back twice).
   * @throws StatelockError CHUNK_MISSING when any id is not stored: never skipped silently.
   */
  getChunks(ids: readonly string[]): Promise<StoredChunk[]>;
  /**
   * Deletes every chunk that no version and no rejected write references and whose stamp is before
   * `olderThan` (ISO time); returns how many. Chunks of a write in flight were stamped by its putChunks,
   * so a caller passing `now - CHUNK_SWEEP_GRACE_MS` (or earlier) never takes them. Safe beside running
   * servers: each batch is one transaction that re-checks the references it deletes by.
   */
  sweepChunks(olderThan: string): Promise<number>;
  /** How many chunks are stored and the bytes of their data (as stored: compressed, sealed). */
  chunkStats(): Promise<{ chunks: number; storedBytes: number }>;

  /** Creates a principal and writes its audit entry in one transaction; false when a live principal has that name. */
  createPrincipal(principal: PrincipalRecord, audit: NewAuditEntry, client: ClientContext): Promise<boolean>;
  getPrincipal(id: string): Promise<PrincipalRecord | null>;
  /** The live principal owning an AWS access key ID. */
  getPrincipalByAccessKey(accessKeyId: string): Promise<PrincipalRecord | null>;
  /** All principals, revoked ones included, oldest first. */
  listPrincipals(): Promise<PrincipalRecord[]>;
  /** Revokes a live principal and audits it in one transaction; null when there is no live principal of that name. */
  revokePrincipal(name: string, at: string, audit: NewAuditEntry, client: ClientContext): Promise<PrincipalRecord | null>;
  countLivePrincipals(): Promise<number>;

  /**
   * Re-keying: passes every stored whole body (legacy version rows, legacy rejected writes, multipart parts)
   * to `transform`, every chunk to `transformChunk`, and every principal's AWS secret to `transformSecret`,
   * and stores what they return in place (null: leave it); metadata (sizes, digests) is untouched. A chunk
   * returned under another id is re-filed: every reference to the old id (versions, rejected writes) moves
   * to the new one in the same transaction, and the old id is gone; when the new id is already stored, that
   * row is kept and the returned data dropped (equal ids, equal plaintext). Batches of bounded size, each its
   * own transaction, which reads the rows it rewrites: so it is safe beside running servers and beside
   * another rewrite (each row is transformed from its latest committed bytes, never from a stale copy), and
   * readers see a body whole, before or after. Counts what was offered (`scanned`) and what was written back
   * (`rewritten`).
   */
  rewriteBodies(
    transform: (body: Buffer) => Buffer | null,
    transformSecret?: (text: string) => string | null,
    transformChunk?: (chunk: StoredChunk) => StoredChunk | null,
  ): Promise<{ scanned: number; rewritten: number }>;

  /** false when a bucket of that name already exists. */
  createBucket(bucket: BucketRecord): Promise<boolean>;
  getBucket(name: string): Promise<BucketRecord | null>;
  listBuckets(): Promise<BucketRecord[]>;
  /** false when there was no such bucket record. */
  deleteBucket(name: string): Promise<boolean>;

  /** false when a table of that name already exists. */
  createLockTable(table: LockTableRecord): Promise<boolean>;
  getLockTable(name: string): Promise<LockTableRecord | null>;
  listLockTables(): Promise<LockTableRecord[]>;
  deleteLockTable(name: string): Promise<boolean>;

  createUpload(upload: UploadRecord): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | null>;
  /** Stores (or replaces) one part of an upload. */
  putPart(uploadId: string, partNumber: number, body: Buffer, md5: string): Promise<void>;
  listParts(uploadId: string): Promise<PartRecord[]>;
  readPart(uploadId: string, partNumber: number): Promise<Buffer | null>;
  /** Removes an upload and its parts; false when there was none. */
  deleteUpload(id: string): Promise<boolean>;

  /**
   * Capability of engines shared by several server processes: `listener` is called with a key whenever
   * a lock on it is released or replaced by any process, so waiters there wake (PostgreSQL: NOTIFY).
   * Single-process engines leave it out; the lock service wakes its own waiters.
   */
  onLockReleased?(listener: (key: string) => void): void;

  /** Finishes pending work and releases the database. Idempotent. */
  close(): Promise<void>;
}
