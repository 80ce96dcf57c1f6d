import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideRestore } from '../../src/state/restore-rules.js';
import { rewriteStateHeader } from '../../src/state/state-header-rewrite.js';

describe('decideRestore', () => {
  const target = { seq: 2, serial: 3, lineage: 'L', encrypted: false };
  const lock = { id: 'H', operation: 'OperationTypeApply', who: 'a@h', created: null, raw: '{"ID":"H"}' };
  test('rolls forward: current serial + 1 with the current lineage', () => {
    assert.deepEqual(decideRestore({ key: 'k', current: { serial: 9, lineage: 'M' }, highestSerial: 9, lock: null, lockId: null, target }), { kind: 'store', serial: 10, lineage: 'M' });
  });
  test('never reuses a serial: after a forced push took the serial down, restore goes above the highest', () => {
    assert.deepEqual(decideRestore({ key: 'k', current: { serial: 1, lineage: 'M' }, highestSerial: 3, lock: null, lockId: null, target }), { kind: 'store', serial: 4, lineage: 'M' });
  });
  test('on an empty or deleted key the old version keeps its own serial and lineage', () => {
    assert.deepEqual(decideRestore({ key: 'k', current: null, highestSerial: 0, lock: null, lockId: null, target }), { kind: 'store', serial: 3, lineage: 'L' });
  });
  test('refused while someone else holds the lock; allowed for the holder', () => {
    const r = decideRestore({ key: 'k', current: { serial: 9, lineage: 'M' }, highestSerial: 9, lock, lockId: null, target });
    assert.equal(r.kind === 'refuse' && r.error.status, 423);
    assert.equal(decideRestore({ key: 'k', current: { serial: 9, lineage: 'M' }, highestSerial: 9, lock, lockId: 'H', target }).kind, 'store');
  });
  test('refuses encrypted versions with 422', () => {
    const r = decideRestore({ key: 'k', current: null, highestSerial: 0, lock: null, lockId: null, target: { ...target, encrypted: true } });
    assert.equal(r.kind === 'refuse' && r.error.code, 'RESTORE_ENCRYPTED');
  });
});

describe('rewriteStateHeader', () => {
  test('changes only the top-level serial and lineage, byte for byte elsewhere', () => {
    const body =
      '{\n  "version": 4,\n  "serial": 3,\n  "lineage": "old",\n  "outputs": {"serial": {"value": 1}, "lineage": "x"},\n' +
      '  "resources": [{"attributes": {"big": 12345678901234567890123, "s": "a \\" } ] {", "lineage": "nested"}}]\n}\n';
    const out = rewriteStateHeader(Buffer.from(body), { serial: 10, lineage: 'new"one' }).toString();
    assert.equal(out, body.replace('"serial": 3', '"serial": 10').replace('"lineage": "old"', '"lineage": "new\\"one"'));
    const doc = JSON.parse(out);
    assert.deepEqual([doc.serial, doc.lineage, doc.outputs.serial.value, doc.resources[0].attributes.lineage], [10, 'new"one', 1, 'nested']);
    assert.ok(out.includes('12345678901234567890123'), 'large integers are not rounded');
  });
  test('works on compact JSON with the header keys in any order', () => {
    const out = rewriteStateHeader(Buffer.from('{"lineage":"a","resources":[],"serial":1}\n'), { serial: 2, lineage: 'b' }).toString();
    assert.equal(out, '{"lineage":"b","resources":[],"serial":2}\n');
  });
});
