/** Every change to a state or a lock, and every refused write, leaves one of these. */
export type AuditAction =
  | 'lock.acquire'
  | 'lock.release'
  | 'lock.conflict'
  | 'lock.force-unlock'
  | 'lock.auto-release'
  | 'state.write'
  | 'state.write.forced'
  | 'state.write.refused'
  | 'state.delete'
  | 'state.restore'
  | 'token.create'
  | 'token.revoke';

export interface ClientContext {
  addr: string;
  userAgent: string;
  principal: string | null;
}

export interface NewAuditEntry {
  action: AuditAction;
  key: string;
  lockId: string | null;
  outcome: 'ok' | 'refused';
  detail: Record<string, unknown>;
}

export interface AuditEntry extends NewAuditEntry {
  id: number;
  at: string;
  clientAddr: string;
  userAgent: string;
  principal: string | null;
}
