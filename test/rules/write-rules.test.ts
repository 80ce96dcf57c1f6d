import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { HeldLock } from '../../src/lock/lock-rules.js';
import { decideDelete, decideWrite, type WriteRequest } from '../../src/state/write-rules.js';

const current = { serial: 5, lineage: 'L', sha256: 'aaa' };
const lock = (id: string, operation = 'OperationTypeApply'): HeldLock => ({ id, operation, who: 'a@h', created: '2026-01-01T00:00:00Z', raw: `{"ID":"${id}"}` });
const req = (over: Partial<WriteRequest>): WriteRequest => ({
  key: 'k',
  current,
  incoming: { serial: 6, lineage: 'L', sha256: 'bbb' },
  lock: null,
  lockId: null,
  lockIdReleased: false,
  ...over,
});
const refusal = (r: ReturnType<typeof decideWrite>) => (r.kind === 'refuse' ? { code: r.error.code, status: r.error.status, message: r.error.message } : r);

describe('decideWrite: consistency', () => {
  test('an empty key accepts any valid state, whatever its serial or lineage', () => {
    assert.deepEqual(decideWrite(req({ current: null, incoming: { serial: 0, lineage: 'X', sha256: 'c' } })), { kind: 'store', forced: null });
  });
  test('same lineage, higher serial is stored', () => {
    assert.deepEqual(decideWrite(req({})), { kind: 'store', forced: null });
  });
  test('same lineage, same serial, identical bytes is an idempotent no-op', () => {
    assert.deepEqual(decideWrite(req({ incoming: { serial: 5, lineage: 'L', sha256: 'aaa' } })), { kind: 'unchanged' });
  });
  test('same serial with different bytes is a 409 with Terraform’s message', () => {
    assert.deepEqual(refusal(decideWrite(req({ incoming: { serial: 5, lineage: 'L', sha256: 'zzz' } }))), {
      code: 'SERIAL_SAME_DIFFERENT_CONTENT',
      status: 409,
      message: 'cannot overwrite existing state with serial 5 with a different state that has the same serial',
    });
  });
  test('a lower serial is a 409', () => {
    assert.deepEqual(refusal(decideWrite(req({ incoming: { serial: 4, lineage: 'L', sha256: 'zzz' } }))), {
      code: 'SERIAL_LOWER',
      status: 409,
      message: 'cannot import state with serial 4 over newer state with serial 5',
    });
  });
  test('another lineage is a 409, even with a higher serial', () => {
    assert.deepEqual(refusal(decideWrite(req({ incoming: { serial: 9, lineage: 'M', sha256: 'zzz' } }))), {
      code: 'LINEAGE_MISMATCH',
      status: 409,
      message: 'cannot import state with lineage "M" over unrelated state with lineage "L"',
    });
  });
});

describe('decideWrite: the state-push / migration exception', () => {
  for (const operation of ['state-push', 'migration destination state']) {
    test(`under a "${operation}" lock, lower serial, same serial and new lineage are forced overwrites`, () => {
      const held = lock('P', operation);
      assert.deepEqual(decideWrite(req({ lock: held, lockId: 'P', incoming: { serial: 2, lineage: 'L', sha256: 'z' } })), { kind: 'store', forced: 'serial-lower' });
      assert.deepEqual(decideWrite(req({ lock: held, lockId: 'P', incoming: { serial: 5, lineage: 'L', sha256: 'z' } })), { kind: 'store', forced: 'serial-same-content-differs' });
      assert.deepEqual(decideWrite(req({ lock: held, lockId: 'P', incoming: { serial: 1, lineage: 'N', sha256: 'z' } })), { kind: 'store', forced: 'lineage-changed' });
      assert.deepEqual(decideWrite(req({ lock: held, lockId: 'P' })), { kind: 'store', forced: null }, 'a normal higher serial is not forced');
    });
  }
  test('other operations get no exception', () => {
    for (const operation of ['OperationTypeApply', 'state-rm', 'migration source state', '']) {
      const r = decideWrite(req({ lock: lock('P', operation), lockId: 'P', incoming: { serial: 1, lineage: 'N', sha256: 'z' } }));
      assert.equal(r.kind, 'refuse', operation);
    }
  });
  test('the exception needs the lock: a state-push write from someone else is refused as locked', () => {
    const r = decideWrite(req({ lock: lock('P', 'state-push'), lockId: 'Q', incoming: { serial: 1, lineage: 'N', sha256: 'z' } }));
    assert.equal(r.kind === 'refuse' && r.error.code, 'STATE_LOCKED');
  });
});

