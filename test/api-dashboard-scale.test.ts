import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tempDir, type RunningServer } from './support/server-process.js';
import { rawRequest } from './support/http.js';
import { seedStates } from './support/seed-sqlite.js';

/**
 * The states listing the dashboard pages through, at the scale: 100,000 keys in a real SQLite
 * file, served by a real server process. Pages are cursor-based, so every page is one indexed range scan.
 */
const COUNT = 100_000;
let server: RunningServer;
let keys: string[];

before(async () => {
  const dir = tempDir();
  keys = await seedStates(dir, COUNT);
  server = await startServer({ dataDir: dir });
});
after(async () => {
  await server?.stop();
});

interface StatesPage {
  items: Array<{ key: string }>;
  next: string | null;
  total?: number;
}
const page = async (query: string): Promise<StatesPage> => {
  const r = await rawRequest(`${server.url}/api/v1/states?${query}`);
  assert.equal(r.status, 200, r.text);
  return r.json<StatesPage>();
};

describe(`states listing with ${COUNT.toLocaleString('en')} keys`, () => {
  test('the first page, the total, and the pages after it follow the cursor in key order', async () => {
    const first = await page('limit=50&count=true');
    assert.equal(first.total, COUNT);
    assert.deepEqual(first.items.map((s) => s.key), keys.slice(0, 50));
    const second = await page(`limit=50&after=${encodeURIComponent(first.next!)}`);
    assert.deepEqual(second.items.map((s) => s.key), keys.slice(50, 100));
  });

  test('a prefix search counts and lists only its keys; the last page has no next', async () => {
    const found = await page(`limit=50&count=true&prefix=${encodeURIComponent('fleet/svc-0999')}`);
    assert.equal(found.total, 100);
    assert.deepEqual(found.items.map((s) => s.key), keys.slice(99_900, 99_950));
    const last = await page(`limit=50&prefix=${encodeURIComponent('fleet/svc-0999')}&after=${encodeURIComponent(found.next!)}`);
    assert.deepEqual(last.items.map((s) => s.key), keys.slice(99_950));
    assert.equal(last.next, null);
  });

  test('the overview counts every state', async () => {
    const r = await rawRequest(`${server.url}/api/v1/overview`);
    assert.equal(r.json<{ states: number }>().states, COUNT);
  });
});
