import { StatelockError } from '../server/errors.js';
import { lockConflictError, type HeldLock } from '../lock/lock-rules.js';

/** The operations under whose lock Terraform legitimately sends a lower serial or a new lineage. */
export const OVERWRITE_OPERATIONS: ReadonlySet<string> = new Set(['state-push', 'migration destination state']);

export interface CurrentState {
  serial: number;
  lineage: string;
  sha256: string;
}

export interface IncomingState {
  serial: number;
  lineage: string;
  sha256: string;
}

export type ForcedReason = 'lineage-changed' | 'serial-lower' | 'serial-same-content-differs';

export type WriteDecision =
  | { kind: 'store'; forced: ForcedReason | null }
  | { kind: 'unchanged' }
  | { kind: 'refuse'; error: StatelockError };

export interface WriteRequest {
  key: string;
  /** The live (non-deleted) current version, or null for an empty key. */
  current: CurrentState | null;
  incoming: IncomingState;
  lock: HeldLock | null;
  /** The `?ID=` the write carries, or null. */
  lockId: string | null;
  /** Whether `lockId` was once held on this key and has been released (or taken over). */
  lockIdReleased: boolean;
  /**
   * False for writes through a door that cannot carry a lock ID (S3 PutObject): rule 1 cannot apply
   * there, so a held lock neither admits nor refuses them; the consistency rules still do.
   */
  holderCheck?: boolean;
}

/**
 * May this write land? Pure: the store calls it inside the transaction that writes its outcome.
 *
 * 0. Fencing: a write carrying a lock ID that was released from this key is refused (423), whether the
 *    key is now free or held by another — the holder lost its lock; its body is kept by the caller.
 * 1. A held lock admits only writes carrying its ID (423 with the holder otherwise).
 * 2. An empty key accepts any valid state.
 * 3. Same lineage: higher serial stores; same serial and same bytes is an idempotent no-op;
 *    same serial with other bytes, or a lower serial, is a 409.
 * 4. Another lineage is a 409.
 * Exception: under its own lock with Operation `state-push` or `migration destination state`, what
 * (3) and (4) would refuse is stored as a forced overwrite (the caller audits it; the old version stays).
 */
export function decideWrite(req: WriteRequest): WriteDecision {
  const { key, current, incoming, lock, lockId } = req;
  if (lockId !== null && lockId !== lock?.id && req.lockIdReleased) {
    return { kind: 'refuse', error: new StatelockError('LOCK_FENCED', { given: lockId, key }, lock?.raw) };
  }
  if (lock && req.holderCheck !== false) {
    if (lockId === null) return { kind: 'refuse', error: lockConflictError('STATE_LOCKED_NO_ID', key, lock) };
    if (lockId !== lock.id) return { kind: 'refuse', error: lockConflictError('STATE_LOCKED', key, lock) };
  }
  if (!current) return { kind: 'store', forced: null };

  const mayOverwrite = lock !== null && OVERWRITE_OPERATIONS.has(lock.operation);
  const refuseOrForce = (error: StatelockError, reason: ForcedReason): WriteDecision =>
    mayOverwrite ? { kind: 'store', forced: reason } : { kind: 'refuse', error };

  if (incoming.lineage !== current.lineage) {
    return refuseOrForce(
      new StatelockError('LINEAGE_MISMATCH', { incoming: incoming.lineage, current: current.lineage }),
      'lineage-changed',
    );
  }
  if (incoming.serial > current.serial) return { kind: 'store', forced: null };
  if (incoming.serial === current.serial) {
    if (incoming.sha256 === current.sha256) return { kind: 'unchanged' };
    return refuseOrForce(
      new StatelockError('SERIAL_SAME_DIFFERENT_CONTENT', { serial: current.serial }),
      'serial-same-content-differs',
    );
  }
  return refuseOrForce(
    new StatelockError('SERIAL_LOWER', { incoming: incoming.serial, current: current.serial }),
    'serial-lower',
  );
}

export type DeleteDecision = { kind: 'delete' } | { kind: 'nothing' } | { kind: 'refuse'; error: StatelockError };

/**
 * May the key be soft-deleted? Not while a lock is held (the holder may be mid-apply) — except through
 * S3 DeleteObject, which cannot say who is asking: `terraform workspace delete` takes the lock, then deletes.
 * The delete is soft either way, and audited with the holder.
 */
export function decideDelete(key: string, hasState: boolean, lock: HeldLock | null, opts: { evenIfLocked?: boolean } = {}): DeleteDecision {
  if (lock && !opts.evenIfLocked) return { kind: 'refuse', error: lockConflictError('STATE_LOCKED', key, lock) };
  return hasState ? { kind: 'delete' } : { kind: 'nothing' };
}