describe('decideWrite: locks', () => {
  test('a write without ?ID= while another holds the lock is 423 with the holder’s body', () => {
    const r = decideWrite(req({ lock: lock('H') }));
    assert.equal(r.kind, 'refuse');
    if (r.kind !== 'refuse') return;
    assert.equal(r.error.code, 'STATE_LOCKED_NO_ID');
    assert.equal(r.error.status, 423);
    assert.equal(r.error.holderBody, '{"ID":"H"}');
  });
  test('a write with another ID is 423 with the holder’s body', () => {
    const r = decideWrite(req({ lock: lock('H'), lockId: 'X' }));
    assert.equal(r.kind === 'refuse' && r.error.code, 'STATE_LOCKED');
    assert.equal(r.kind === 'refuse' && r.error.holderBody, '{"ID":"H"}');
  });
  test('the lock is checked before consistency: a locked key refuses even a valid next serial', () => {
    assert.equal(decideWrite(req({ lock: lock('H'), current: null })).kind, 'refuse');
  });
  test('the holder’s write passes', () => {
    assert.deepEqual(decideWrite(req({ lock: lock('H'), lockId: 'H' })), { kind: 'store', forced: null });
  });
  test('an unlocked key accepts writes without ?ID= (lock-less setups)', () => {
    assert.deepEqual(decideWrite(req({ lockId: null })), { kind: 'store', forced: null });
  });
});

describe('decideWrite: fencing', () => {
  test('a write carrying a released lock ID is 423 LOCK_FENCED, whether the key is free or held by another', () => {
    const free = decideWrite(req({ lockId: 'OLD', lockIdReleased: true }));
    assert.equal(free.kind === 'refuse' && free.error.code, 'LOCK_FENCED');
    assert.equal(free.kind === 'refuse' && free.error.status, 423);
    const taken = decideWrite(req({ lock: lock('NEW'), lockId: 'OLD', lockIdReleased: true }));
    assert.equal(taken.kind === 'refuse' && taken.error.code, 'LOCK_FENCED');
    assert.equal(taken.kind === 'refuse' && taken.error.holderBody, '{"ID":"NEW"}');
  });
  test('an ID never released on this key is not fenced; nor is the current holder', () => {
    assert.equal(decideWrite(req({ lockId: 'UNKNOWN', lockIdReleased: false })).kind, 'store');
    assert.equal(decideWrite(req({ lock: lock('H'), lockId: 'H', lockIdReleased: true })).kind, 'store');
  });
});

describe('decideDelete', () => {
  test('refused while locked, a no-op on an empty key, a delete otherwise', () => {
    const r = decideDelete('k', true, lock('H'));
    assert.equal(r.kind === 'refuse' && r.error.status, 423);
    assert.deepEqual(decideDelete('k', false, null), { kind: 'nothing' });
    assert.deepEqual(decideDelete('k', true, null), { kind: 'delete' });
  });
});

describe('decideWrite / decideDelete through S3 (no lock ID can travel)', () => {
  test('a held lock neither admits nor refuses an S3 write; the consistency rules still apply', () => {
    assert.deepEqual(decideWrite(req({ lock: lock('A'), lockId: null, holderCheck: false, incoming: { serial: 6, lineage: 'L', sha256: 'b' } })), { kind: 'store', forced: null });
    const code = (r: ReturnType<typeof decideWrite>) => (r.kind === 'refuse' ? r.error.code : r.kind);
    assert.equal(code(decideWrite(req({ lock: lock('A'), lockId: null, holderCheck: false, incoming: { serial: 4, lineage: 'L', sha256: 'b' } }))), 'SERIAL_LOWER');
    assert.equal(code(decideWrite(req({ lock: lock('A'), lockId: null, incoming: { serial: 6, lineage: 'L', sha256: 'b' } }))), 'STATE_LOCKED_NO_ID', 'the http door still refuses');
  });
  test('an S3 DeleteObject deletes even while a lock is held (terraform workspace delete locks first); the http door does not', () => {
    assert.deepEqual(decideDelete('k', true, lock('A'), { evenIfLocked: true }), { kind: 'delete' });
    assert.equal(decideDelete('k', true, lock('A')).kind, 'refuse');
  });
});
