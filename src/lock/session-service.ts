import { randomUUID } from 'node:crypto';
import type { ClientContext } from '../audit/audit-entry.js';
import { StatelockError } from '../server/errors.js';
import type { SessionRecord, Store } from '../store/store.js';

/** Leases of `statelock run`: created, renewed by heartbeats, ended by the wrapper (LockService.endSession). */
export class SessionService {
  constructor(private readonly store: Store) {}

  /** @throws StatelockError INVALID_SESSION (400) */
  async create(request: { key: string; ttlSeconds: number; holder: Record<string, unknown>; ci: Record<string, string> }, client: ClientContext): Promise<SessionRecord> {
    if (!Number.isFinite(request.ttlSeconds) || request.ttlSeconds < 1 || request.ttlSeconds > 86_400) {
      throw new StatelockError('INVALID_SESSION', { reason: 'ttlSeconds must be between 1 and 86400' });
    }
    const now = Date.now();
    const session: SessionRecord = {
      id: randomUUID(),
      key: request.key,
      ttlMs: Math.round(request.ttlSeconds * 1000),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + request.ttlSeconds * 1000).toISOString(),
      lastHeartbeatAt: new Date(now).toISOString(),
      endedAt: null,
      endReason: null,
      clientAddr: client.addr,
      userAgent: client.userAgent,
      holder: request.holder,
      ci: request.ci,
    };
    await this.store.createSession(session);
    return session;
  }

  /** Renews the lease by its TTL. @throws StatelockError SESSION_NOT_FOUND (404), SESSION_ENDED (409) */
  async heartbeat(id: string): Promise<SessionRecord> {
    const existing = await this.get(id);
    if (existing.endedAt) throw new StatelockError('SESSION_ENDED', { session: id, reason: existing.endReason ?? 'ended' });
    const now = Date.now();
    const renewed = await this.store.renewSession(id, new Date(now + existing.ttlMs).toISOString(), new Date(now).toISOString());
    return renewed ?? existing;
  }

  /** @throws StatelockError SESSION_NOT_FOUND (404) */
  async get(id: string): Promise<SessionRecord> {
    const session = await this.store.getSession(id);
    if (!session) throw new StatelockError('SESSION_NOT_FOUND', { session: id });
    return session;
  }
}
