import type { ClientContext } from '../audit/audit-entry.js';
import type { Metrics } from '../server/metrics.js';
import { StatelockError } from '../server/errors.js';
import type { Decision, LockRecord, Store } from '../store/store.js';
import { isZeroValuedLockInfo, parseLockInfo } from './lock-info.js';
import { decideLock, decideUnlock, type UnlockRequest } from './lock-rules.js';

export type LockResult = { outcome: 'acquired' | 'reacquired'; lock: LockRecord };
export type UnlockResult = { outcome: 'released' | 'forced' | 'already-free'; previous: LockRecord | null };

/** Lock use cases. Each one is a single {@link Store.update} around a pure rule. */
export class LockService {
  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Takes the lock on `key` with the client's lock-info body, or fails at once with the holder.
   * The same ID asking again succeeds (a retried LOCK) and counts as activity.
   * @throws StatelockError INVALID_LOCK_INFO (400), STATE_LOCKED (423, carrying the holder's body).
   */
  async lock(key: string, body: Buffer, client: ClientContext): Promise<LockResult> {
    const info = parseLockInfo(body);
    try {
      const result = await this.store.update(key, client, (snap): Decision<LockResult> => {
        const decision = decideLock(key, snap.lock, info);
        const now = new Date().toISOString();
        if (decision.kind === 'refuse') return { error: decision.error, changes: {} };
        if (decision.kind === 'reacquire') {
          return { result: { outcome: 'reacquired', lock: { ...snap.lock!, lastActivityAt: now } }, changes: { lock: { touch: now } } };
        }
        const { raw, ...fields } = info;
        const lock: LockRecord = { key, ...fields, raw, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: client.userAgent };
        return {
          result: { outcome: 'acquired', lock },
          changes: {
            lock: { set: lock },
            audit: [{ action: 'lock.acquire', key, lockId: info.id, outcome: 'ok', detail: { operation: info.operation, who: info.who, version: info.version, created: info.created } }],
          },
        };
      });
      this.metrics.lockAttempts.inc({ result: result.outcome });
      return result;
    } catch (err) {
      if (err instanceof StatelockError && err.status === 423) this.metrics.lockAttempts.inc({ result: 'refused' });
      throw err;
    }
  }

  /**
   * Releases the lock on `key` as the http backend asks: an empty body is Terraform's force-unlock;
   * a body's ID must be the holder's. Releasing a free lock succeeds.
   * @throws StatelockError INVALID_LOCK_INFO (400), LOCK_ID_MISMATCH (409, carrying the holder's body).
   */
  unlockFromBody(key: string, body: Buffer, client: ClientContext): Promise<UnlockResult> {
    if (body.toString('utf8').trim() === '') return this.unlock(key, { id: null, force: true }, client, 'empty UNLOCK body (terraform force-unlock)');
    const info = parseLockInfo(body);
    const zero = isZeroValuedLockInfo(info);
    return this.unlock(key, { id: info.id, force: zero }, client, zero ? 'zero-valued UNLOCK body (tofu force-unlock)' : 'holder released');
  }

  /**
   * The API's force-unlock: the caller names the holder's ID, as `terraform force-unlock LOCK_ID` does.
   * @throws StatelockError LOCK_NOT_FOUND (nothing to unlock), LOCK_ID_MISMATCH (409, with the holder).
   */
  async forceUnlock(key: string, id: string, client: ClientContext): Promise<UnlockResult> {
    const result = await this.unlock(key, { id, force: true }, client, 'force-unlock through the API');
    if (result.outcome === 'already-free') throw new StatelockError('LOCK_NOT_FOUND', { key });
    return result;
  }

  private async unlock(key: string, request: UnlockRequest, client: ClientContext, how: string): Promise<UnlockResult> {
    try {
      const result = await this.store.update(key, client, (snap): Decision<UnlockResult> => {
        const decision = decideUnlock(key, snap.lock, request);
        if (decision.kind === 'refuse') {
          const detail = { how, code: decision.error.code, holder: snap.lock?.id };
          const action = request.force ? ('lock.force-unlock' as const) : ('lock.release' as const);
          return { error: decision.error, changes: { audit: [{ action, key, lockId: request.id, outcome: 'refused', detail }] } };
        }
        if (decision.kind === 'already-free') return { result: { outcome: 'already-free', previous: null }, changes: {} };
        const held = snap.lock!;
        const heldFor = Math.round((Date.now() - Date.parse(held.acquiredAt)) / 1000);
        return {
          result: { outcome: decision.forced ? 'forced' : 'released', previous: held },
          changes: {
            lock: { clear: true },
            audit: [
              {
                action: decision.forced ? 'lock.force-unlock' : 'lock.release',
                key,
                lockId: held.id,
                outcome: 'ok',
                detail: { how, operation: held.operation, who: held.who, acquiredAt: held.acquiredAt, lastActivityAt: held.lastActivityAt, heldSeconds: heldFor },
              },
            ],
          },
        };
      });
      this.metrics.unlocks.inc({ result: result.outcome.replace('-', '_') });
      return result;
    } catch (err) {
      if (err instanceof StatelockError && err.status === 409) this.metrics.unlocks.inc({ result: 'refused' });
      throw err;
    }
  }

  get(key: string) {
    return this.store.getLock(key);
  }

  list(query: { prefix?: string; after?: string; limit: number }) {
    return this.store.listLocks(query);
  }

  count() {
    return this.store.countLocks();
  }
}
