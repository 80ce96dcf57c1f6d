import { StatelockError } from '../server/errors.js';
import type { HeldLock } from '../lock/lock-rules.js';
import { lockConflictError } from '../lock/lock-rules.js';

export type RestoreDecision = { kind: 'store'; serial: number; lineage: string } | { kind: 'refuse'; error: StatelockError };

/**
 * Roll-forward restore: the old content comes back as a *new* version, so nothing is overwritten and
 * every Terraform client sees serials only increase. Pure; runs inside the store transaction.
 *
 * - Refused (423) while a lock is held, unless the caller presents the holder's ID.
 * - With a live current version: the current lineage, and a serial above every serial that lineage has
 *   ever had (a forced push may have taken the current serial below an older one; reusing a serial
 *   would make two versions answer to it).
 * - On an empty or deleted key: the old version's own serial and lineage.
 * - OpenTofu-encrypted versions are refused: their serial is also sealed inside the ciphertext, which
 *   the server cannot rewrite, and OpenTofu rejects a mismatch.
 */
export function decideRestore(req: {
  key: string;
  current: { serial: number; lineage: string } | null;
  /** The highest serial any version of the key with the current lineage has had. */
  highestSerial: number;
  lock: HeldLock | null;
  lockId: string | null;
  target: { seq: number; serial: number; lineage: string; encrypted: boolean };
}): RestoreDecision {
  const { key, current, highestSerial, lock, lockId, target } = req;
  if (lock && lock.id !== lockId) return { kind: 'refuse', error: lockConflictError('STATE_LOCKED', key, lock) };
  if (target.encrypted) return { kind: 'refuse', error: new StatelockError('RESTORE_ENCRYPTED', { key, seq: target.seq }) };
  if (!current) return { kind: 'store', serial: target.serial, lineage: target.lineage };
  return { kind: 'store', serial: Math.max(current.serial, highestSerial) + 1, lineage: current.lineage };
}
