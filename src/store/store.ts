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
}

export interface NewVersion extends Omit<VersionMeta, 'key'> {
  body: Buffer;
}

/** What a decision writes, all in the transaction that read the snapshot. */
export interface Changes {
  newVersion?: NewVersion;
  /** Set (acquire), clear (release) or touch (record activity on) the key's lock. */
  lock?: { set: LockRecord } | { clear: true } | { touch: string };
  /** Soft delete: the key leaves reads and listings; its versions stay. */
  deleteState?: boolean;
  audit?: NewAuditEntry[];
}

/**
 * A rule's verdict. With `error`, the changes (usually an audit entry) are still committed and then
 * the error is thrown to the caller.
 */
export type Decision<T> = { result: T; changes: Changes } | { error: StatelockError; changes: Changes };

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

export interface AuditQuery {
  key?: string;
  since?: string;
  action?: AuditAction;
  after?: number;
  limit: number;
}

/**
 * The storage contract every engine meets (test/store-conformance.test.ts runs it against each).
 *
 * Concurrency: {@link Store.update} is the only write path. It runs `decide` inside one transaction
 * that first reads the key's snapshot with a write lock on it (SQLite `BEGIN IMMEDIATE`, PostgreSQL
 * `SELECT … FOR UPDATE`), then writes what `decide` returned and commits — so two callers, even in two
 * server processes, can never both act on the same snapshot. `decide` must be pure and synchronous.
 * Reads see committed data only.
 *
 * Durability: when `update` resolves, its changes survive a crash of the process or the machine.
 * Errors: driver failures are rethrown as-is (the server answers 500/503); rule refusals travel as
 * the Decision's `error`.
 */
export interface Store {
  readonly engine: string;
  update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>): Promise<T>;

  /** The live current version and its bytes, or null when the key is empty or deleted. */
  readCurrent(key: string): Promise<{ meta: VersionMeta; body: Buffer } | null>;
  /** A specific version by seq, or the newest version with that serial. Deleted keys' versions stay readable. */
  readVersion(key: string, which: { seq: number } | { serial: number }): Promise<{ meta: VersionMeta; body: Buffer } | null>;
  /** All versions of a key, oldest first, paginated by seq. */
  listVersions(key: string, opts: { after?: number; limit: number }): Promise<Page<VersionMeta>>;
  /** Live states whose key starts with `prefix`, ordered by key, paginated by key. */
  listStates(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<StateSummary>>;

  getLock(key: string): Promise<LockRecord | null>;
  listLocks(opts: { prefix?: string; after?: string; limit: number }): Promise<Page<LockRecord>>;
  countLocks(): Promise<number>;

  listAudit(query: AuditQuery): Promise<Page<AuditEntry>>;

  /** Finishes pending work and releases the database. Idempotent. */
  close(): Promise<void>;
}
