import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';

interface Versions {
  items: Array<{ seq: number; serial: number; lineage: string; forced: string | null; operation: string | null; lockId: string | null; encrypted: boolean }>;
}
interface Audit {
  items: Array<{ action: string; lockId: string | null; outcome: string; detail: Record<string, unknown> }>;
}

/** Each server-enforced consistency rule, over real HTTP, checking what was (not) stored and audited. */
describe('server-enforced serial and lineage', () => {
  let server: RunningServer;
  let n = 0;
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));

  /** A fresh key holding `serial` 5 with lineage L. */
  const freshKey = async () => {
    const key = `consistency/k${++n}`;
    assert.equal((await post(key, stateBody(5, 'L'))).status, 200);
    return key;
  };
  const post = (key: string, body: string, id?: string) => rawRequest(`${server.url}/state/${key}${id ? `?ID=${id}` : ''}`, { method: 'POST', body });
  const current = async (key: string) => (await rawRequest(`${server.url}/state/${key}`)).text;
  const versions = async (key: string) => (await rawRequest(`${server.url}/api/v1/versions/${key}`)).json<Versions>().items;
  const audit = async (key: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${key}`)).json<Audit>().items;
  const errorOf = (res: { json<T>(): T }) => res.json<{ error: { code: string; message: string } }>().error;

  test('an empty key accepts any valid state', async () => {
    const res = await post('consistency/empty', stateBody(42, 'any-lineage'));
    assert.equal(res.status, 200);
    assert.equal(res.json<{ outcome: string; version: number }>().outcome, 'stored');
  });

  test('same lineage, higher serial: stored as a new version', async () => {
    const key = await freshKey();
    assert.equal((await post(key, stateBody(6, 'L'))).status, 200);
    assert.deepEqual((await versions(key)).map((v) => v.serial), [5, 6]);
  });

  test('same lineage, same serial, identical bytes: 200 and no new version (an idempotent retry)', async () => {
    const key = await freshKey();
    const res = await post(key, stateBody(5, 'L'));
    assert.equal(res.status, 200);
    assert.equal(res.json<{ outcome: string }>().outcome, 'unchanged');
    assert.equal((await versions(key)).length, 1);
  });

  const refusals: Array<[string, string, number, string, string]> = [
    ['same serial, different bytes', stateBody(5, 'L', { outputs: { x: { value: 1, type: 'number' } } }), 409, 'SERIAL_SAME_DIFFERENT_CONTENT', 'cannot overwrite existing state with serial 5 with a different state that has the same serial'],
    ['lower serial', stateBody(4, 'L'), 409, 'SERIAL_LOWER', 'cannot import state with serial 4 over newer state with serial 5'],
    ['different lineage', stateBody(9, 'M'), 409, 'LINEAGE_MISMATCH', 'cannot import state with lineage "M" over unrelated state with lineage "L"'],
  ];
  for (const [name, body, status, code, message] of refusals) {
    test(`${name}: ${status} ${code}, nothing stored, refusal audited`, async () => {
      const key = await freshKey();
      const before_ = await current(key);
      const res = await post(key, body);
      assert.equal(res.status, status);
      assert.deepEqual(errorOf(res), { code, message });
      assert.equal(await current(key), before_);
      assert.equal((await versions(key)).length, 1);
      const last = (await audit(key)).at(-1)!;
      assert.deepEqual([last.action, last.outcome, last.detail.code], ['state.write.refused', 'refused', code]);
    });
  }

  test('the same refusals apply to writes made under an ordinary apply lock', async () => {
    const key = await freshKey();
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody('apply-1') })).status, 200);
    assert.equal((await post(key, stateBody(4, 'L'), 'apply-1')).status, 409);
    assert.equal((await post(key, stateBody(1, 'M'), 'apply-1')).status, 409);
    assert.equal((await post(key, stateBody(6, 'L'), 'apply-1')).status, 200);
  });

  for (const operation of ['state-push', 'migration destination state']) {
    test(`exception: under a "${operation}" lock a lower serial or new lineage is stored as a forced overwrite, audited, the old version kept`, async () => {
      const key = await freshKey();
      const old = await current(key);
      assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody('push-1', operation) })).status, 200);
      const lower = stateBody(2, 'L', { outputs: { pushed: { value: true, type: 'bool' } } });
      assert.equal((await post(key, lower, 'push-1')).status, 200);
      assert.equal(await current(key), lower);
      const other = stateBody(1, 'N');
      assert.equal((await post(key, other, 'push-1')).status, 200);
      assert.equal(await current(key), other);
      const vs = await versions(key);
      assert.deepEqual(vs.map((v) => [v.serial, v.lineage, v.forced, v.operation]), [
        [5, 'L', null, null],
        [2, 'L', 'serial-lower', operation],
        [1, 'N', 'lineage-changed', operation],
      ]);
      assert.equal((await rawRequest(`${server.url}/api/v1/content/${key}?seq=1`)).text, old, 'the overwritten version is kept byte for byte');
      const forced = (await audit(key)).filter((a) => a.action === 'state.write.forced');
      assert.equal(forced.length, 2);
      assert.deepEqual(forced[0]!.detail.overwritten, { seq: 1, serial: 5, lineage: 'L' });
      assert.equal(forced[0]!.lockId, 'push-1');
      assert.equal(forced[0]!.detail.operation, operation);
    });
  }

  test('OpenTofu’s encrypted envelope is stored opaquely and its top-level serial and lineage are enforced', async () => {
    const envelope = (serial: number, lineage: string, data: string) =>
      JSON.stringify({ serial, lineage, meta: { 'key_provider.pbkdf2.main': 'eyJzYWx0IjoiYWJjIn0=' }, encrypted_data: data, encryption_version: 'v0' });
    const key = 'consistency/encrypted';
    const first = envelope(1, 'E', 'c2VjcmV0LTE=');
    assert.equal((await post(key, first)).status, 200);
    assert.equal(await current(key), first, 'returned byte for byte');
    assert.equal((await versions(key))[0]!.encrypted, true);
    assert.equal((await post(key, envelope(2, 'E', 'c2VjcmV0LTI='))).status, 200);
    assert.equal((await post(key, envelope(1, 'E', 'b2xk'))).status, 409, 'lower serial refused');
    assert.equal((await post(key, envelope(2, 'E', 'ZGlmZmVyZW50'))).status, 409, 'same serial, other ciphertext refused');
    assert.equal((await post(key, envelope(3, 'X', 'eA=='))).status, 409, 'other lineage refused');
    assert.equal((await post(key, envelope(2, 'E', 'c2VjcmV0LTI='))).status, 200, 'identical retry is fine');
    assert.equal((await versions(key)).length, 2);
  });

  test('a soft-deleted key is empty again for the rules, and keeps its old versions', async () => {
    const key = await freshKey();
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'DELETE' })).status, 200);
    assert.equal((await rawRequest(`${server.url}/state/${key}`)).status, 404);
    assert.equal((await post(key, stateBody(1, 'fresh-lineage'))).status, 200);
    assert.deepEqual((await versions(key)).map((v) => [v.seq, v.serial, v.lineage]), [
      [1, 5, 'L'],
      [2, 1, 'fresh-lineage'],
    ]);
  });

  test('DELETE is refused while the key is locked', async () => {
    const key = await freshKey();
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody('d-1') })).status, 200);
    const res = await rawRequest(`${server.url}/state/${key}`, { method: 'DELETE' });
    assert.equal(res.status, 423);
    assert.equal(res.text, lockBody('d-1'));
    assert.equal((await rawRequest(`${server.url}/state/${key}`)).status, 200);
  });

  test('PUT works like POST (update_method = "PUT")', async () => {
    const key = await freshKey();
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'PUT', body: stateBody(6, 'L') })).status, 200);
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'PUT', body: stateBody(1, 'L') })).status, 409);
  });
});
