import { StatelockError } from '../../../server/errors.js';
import { validateKey } from '../../../state/state-key.js';
import type { LockRecord } from '../../../store/store.js';
import { isPlainObject, parseItem, typeOf, validation, type Item } from './attribute-values.js';
import { conjuncts, SUPPORTED_CONDITIONS, type Condition, type ExpressionContext } from './condition-expression.js';

/**
 * How statelock's locks look through the DynamoDB door — one model, not a second store:
 *
 * - the item `LockID = "<bucket>/<key>"` IS the lock on state key `<bucket>/<key>`, its `Info` the lock
 *   info JSON exactly as stored, whichever door took the lock (http, S3 `.tflock`, DynamoDB);
 * - the item `LockID = "<bucket>/<key>-md5"` is the state's digest item: `Digest` is the lowercase hex
 *   MD5 of the current state bytes, always computed from the stored state (writes of it are no-ops).
 *
 * A LockID ending in `-md5` always names a digest item (as it does for Terraform on real DynamoDB).
 */

export const DIGEST_SUFFIX = '-md5';

/** What statelock's lock tables hold, for the ValidationExceptions that refuse anything else. */
export const LOCK_TABLE_SHAPE =
  'statelock lock tables hold lock items {LockID (S) = "<bucket>/<key>", Info (S) = the lock info JSON} and digest items {LockID (S) = "<bucket>/<key>-md5", Digest (S) = the 32-character hex MD5 of the state}';

export type LockItemRef = { kind: 'lock' | 'digest'; lockId: string; key: string };

/** Classifies a LockID value and validates the state key it names. */
export function refOf(lockId: string): LockItemRef {
  const digest = lockId.endsWith(DIGEST_SUFFIX);
  const key = digest ? lockId.slice(0, -DIGEST_SUFFIX.length) : lockId;
  try {
    validateKey(key);
  } catch (err) {
    if (err instanceof StatelockError && err.code === 'INVALID_KEY') {
      throw validation(`One or more parameter values were invalid: LockID "${lockId}" does not name a statelock state ("<bucket>/<key>"${digest ? ' + "-md5"' : ''}): ${String(err.params.reason)}`);
    }
    throw err;
  }
  return { kind: digest ? 'digest' : 'lock', lockId, key };
}

/** A request's `Key` (GetItem, DeleteItem) or `ExclusiveStartKey` (Scan): exactly `{LockID: {S: …}}`. */
export function refFromKey(raw: unknown, member: 'Key' | 'ExclusiveStartKey'): LockItemRef {
  const prefix = member === 'ExclusiveStartKey' ? 'The provided starting key is invalid: ' : '';
  if (raw === undefined || raw === null) throw validation(`1 validation error detected: Value null at '${member === 'Key' ? 'key' : 'exclusiveStartKey'}' failed to satisfy constraint: Member must not be null`);
  const key = parseItem(raw, member);
  const names = Object.keys(key);
  const lockId = key.LockID;
  if (names.length !== 1 || lockId === undefined || typeOf(lockId) !== 'S') {
    throw validation(`${prefix}The provided key element does not match the schema: statelock lock tables are keyed by LockID (S) alone; got ${describeAttributes(key)}`);
  }
  const text = (lockId as { S: string }).S;
  if (text === '') throw validation(`${prefix}One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: LockID`);
  return refOf(text);
}

/** A PutItem's `Item`, checked against what a lock table holds. */
export type PutItemValue = { kind: 'lock'; ref: LockItemRef; info: string } | { kind: 'digest'; ref: LockItemRef; digest: string };

export function parsePutItem(raw: unknown): PutItemValue {
  if (raw === undefined || raw === null) throw validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null");
  const item = parseItem(raw, 'Item');
  const lockId = item.LockID;
  if (lockId === undefined) throw validation('One or more parameter values were invalid: Missing the key LockID in the item');
  if (typeOf(lockId) !== 'S') throw validation(`One or more parameter values were invalid: Type mismatch for key LockID expected: S actual: ${typeOf(lockId)}`);
  const text = (lockId as { S: string }).S;
  if (text === '') throw validation('One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: LockID');
  const ref = refOf(text);
  const names = Object.keys(item).sort();
  if (ref.kind === 'digest') {
    const digest = item.Digest;
    if (names.length !== 2 || digest === undefined || typeOf(digest) !== 'S') {
      throw validation(`One or more parameter values were invalid: ${LOCK_TABLE_SHAPE}; a digest item must hold exactly LockID (S) and Digest (S), this one has ${describeAttributes(item)}`);
    }
    const hex = (digest as { S: string }).S;
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw validation(`One or more parameter values were invalid: Digest must be the 32-character hex MD5 of the state, not "${hex}"`);
    return { kind: 'digest', ref, digest: hex.toLowerCase() };
  }
  const info = item.Info;
  if (names.length !== 2 || info === undefined || typeOf(info) !== 'S') {
    throw validation(`One or more parameter values were invalid: ${LOCK_TABLE_SHAPE}; a lock item must hold exactly LockID (S) and Info (S), this one has ${describeAttributes(item)}`);
  }
  return { kind: 'lock', ref, info: (info as { S: string }).S };
}

