import type { AuditEntry } from '../../audit/audit-entry.js';
import type { LockRecord, StateSummary, VersionMeta } from '../../store/store.js';

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
  /** alive | dead | unknown. Without a session or wrapper evidence the server never guesses: unknown. */
  verdict: 'alive' | 'dead' | 'unknown';
  evidence: Record<string, unknown>;
}

export function lockJson(lock: LockRecord, now = Date.now()): LockJson {
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(lock.raw) as Record<string, unknown>;
  } catch {
    info = { ID: lock.id };
  }
  const secondsSince = (iso: string) => Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return {
    key: lock.key,
    info,
    acquiredAt: lock.acquiredAt,
    ageSeconds: secondsSince(lock.acquiredAt),
    lastActivityAt: lock.lastActivityAt,
    clientAddr: lock.clientAddr,
    userAgent: lock.userAgent,
    verdict: 'unknown',
    evidence: { reason: 'no session: the holder sends no heartbeat', lastActivitySeconds: secondsSince(lock.lastActivityAt) },
  };
}

export interface VersionJson {
  seq: number;
  serial: number;
  lineage: string;
  md5: string;
  sha256: string;
  size: number;
  createdAt: string;
  lockId: string | null;
  operation: string | null;
  encrypted: boolean;
  forced: string | null;
  clientAddr: string;
}

export function versionJson(v: VersionMeta): VersionJson {
  return {
    seq: v.seq,
    serial: v.serial,
    lineage: v.lineage,
    md5: v.md5,
    sha256: v.sha256,
    size: v.size,
    createdAt: v.createdAt,
    lockId: v.lockId,
    operation: v.operation,
    encrypted: v.encrypted,
    forced: v.forced,
    clientAddr: v.clientAddr,
  };
}

export function stateSummaryJson(s: StateSummary) {
  return { key: s.key, serial: s.current.serial, lineage: s.current.lineage, size: s.current.size, updatedAt: s.current.createdAt, versions: s.versionCount, locked: s.locked };
}

export function auditJson(a: AuditEntry) {
  return a;
}
