/**
 * Is a lock's holder alive? Pure: the verdict is derived from evidence the server keeps, at read time.
 *
 * - `alive`: the lock is bound to a session whose lease is current (renewed by heartbeats).
 * - `dead`: the wrapper reported that its Terraform child exited, or the lease expired and nothing has
 *   used the lock ID since it expired.
 * - `unknown`: no session (plain Terraform sends no heartbeat), or a lease that expired while the lock
 *   kept being used (the wrapper died but its Terraform child may still be writing). Never `dead`
 *   without evidence.
 */
export type Verdict = 'alive' | 'dead' | 'unknown';

export interface SessionEvidence {
  id: string;
  expiresAt: string;
  lastHeartbeatAt: string;
  /** Set when the wrapper ended the session (its child exited): then the holder is known dead. */
  endedAt: string | null;
  endReason: string | null;
  ci: Record<string, string>;
}

export interface LockEvidence {
  lastActivityAt: string;
  session: SessionEvidence | null;
}

export interface LivenessJudgement {
  verdict: Verdict;
  /** Since when the verdict has been `dead` (for --release-dead-after), else null. */
  deadSince: string | null;
  evidence: Record<string, unknown>;
}

export function judgeLiveness(lock: LockEvidence, nowMs: number): LivenessJudgement {
  const seconds = (iso: string) => Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  const lastActivitySeconds = seconds(lock.lastActivityAt);
  const s = lock.session;
  if (!s) {
    return { verdict: 'unknown', deadSince: null, evidence: { reason: 'no session: the holder sends no heartbeat', lastActivitySeconds } };
  }
  const base = { session: s.id, lastHeartbeatSeconds: seconds(s.lastHeartbeatAt), lastActivitySeconds, ...(Object.keys(s.ci).length ? { ci: s.ci } : {}) };
  if (s.endedAt) {
    return { verdict: 'dead', deadSince: s.endedAt, evidence: { ...base, reason: s.endReason ?? 'the wrapper reported that its command exited', endedAt: s.endedAt } };
  }
  const expires = Date.parse(s.expiresAt);
  if (nowMs < expires) {
    return { verdict: 'alive', deadSince: null, evidence: { ...base, reason: `session lease is current (heartbeat ${base.lastHeartbeatSeconds}s ago)`, leaseExpiresAt: s.expiresAt } };
  }
  if (Date.parse(lock.lastActivityAt) > expires) {
    return {
      verdict: 'unknown',
      deadSince: null,
      evidence: { ...base, reason: 'the session lease expired, but the lock was used after it expired: the wrapper may have died while Terraform still runs', leaseExpiredAt: s.expiresAt },
    };
  }
  return { verdict: 'dead', deadSince: s.expiresAt, evidence: { ...base, reason: `the session lease expired ${seconds(s.expiresAt)}s ago and nothing has used the lock since`, leaseExpiredAt: s.expiresAt } };
}

/** A lock nobody has used for this long, whose holder is not known to be alive, is called stale. */
export const STALE_AFTER_SECONDS = 15 * 60;

/** Stale: the holder is not known alive and the lock has been idle for {@link STALE_AFTER_SECONDS} (dead locks are stale at once). Pure. */
export function isStale(verdict: Verdict, idleSeconds: number): boolean {
  return verdict === 'dead' || (verdict === 'unknown' && idleSeconds >= STALE_AFTER_SECONDS);
}
