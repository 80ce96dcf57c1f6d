import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isZeroValuedLockInfo, parseLockInfo } from '../../src/lock/lock-info.js';
import { decideDoorRelease, decideLock, decideUnlock, type HeldLock } from '../../src/lock/lock-rules.js';
import { StatelockError } from '../../src/server/errors.js';

const held: HeldLock = { id: 'A', operation: 'OperationTypeApply', who: 'a@h', created: '2026-08-21T13:10:23Z', raw: '{"ID":"A","Operation":"OperationTypeApply"}' };
const info = (id: string) => parseLockInfo(Buffer.from(JSON.stringify({ ID: id, Operation: 'OperationTypePlan', Info: '', Who: 'b@h', Version: '1.15.0', Created: '2026-08-21T13:10:23.5Z', Path: '' })));

describe('decideLock', () => {
  test('a free key is acquired', () => assert.deepEqual(decideLock('k', null, info('B')), { kind: 'acquire' }));
  test('the holder asking again (a retried LOCK) succeeds without change', () => assert.deepEqual(decideLock('k', held, info('A')), { kind: 'reacquire' }));
  test('another ID is refused with 423 and the holder’s body verbatim', () => {
    const d = decideLock('k', held, info('B'));
    assert.equal(d.kind, 'refuse');
    if (d.kind !== 'refuse') return;
    assert.equal(d.error.status, 423);
    assert.equal(d.error.holderBody, held.raw);
    assert.match(d.error.message, /locked by ID "A" \(OperationTypeApply, a@h/);
  });
});

describe('decideUnlock', () => {
  test('the holder’s ID releases', () => assert.deepEqual(decideUnlock('k', held, { id: 'A', force: false }), { kind: 'release', forced: false }));
  test('an empty body (terraform force-unlock) releases as forced', () => assert.deepEqual(decideUnlock('k', held, { id: null, force: true }), { kind: 'release', forced: true }));
  test('a free lock is already free (retried unlocks are harmless)', () => assert.deepEqual(decideUnlock('k', null, { id: 'Z', force: false }), { kind: 'already-free' }));
  test('another ID is a 409 carrying the holder', () => {
    const d = decideUnlock('k', held, { id: 'B', force: false });
    assert.equal(d.kind === 'refuse' && d.error.status, 409);
    assert.equal(d.kind === 'refuse' && d.error.code, 'LOCK_ID_MISMATCH');
    assert.equal(d.kind === 'refuse' && d.error.holderBody, held.raw);
  });
});

describe('parseLockInfo', () => {
  const code = (body: string) => {
    try {
      parseLockInfo(Buffer.from(body));
      return 'ok';
    } catch (e) {
      return e instanceof StatelockError ? e.code : 'other';
    }
  };
  test('keeps the raw body verbatim and reads every field', () => {
    const raw = '{"ID":"x","Operation":"OperationTypeApply","Info":"","Who":"a@h","Version":"1.15.0","Created":"2026-08-21T13:10:23.123456789Z","Path":"","Extra":1}';
    const i = parseLockInfo(Buffer.from(raw));
    assert.equal(i.raw, raw);
    assert.deepEqual([i.id, i.operation, i.who, i.version, i.created], ['x', 'OperationTypeApply', 'a@h', '1.15.0', '2026-08-21T13:10:23.123456789Z']);
  });
  test('matches keys case-insensitively, as Go does', () => assert.equal(parseLockInfo(Buffer.from('{"id":"x","operation":"p"}')).operation, 'p'));
  test('Created may be absent or null; offsets are RFC 3339 too', () => {
    assert.equal(code('{"ID":"x"}'), 'ok');
    assert.equal(code('{"ID":"x","Created":null}'), 'ok');
    assert.equal(code('{"ID":"x","Created":"2026-08-21T15:10:23+02:00"}'), 'ok');
  });
  test('refuses malformed lock info with 400 INVALID_LOCK_INFO', () => {
    for (const bad of ['', 'nope', '[]', '"x"', 'null', '{}', '{"ID":""}', '{"ID":5}', '{"ID":"x","Who":{"a":1}}', '{"ID":"x","Info":[1]}', '{"ID":"x","Created":"yesterday"}', '{"ID":"x","Created":"2026-08-21 13:10:23"}', '{"ID":"x","Created":12}']) {
      assert.equal(code(bad), 'INVALID_LOCK_INFO', bad);
    }
  });
  test('recognises OpenTofu’s zero-valued force-unlock body', () => {
    const zero = parseLockInfo(Buffer.from('{"ID":"x","Operation":"","Info":"","Who":"","Version":"","Created":"0001-01-01T00:00:00Z","Path":""}'));
    assert.equal(isZeroValuedLockInfo(zero), true);
    assert.equal(isZeroValuedLockInfo(info('x')), false);
  });
});

describe('decideDoorRelease (S3 .tflock and DynamoDB item releases)', () => {
  const doubly = { ...held, holds: ['s3', 'dynamodb'] as const };
  const alive = { verdict: 'alive' as const, reason: 'session lease current' };
  test('nothing held: success, so the second door of a double lock and retries are harmless', () => {
    assert.deepEqual(decideDoorRelease('k', null, { door: 'dynamodb', id: null }), { kind: 'already-free' });
    assert.deepEqual(decideDoorRelease('k', null, { door: 'dynamodb', id: 'A', expectedInfo: 'x' }), { kind: 'already-free' });
  });
  test('double locking: the first door to release only drops its hold, the last one releases', () => {
    assert.deepEqual(decideDoorRelease('k', doubly, { door: 's3', id: null }), { kind: 'drop-hold', holds: ['dynamodb'] });
    assert.deepEqual(decideDoorRelease('k', { ...held, holds: ['dynamodb'] }, { door: 'dynamodb', id: null }), { kind: 'release', forced: false });
  });
  test("a door releasing a lock it does not hold is a force-unlock, refused while the holder is alive", () => {
    const httpHeld = { ...held, holds: ['http'] as const };
    assert.deepEqual(decideDoorRelease('k', httpHeld, { door: 'dynamodb', id: null }), { kind: 'release', forced: true });
    const refused = decideDoorRelease('k', httpHeld, { door: 'dynamodb', id: null }, alive);
    assert.equal(refused.kind === 'refuse' && refused.error.code, 'HOLDER_ALIVE');
    assert.deepEqual(decideDoorRelease('k', httpHeld, { door: 'dynamodb', id: null, evenIfAlive: true }, alive), { kind: 'release', forced: true });
  });
  test("OpenTofu's Info = :info condition: other bytes are refused with the holder, equal bytes release", () => {
    const d = decideDoorRelease('k', { ...held, holds: ['dynamodb'] }, { door: 'dynamodb', id: 'A', expectedInfo: held.raw + ' ' });
    assert.equal(d.kind === 'refuse' && d.error.code, 'DYNAMODB_CONDITION_FAILED');
    assert.equal(d.kind === 'refuse' && d.error.holderBody, held.raw);
    assert.deepEqual(decideDoorRelease('k', { ...held, holds: ['dynamodb'] }, { door: 'dynamodb', id: 'A', expectedInfo: held.raw }), { kind: 'release', forced: false });
  });
  test('a request proving another lock ID is refused with LOCK_ID_MISMATCH', () => {
    const d = decideDoorRelease('k', doubly, { door: 's3', id: 'B' });
    assert.equal(d.kind === 'refuse' && d.error.code, 'LOCK_ID_MISMATCH');
  });
});

describe('parseLockInfo limits', () => {
  test('a lock ID longer than 256 characters is refused (Terraform and OpenTofu send UUIDs)', () => {
    assert.throws(() => parseLockInfo(Buffer.from(JSON.stringify({ ID: 'x'.repeat(257) }))), (e: unknown) => e instanceof StatelockError && e.code === 'INVALID_LOCK_INFO' && /257 characters/.test(e.message));
    assert.equal(parseLockInfo(Buffer.from(JSON.stringify({ ID: 'x'.repeat(256) }))).id.length, 256);
  });
});
