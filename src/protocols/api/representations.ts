import type { AuditEntry } from '../../audit/audit-entry.js';
import type { LockRecord, SessionRecord, StateSummary, VersionMeta } from '../../store/store.js';
import { judgeLock } from '../../lock/lock-service.js';
import { isStale } from '../../lock/liveness.js';

/**
 * The JSON shapes of the API (and so of the CLI's --json output). Stable interface: add fields, never
 * rename or remove them.
 */
export interface LockJson {
  key: string;
  /** The lock info exactly as the client sent it (ID, Operation, Info, Who, Version, Created, Path …). */
  info: Record<string, unknown>;
  acquiredAt: string;
  ageSeconds: number;
  lastActivityAt: string;
  clientAddr: string;
  userAgent: string;
  /** The `statelock run` session the lock is bound to, if any. */
  sessionId: string | null;
  /**
   * The doors holding it: `http` (the http backend and the API), `s3` (a `<key>.tflock` object), `dynamodb`
   * (a lock-table item). Terraform's double locking holds it through both AWS doors; each releases its own.
   */
  holds: string[];
  /** alive | dead | unknown. Without a session or wrapper evidence the server never guesses: unknown. */
  verdict: 'alive' | 'dead' | 'unknown';
  evidence: Record<string, unknown>;
  /** Seconds since anything (a LOCK, a write, a heartbeat's lock touch) used the lock. */
  idleSeconds: number;
  /** Not known to be alive and idle for 15 minutes or more, or dead (src/lock/liveness.ts isStale). */
  stale: boolean;
  /** LOCK requests waiting in line for this key (`?wait=`), on `GET /api/v1/locks/<key>`. */
  waiters?: number;
}

export function lockJson(lock: LockRecord, now = Date.now(), waiters?: number): LockJson {
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(lock.raw) as Record<string, unknown>;
  } catch {
    info = { ID: lock.id };
  }
  const secondsSince = (iso: string) => Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const { verdict, evidence } = judgeLock(lock, now);
  return {
    key: lock.key,
    info,
    acquiredAt: lock.acquiredAt,
    ageSeconds: secondsSince(lock.acquiredAt),
    lastActivityAt: lock.lastActivityAt,
    clientAddr: lock.clientAddr,
    userAgent: lock.userAgent,
    sessionId: lock.sessionId,
    holds: [...lock.holds],
    verdict,
    evidence,
    idleSeconds: secondsSince(lock.lastActivityAt),
    stale: isStale(verdict, secondsSince(lock.lastActivityAt)),
    ...(waiters !== undefined ? { waiters } : {}),
  };
}

export function sessionJson(s: SessionRecord) {
  return { id: s.id, key: s.key, ttlSeconds: s.ttlMs / 1000, createdAt: s.createdAt, expiresAt: s.expiresAt, lastHeartbeatAt: s.lastHeartbeatAt, endedAt: s.endedAt, endReason: s.endReason, holder: s.holder, ci: s.ci };
}

/** A version as the API shows it: everything stored about it but its key (the URL names the key). */
export type VersionJson = Omit<VersionMeta, 'key'>;

export function versionJson({ key: _key, ...rest }: VersionMeta): VersionJson {
  return rest;
}

/** A state in a listing. */
export interface StateSummaryJson {
  key: string;
  serial: number;
  lineage: string;
  size: number;
  updatedAt: string;
  versions: number;
  locked: boolean;
  /** The current version's seq. */
  seq: number;
  /** Who wrote the current version: the client address it came from. */
  writer: string;
}

export function stateSummaryJson(s: StateSummary): StateSummaryJson {
  return { key: s.key, serial: s.current.serial, lineage: s.current.lineage, size: s.current.size, updatedAt: s.current.createdAt, versions: s.versionCount, locked: s.locked, seq: s.current.seq, writer: s.current.clientAddr };
}

export function auditJson(a: AuditEntry) {
  return a;
}
