import { StatelockError, type ErrorCode } from '../server/errors.js';
import type { LockInfo } from './lock-info.js';

/** What the rules need to know about the lock currently held on a key. */
export interface HeldLock {
  id: string;
  operation: string;
  who: string;
  created: string | null;
  /** The holder's LOCK body, verbatim: what a refused client is answered with. */
  raw: string;
}

export type LockDecision =
  | { kind: 'acquire' }
  /** The holder asked again (a retried LOCK whose first answer was lost): success, nothing changes. */
  | { kind: 'reacquire' }
  | { kind: 'refuse'; error: StatelockError };

/**
 * May `request` take the lock on `key`? Pure; runs inside the store transaction.
 * A lock attempt never waits: it succeeds at once or is refused with the holder's info.
 */
export function decideLock(key: string, current: HeldLock | null, request: LockInfo): LockDecision {
  if (!current) return { kind: 'acquire' };
  if (current.id === request.id) return { kind: 'reacquire' };
  return { kind: 'refuse', error: lockConflictError('STATE_LOCKED', key, current) };
}

/**
 * An unlock request: `id` null is Terraform's empty-body UNLOCK (what `terraform force-unlock` sends;
 * the typed ID never reaches the server). `force` marks requests that are force-unlocks by intent
 * (empty body, OpenTofu's zero-valued body, the API's force-unlock).
 */
export interface UnlockRequest {
  id: string | null;
  force: boolean;
}

export type UnlockDecision =
  | { kind: 'release'; forced: boolean }
  /** Nothing is held: success, so that retried unlocks are harmless. */
  | { kind: 'already-free' }
  | { kind: 'refuse'; error: StatelockError };

/** May `request` release the lock on `key`? Pure; runs inside the store transaction. */
export function decideUnlock(key: string, current: HeldLock | null, request: UnlockRequest): UnlockDecision {
  if (!current) return { kind: 'already-free' };
  if (request.id === null) return { kind: 'release', forced: true };
  if (request.id !== current.id) {
    return {
      kind: 'refuse',
      error: new StatelockError('LOCK_ID_MISMATCH', { given: request.id, key, holder: current.id }, current.raw),
    };
  }
  return { kind: 'release', forced: request.force };
}

/** The refusal for a request blocked by `holder`: it carries the holder's body verbatim. */
export function lockConflictError(code: Extract<ErrorCode, 'STATE_LOCKED' | 'STATE_LOCKED_NO_ID'>, key: string, holder: HeldLock): StatelockError {
  return new StatelockError(
    code,
    { key, holder: holder.id, operation: holder.operation || 'no operation', who: holder.who || 'unknown', created: holder.created ?? 'unknown time' },
    holder.raw,
  );
}
