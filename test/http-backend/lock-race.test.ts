import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';

/**
 * Two clients race for one lock, round after round: exactly one may win each round. The second suite
 * runs two server processes on one SQLite file, so the guarantee has to come from the store's
 * transaction, not from Node's single thread.
 */
async function race(urls: [string, string], rounds: number) {
  for (let round = 0; round < rounds; round++) {
    const url = (i: number) => `${urls[i]}/state/race/key-${round % 5}`;
    const ids = [`a-${round}`, `b-${round}`];
    const answers = await Promise.all(ids.map((id, i) => rawRequest(url(i), { method: 'LOCK', body: lockBody(id) })));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [200, 423], `round ${round}: one 200 and one 423, got ${statuses}`);
    const winner = answers[0]!.status === 200 ? 0 : 1;
    const loser = 1 - winner;
    assert.equal(JSON.parse(answers[loser]!.text).ID, ids[winner], `round ${round}: the loser is shown the winner's lock`);
    const released = await rawRequest(url(winner), { method: 'UNLOCK', body: lockBody(ids[winner]!) });
    assert.equal(released.status, 200);
  }
}

describe('lock race on one server', () => {
  let server: RunningServer;
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));

  test('200 rounds: exactly one winner each round', async () => {
    await race([server.url, server.url], 200);
    const audit = await rawRequest(`${server.url}/api/v1/audit?action=lock.acquire&limit=1000`);
    assert.equal(audit.json<{ items: unknown[] }>().items.length, 200);
  });
});

describe('lock race across two server processes on one SQLite file', () => {
  let a: RunningServer;
  let b: RunningServer;
  before(async () => {
    const dataDir = tempDir();
    a = await startServer({ dataDir });
    b = await startServer({ dataDir });
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });

  test('100 rounds: exactly one winner each round, whichever process answers', async () => {
    await race([a.url, b.url], 100);
  });

  test('a lock taken through one process is seen and enforced by the other', async () => {
    assert.equal((await rawRequest(`${a.url}/state/shared/k`, { method: 'LOCK', body: lockBody('first') })).status, 200);
    const refused = await rawRequest(`${b.url}/state/shared/k`, { method: 'LOCK', body: lockBody('second') });
    assert.equal(refused.status, 423);
    assert.equal(refused.text, lockBody('first'));
  });
});
