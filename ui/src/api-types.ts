/** The JSON the server answers with (src/protocols/api/representations.ts, src/state/state-diff.ts, docs/dashboard.md). */

export type Verdict = 'alive' | 'dead' | 'unknown';

export interface WhoAmI {
  authRequired: boolean;
  signedIn: boolean;
  name: string | null;
  grants: string[];
  csrf: string | null;
}

export interface LoginAnswer {
  name: string;
  grants: string[];
  csrf: string;
}

export interface Page<T> {
  items: T[];
  next: string | number | null;
}

export interface Overview {
  states: number;
  locks: { held: number; alive: number; dead: number; unknown: number; stale: number };
  last24h: { conflicts: number; forcedUnlocks: number; writes: number; restores: number };
}

export interface StateSummary {
  key: string;
  serial: number;
  lineage: string;
  size: number;
  updatedAt: string;
  versions: number;
  locked: boolean;
  seq: number;
  writer: string;
}

export interface StatePage extends Page<StateSummary> {
  total?: number | null;
}

export interface Version {
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
  forced: string | null;
  /** With `resources=true`: resource instances, null when the body is not a readable state. */
  resources?: number | null;
}

export interface Lock {
  key: string;
  info: Record<string, unknown>;
  acquiredAt: string;
  ageSeconds: number;
  lastActivityAt: string;
  clientAddr: string;
  userAgent: string;
  sessionId: string | null;
  holds: string[];
  verdict: Verdict;
  evidence: Record<string, unknown>;
  idleSeconds: number;
  stale: boolean;
  waiters?: number;
}

export interface StateDetail {
  key: string;
  current: Version;
  versions: number;
  lock: Lock | null;
}

export interface ResourceChange {
  address: string;
  change: 'added' | 'removed' | 'changed';
  attributes?: string[];
  values?: Record<string, { before: unknown; after: unknown }>;
}

export interface OutputChange {
  name: string;
  change: 'added' | 'removed' | 'changed';
  sensitive: boolean;
  before?: unknown;
  after?: unknown;
}

export interface Diff {
  key: string;
  from: Version | null;
  to: Version;
  resources: ResourceChange[];
  outputs: OutputChange[];
  summary: { added: number; removed: number; changed: number };
}

export interface RestoreAnswer {
  restored: Version;
  replaced: { seq: number; serial: number } | null;
}

export interface UnlockAnswer {
  unlocked: string;
  previous: Lock | null;
}

export const AUDIT_ACTIONS = [
  'lock.acquire',
  'lock.release',
  'lock.conflict',
  'lock.force-unlock',
  'lock.auto-release',
  'state.write',
  'state.write.forced',
  'state.write.refused',
  'state.delete',
  'state.restore',
  'token.create',
  'token.revoke',
] as const;

export interface AuditEntry {
  id: number;
  at: string;
  action: string;
  key: string;
  lockId: string | null;
  outcome: 'ok' | 'refused';
  detail: Record<string, unknown>;
  clientAddr: string;
  userAgent: string;
  principal: string | null;
}