function describeAttributes(item: Item): string {
  const parts = Object.entries(item).map(([k, v]) => `${k} (${typeOf(v)})`);
  return parts.length === 0 ? 'no attributes' : parts.join(', ');
}

/** The lock item of a held lock: its Info is the lock JSON exactly as stored. */
export function lockItem(lock: LockRecord): Item {
  return { LockID: { S: lock.key }, Info: { S: lock.raw } };
}

/** The digest item of a live state; `md5Base64` is the stored VersionMeta.md5. */
export function digestItem(key: string, md5Base64: string): Item {
  return { LockID: { S: key + DIGEST_SUFFIX }, Digest: { S: md5Hex(md5Base64) } };
}

export function md5Hex(md5Base64: string): string {
  return Buffer.from(md5Base64, 'base64').toString('hex');
}

/** What a PutItem's condition means for a lock item. */
export type LockPutCondition = 'unconditional' | 'if-free';

const LOCK_ATTRS = new Set(['LockID', 'Info']);

/** `attribute_exists(x)` / `attribute_not_exists(x)`, seen through any number of NOTs. */
function existsAtom(c: Condition): { name: string; exists: boolean } | null {
  if (c.kind === 'exists') return { name: c.name, exists: c.exists };
  if (c.kind === 'not') {
    const inner = existsAtom(c.operand);
    return inner && { name: inner.name, exists: !inner.exists };
  }
  return null;
}

/**
 * The conditions with a meaning for a lock item's PutItem: none (an unconditional put), or
 * `attribute_not_exists(LockID)` (Terraform, OpenTofu, the CLI) — take the lock only if it is free.
 */
export function lockPutCondition(cond: Condition | null): LockPutCondition {
  if (cond === null) return 'unconditional';
  const atoms = conjuncts(cond).map(existsAtom);
  if (atoms.every((a) => a !== null && !a.exists && LOCK_ATTRS.has(a.name))) return 'if-free';
  throw validation(
    `Invalid ConditionExpression: on a lock item's PutItem statelock supports only attribute_not_exists(LockID) (take the lock if it is free) or no condition; the general forms (${SUPPORTED_CONDITIONS}) apply to digest items`,
  );
}

/** What a DeleteItem's condition means for a lock item. */
export interface LockDeleteCondition {
  /** `Info = :info` (OpenTofu ≥ 1.10): release only while the lock holds exactly this lock info. */
  expectedInfo?: string;
  /** `attribute_exists(LockID)`: a lock that is already free fails the condition. */
  mustBeHeld: boolean;
}

/**
 * The conditions with a meaning for a lock item's DeleteItem: none (Terraform; also the operator's
 * `aws dynamodb delete-item`), `Info = :info` (OpenTofu), `attribute_exists(LockID)`, or both AND-ed.
 */
export function lockDeleteCondition(cond: Condition | null, ctx: ExpressionContext): LockDeleteCondition {
  if (cond === null) return { mustBeHeld: false };
  const result: LockDeleteCondition = { mustBeHeld: false };
  const refuse = () =>
    validation(
      `Invalid ConditionExpression: on a lock item's DeleteItem statelock supports only Info = :info (release the lock only while it holds that lock info), attribute_exists(LockID), both AND-ed, or no condition; the general forms (${SUPPORTED_CONDITIONS}) apply to digest items`,
    );
  for (const c of conjuncts(cond)) {
    const atom = existsAtom(c);
    if (atom) {
      if (!atom.exists || !LOCK_ATTRS.has(atom.name)) throw refuse();
      result.mustBeHeld = true;
      continue;
    }
    if (c.kind !== 'compare' || c.op !== '=') throw refuse();
    const [path, value] = c.left.kind === 'path' ? [c.left, c.right] : [c.right, c.left];
    if (path.kind !== 'path' || path.name !== 'Info' || value.kind !== 'value') throw refuse();
    const v = ctx.value(value.placeholder)!;
    if (typeOf(v) !== 'S') throw validation(`Invalid ConditionExpression: Info holds a string (S); ${value.placeholder} is of type ${typeOf(v)} and could never match it`);
    const text = (v as { S: string }).S;
    if (result.expectedInfo !== undefined && result.expectedInfo !== text) throw refuse();
    result.expectedInfo = text;
  }
  return result;
}

/** Scan's order: LockIDs by code point (UTF-8 byte order, as the stores order keys). */
export function compareLockIds(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function lockIdOf(item: Item): string {
  const v = item.LockID;
  return v !== undefined && isPlainObject(v) && typeof (v as { S?: unknown }).S === 'string' ? (v as { S: string }).S : '';
}
