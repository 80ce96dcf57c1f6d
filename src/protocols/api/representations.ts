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
}

export function stateSummaryJson(s: StateSummary): StateSummaryJson {
  return { key: s.key, serial: s.current.serial, lineage: s.current.lineage, size: s.current.size, updatedAt: s.current.createdAt, versions: s.versionCount, locked: s.locked };
}

export function auditJson(a: AuditEntry) {
  return a;
}
