import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writesNothing, type Changes } from '../../src/store/store.js';

test('writesNothing: only absent, false or empty fields write nothing; any other field, even one added later, writes', () => {
  assert.equal(writesNothing({}), true);
  assert.equal(writesNothing({ audit: [], deleteState: false, lock: undefined }), true);
  assert.equal(writesNothing({ audit: [{ action: 'lock.conflict', key: 'k', lockId: 'L', outcome: 'refused', detail: {} }] }), false);
  assert.equal(writesNothing({ deleteState: true }), false);
  assert.equal(writesNothing({ lock: { clear: true } }), false);
  assert.equal(writesNothing({ endSession: { id: 's', reason: 'r' } }), false);
  assert.equal(writesNothing({ someFutureChange: { x: 1 } } as unknown as Changes), false, 'an unknown kind of change counts as a write');
});
