import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { startServer, tempDir } from './support/server-process.js';

test('restarting the server keeps states, versions, locks and the audit trail', async () => {
  const dataDir = tempDir();
  const first = await startServer({ dataDir });
  const key = `${first.url}/state/acme/lesson-17/terraform.tfstate`;
  assert.equal((await rawRequest(key, { method: 'LOCK', body: lockBody('L1') })).status, 200);
  const bodies = [1, 2, 3].map((serial) => stateBody(serial, 'lin-1', { outputs: { n: { value: serial, type: 'number' } } }));
  for (const body of bodies) assert.equal((await rawRequest(`${key}?ID=L1`, { method: 'POST', body })).status, 200);
  assert.equal(await first.stop('SIGTERM'), 0);

  const second = await startServer({ dataDir });
  const k2 = `${second.url}/state/acme/lesson-17/terraform.tfstate`;
  const got = await rawRequest(k2);
  assert.equal(got.status, 200);
  assert.equal(got.text, bodies[2], 'current bytes survive byte for byte');
  const versions = await rawRequest(`${second.url}/api/v1/versions/acme/lesson-17/terraform.tfstate`);
  assert.deepEqual(versions.json<{ items: Array<{ serial: number }> }>().items.map((v) => v.serial), [1, 2, 3]);
  for (const [i, body] of bodies.entries()) {
    assert.equal((await rawRequest(`${second.url}/api/v1/content/acme/lesson-17/terraform.tfstate?seq=${i + 1}`)).text, body);
  }
  const refused = await rawRequest(k2, { method: 'LOCK', body: lockBody('L2') });
  assert.equal(refused.status, 423, 'the lock is still held after the restart');
  assert.equal(refused.text, lockBody('L1'));
  const audit = await rawRequest(`${second.url}/api/v1/audit?key=acme/lesson-17/terraform.tfstate`);
  assert.deepEqual(audit.json<{ items: Array<{ action: string }> }>().items.map((a) => a.action), ['lock.acquire', 'state.write', 'state.write', 'state.write', 'lock.conflict'], 'the LOCK refused just above is on the record too');
  await second.stop();
});

test('a SIGKILLed server loses no acknowledged write', async () => {
  const dataDir = tempDir();
  const first = await startServer({ dataDir });
  const acknowledged: string[] = [];
  for (let serial = 1; serial <= 30; serial++) {
    const body = stateBody(serial, 'lin-k');
    const res = await rawRequest(`${first.url}/state/crash/k`, { method: 'POST', body });
    if (res.status === 200) acknowledged.push(body);
  }
  await first.stop('SIGKILL');
  const second = await startServer({ dataDir });
  const versions = await rawRequest(`${second.url}/api/v1/versions/crash/k?limit=1000`);
  assert.equal(versions.json<{ items: unknown[] }>().items.length, acknowledged.length);
  assert.equal((await rawRequest(`${second.url}/state/crash/k`)).text, acknowledged.at(-1));
  await second.stop();
});
