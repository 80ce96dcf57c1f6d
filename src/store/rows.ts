import type { AuditEntry } from '../audit/audit-entry.js';
import type { ForcedReason } from '../state/write-rules.js';
import type { BucketRecord, LockRecord, LockTableRecord, PartRecord, PrincipalRecord, RejectedWrite, SessionRecord, UploadRecord, VersionMeta } from './store.js';

/**
 * Database rows → domain records, for every engine. Engines differ only in how values come back:
 * SQLite gives 0/1 for booleans, PostgreSQL gives strings for BIGINT; both are coerced here.
 */
export type Row = Record<string, unknown>;

const num = (v: unknown): number => Number(v);
const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';

export function mapVersion(r: Row | undefined): VersionMeta | null {
  if (!r) return null;
  return {
    key: r.key as string,
    seq: num(r.seq),
    serial: num(r.serial),
    lineage: r.lineage as string,
    md5: r.md5 as string,
    sha256: r.sha256 as string,
    size: num(r.size),
    encrypted: bool(r.encrypted),
    createdAt: r.created_at as string,
    lockId: (r.lock_id as string | null) ?? null,
    operation: (r.operation as string | null) ?? null,
    clientAddr: r.client_addr as string,
    forced: (r.forced as ForcedReason | null) ?? null,
  };
}

export function mapLock(r: Row | undefined): LockRecord | null {
  if (!r) return null;
  return {
    key: r.key as string,
    id: r.lock_id as string,
    operation: r.operation as string,
    who: r.who as string,
    version: r.version as string,
    created: (r.created as string | null) ?? null,
    info: r.info as string,
    path: r.path as string,
    raw: r.raw as string,
    acquiredAt: r.acquired_at as string,
    lastActivityAt: r.last_activity_at as string,
    clientAddr: r.client_addr as string,
    userAgent: r.user_agent as string,
    sessionId: (r.session_id as string | null) ?? null,
    holds: String(r.holds ?? 'http').split(',').filter(Boolean) as LockRecord['holds'],
    session: r.s_id ? mapSession(r, 's_') : null,
  };
}

/** A session row, from `sessions` itself (prefix '') or joined onto a lock (prefix 's_'). */
export function mapSession(r: Row, p: string): SessionRecord {
  return {
    id: r[`${p}id`] as string,
    key: r[`${p}key`] as string,
    ttlMs: num(r[`${p}ttl_ms`]),
    createdAt: r[`${p}created_at`] as string,
    expiresAt: r[`${p}expires_at`] as string,
    lastHeartbeatAt: r[`${p}last_heartbeat_at`] as string,
    endedAt: (r[`${p}ended_at`] as string | null) ?? null,
    endReason: (r[`${p}end_reason`] as string | null) ?? null,
    clientAddr: r[`${p}client_addr`] as string,
    userAgent: r[`${p}user_agent`] as string,
    holder: JSON.parse(r[`${p}holder`] as string) as Record<string, unknown>,
    ci: JSON.parse(r[`${p}ci`] as string) as Record<string, string>,
  };
}

export function mapRejected(r: Row): RejectedWrite {
  return {
    id: num(r.id),
    key: r.key as string,
    lockId: r.lock_id as string,
    at: r.at as string,
    serial: num(r.serial),
    lineage: r.lineage as string,
    size: num(r.size),
    sha256: r.sha256 as string,
    reason: r.reason as string,
    clientAddr: r.client_addr as string,
  };
}

export function mapAudit(r: Row): AuditEntry {
  return {
    id: num(r.id),
    at: r.at as string,
    action: r.action as AuditEntry['action'],
    key: r.key as string,
    lockId: (r.lock_id as string | null) ?? null,
    outcome: r.outcome as AuditEntry['outcome'],
    clientAddr: r.client_addr as string,
    userAgent: r.user_agent as string,
    principal: (r.principal as string | null) ?? null,
    detail: JSON.parse(r.detail as string) as Record<string, unknown>,
  };
}

export function mapBucket(r: Row | undefined): BucketRecord | null {
  return r ? { name: r.name as string, region: r.region as string, createdAt: r.created_at as string } : null;
}

export function mapLockTable(r: Row | undefined): LockTableRecord | null {
  return r ? { name: r.name as string, definition: JSON.parse(r.definition as string) as Record<string, unknown>, createdAt: r.created_at as string } : null;
}

export function mapUpload(r: Row | undefined): UploadRecord | null {
  return r ? { id: r.id as string, key: r.key as string, contentType: r.content_type as string, createdAt: r.created_at as string, clientAddr: r.client_addr as string } : null;
}

export function mapPart(r: Row): PartRecord {
  return { uploadId: r.upload_id as string, partNumber: num(r.part_number), md5: r.md5 as string, size: num(r.size) };
}

export function mapPrincipal(r: Row | undefined): PrincipalRecord | null {
  if (!r) return null;
  return {
    id: r.id as string,
    name: r.name as string,
    tokenHash: r.token_hash as string,
    grants: JSON.parse(r.grants as string) as string[],
    awsAccessKeyId: (r.aws_access_key_id as string | null) ?? null,
    awsSecret: (r.aws_secret as string | null) ?? null,
    createdAt: r.created_at as string,
    revokedAt: (r.revoked_at as string | null) ?? null,
  };
}
