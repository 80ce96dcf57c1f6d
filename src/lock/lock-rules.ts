import { StatelockError, type ErrorCode } from '../server/errors.js';
import type { LockInfo } from './lock-info.js';
import type { Verdict } from './liveness.js';
import type { LockDoor } from '../store/store.js';

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
  /** The operator insists on force-unlocking a holder judged alive (audited). */
  evenIfAlive?: boolean;
}

export type UnlockDecision =
  | { kind: 'release'; forced: boolean }
  /** Nothing is held: success, so that retried unlocks are harmless. */
  | { kind: 'already-free' }
  | { kind: 'refuse'; error: StatelockError };

/**
 * May `request` release the lock on `key`? Pure; runs inside the store transaction.
 * A force-unlock (any release not by the holder itself) is refused while the holder is judged alive,
 * unless the caller overrides: a live apply must not be unlocked from under it.
 */
export function decideUnlock(key: string, current: HeldLock | null, request: UnlockRequest, liveness: { verdict: Verdict; reason: string } = { verdict: 'unknown', reason: '' }): UnlockDecision {
  if (!current) return { kind: 'already-free' };
  const forcedWhileAlive = () =>
    liveness.verdict === 'alive' && !request.evenIfAlive
      ? ({ kind: 'refuse', error: new StatelockError('HOLDER_ALIVE', { key, evidence: liveness.reason }, current.raw) } as const)
      : null;
  if (request.id === null) return forcedWhileAlive() ?? { kind: 'release', forced: true };
  if (request.id !== current.id) {
    return {
      kind: 'refuse',
      error: new StatelockError('LOCK_ID_MISMATCH', { given: request.id, key, holder: current.id }, current.raw),
    };
  }
  if (request.force) return forcedWhileAlive() ?? { kind: 'release', forced: true };
  return { kind: 'release', forced: false };
}

/** A release through one AWS door: DeleteObject on `<key>.tflock`, or DeleteItem on the lock-table item. */
export interface DoorReleaseRequest {
  door: LockDoor;
  /** The lock ID the request proves it holds, when it carries one; null for an unconditional delete. */
  id: string | null;
  /** DynamoDB's `Info = :info` condition: the lock info the caller read, byte for byte. */
  expectedInfo?: string;
  evenIfAlive?: boolean;
  /**
   * Whether the caller holds the force-unlock permission on the key (with its name, for the message).
   * When it does not, a release that would be a forced one — an unconditional delete of a lock this door
   * does not hold — is refused with FORBIDDEN, and nothing changes. Absent: no permission check (rules tests, internal callers).
   */
  mayForceUnlock?: { allowed: boolean; principal: string };
}

export type DoorReleaseDecision =
  | { kind: 'already-free' }
  /** The lock stays held through the other doors; only this door's hold goes. */
  | { kind: 'drop-hold'; holds: LockDoor[] }
  | { kind: 'release'; forced: boolean }
  | { kind: 'refuse'; error: StatelockError };

/**
 * May a release through an AWS door go ahead, and what does it release? Pure.
 *
 * - Nothing held: success (the second door of a double lock, or a retry).
 * - A condition that does not hold (another ID, other Info bytes): refused.
 * - The door holds the lock together with other doors: only its hold is dropped (double locking: Terraform
 *   releases the `.tflock` object first, then reads the DynamoDB item and deletes it).
 * - The door is the lock's only hold: the lock is released — by the holder's own unlock, or an operator's
 *   unconditional delete; the two look the same on the wire.
 * - The door does not hold the lock (it was taken over http, or through the other AWS door): this is a
 *   force-unlock, refused while the holder is judged alive unless overridden, and refused (FORBIDDEN) when
 *   the caller lacks the force-unlock permission. A release naming the holder's ID (`Info = :info`) is the
 *   holder's own and needs only lock.
 */
export function decideDoorRelease(
  key: string,
  current: (HeldLock & { holds: readonly LockDoor[] }) | null,
  request: DoorReleaseRequest,
  liveness: { verdict: Verdict; reason: string } = { verdict: 'unknown', reason: '' },
): DoorReleaseDecision {
  if (!current) return { kind: 'already-free' };
  if (request.expectedInfo !== undefined && request.expectedInfo !== current.raw) {
    return { kind: 'refuse', error: new StatelockError('DYNAMODB_CONDITION_FAILED', {}, current.raw) };
  }
  if (request.id !== null && request.id !== current.id) {
    return { kind: 'refuse', error: new StatelockError('LOCK_ID_MISMATCH', { given: request.id, key, holder: current.id }, current.raw) };
  }
  if (current.holds.includes(request.door)) {
    const rest = current.holds.filter((d) => d !== request.door);
    return rest.length > 0 ? { kind: 'drop-hold', holds: rest } : { kind: 'release', forced: false };
  }
  if (request.id === null && request.mayForceUnlock && !request.mayForceUnlock.allowed) {
    return { kind: 'refuse', error: new StatelockError('FORBIDDEN', { principal: request.mayForceUnlock.principal, permission: 'force-unlock', target: `${key} (the lock is held through ${current.holds.join(' and ')}, not through ${request.door}: releasing it here is a force-unlock)` }) };
  }
  if (request.id === null && liveness.verdict === 'alive' && !request.evenIfAlive) {
    return { kind: 'refuse', error: new StatelockError('HOLDER_ALIVE', { key, evidence: liveness.reason }, current.raw) };
  }
  return { kind: 'release', forced: request.id === null };
}

/** Should a lock whose holder has been dead for a while be released by the server itself (`serve --release-dead-after`)? */
export function decideAutoRelease(judgement: { verdict: Verdict; deadSince: string | null }, nowMs: number, afterMs: number): boolean {
  return judgement.verdict === 'dead' && judgement.deadSince !== null && nowMs - Date.parse(judgement.deadSince) >= afterMs;
}

/** The refusal for a request blocked by `holder`: it carries the holder's body verbatim. */
export function lockConflictError(code: Extract<ErrorCode, 'STATE_LOCKED' | 'STATE_LOCKED_NO_ID'>, key: string, holder: HeldLock): StatelockError {
  return new StatelockError(
    code,
    { key, holder: holder.id, operation: holder.operation || 'no operation', who: holder.who || 'unknown', created: holder.created ?? 'unknown time' },
    holder.raw,
  );
}
