import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startServer, tempDir, type RunningServer } from './support/server-process.js';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { PG_SKIP_REASON, pgAvailable, startPostgres, type PgCluster } from './support/postgres.js';
import { seedStatesPostgres } from './support/seed-postgres.js';
import { seedStates } from './support/seed-sqlite.js';

/**
 * The listings the dashboard pages through, at the scale: 100,000 keys in a real SQLite file, and the
 * same rows in a real PostgreSQL database, each served by a real server process. Pages are cursor-based, so
 * every page is one indexed range scan. The PostgreSQL seed (seed-postgres.ts, which the bench's scale suite
 * uses too) builds its rows inside the database: the versions, bodies and locks it made must read back as the
 * SQLite seed's do.
 */
const COUNT = 100_000;
const VERSIONS_PER_KEY = 2;
const LOCKED = 30;

interface StatesPage {
  items: Array<{ key: string; serial: number; lineage: string }>;
  next: string | null;
  total?: number;
}

const md5b64 = (s: string) => createHash('md5').update(s).digest('base64');

function scaleCases(engine: string, seed: (dataDir: string) => Promise<{ keys: string[]; args: string[] }>, skip: false | string): void {
  describe(`states listing with ${COUNT.toLocaleString('en')} keys, ${engine}`, { skip }, () => {
    let server: RunningServer;
    let keys: string[];
    before(async () => {
      const dir = tempDir();
      const seeded = await seed(dir);
      keys = seeded.keys;
      server = await startServer({ dataDir: dir, args: seeded.args });
    });
    after(async () => {
      await server?.stop();
    });
    const get = async (path: string) => {
      const r = await rawRequest(`${server.url}${path}`);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      return r;
    };
    const page = async (query: string) => (await get(`/api/v1/states?${query}`)).json<StatesPage>();

    test('the first page, the total, and the pages after it follow the cursor in key order', async () => {
      const first = await page('limit=50&count=true');
      assert.equal(first.total, COUNT);
      assert.deepEqual(first.items.map((s) => s.key), keys.slice(0, 50));
      assert.deepEqual([first.items[7]!.serial, first.items[7]!.lineage], [VERSIONS_PER_KEY, 'seed-7']);
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
      assert.equal((await get('/api/v1/overview')).json<{ states: number }>().states, COUNT);
    });

    test("a key's versions and its current body read back as written (the seed's rows are real ones)", async () => {
      const key = keys[54_321]!;
      const versions = (await get(`/api/v1/versions/${key}`)).json<{ items: Array<{ seq: number; serial: number; lineage: string; md5: string; size: number }> }>();
      const bodies = Array.from({ length: VERSIONS_PER_KEY }, (_, i) => stateBody(i + 1, 'seed-54321'));
      assert.deepEqual(
        versions.items.map((v) => [v.seq, v.serial, v.lineage, v.md5, v.size]),
        bodies.map((b, i) => [i + 1, i + 1, 'seed-54321', md5b64(b), Buffer.byteLength(b)]),
      );
      const current = await get(`/state/${key}`);
      assert.equal(current.text, bodies.at(-1));
      assert.equal(current.headers['content-md5'], md5b64(bodies.at(-1)!));
      assert.equal(current.headers.etag, `"${createHash('sha256').update(bodies.at(-1)!).digest('hex')}"`);
    });

    test('the lock listing has every held lock, with the lock info as Terraform sent it', async () => {
      const locks = (await get('/api/v1/locks?limit=1000')).json<{ items: Array<{ key: string; info: unknown }> }>();
      assert.deepEqual(locks.items.map((l) => l.key), keys.slice(0, LOCKED));
      assert.deepEqual(locks.items[3]!.info, JSON.parse(lockBody('seed-lock-3')));
    });
  });
}

scaleCases('SQLite', async (dir) => ({ keys: await seedStates(dir, COUNT, { versionsPerKey: VERSIONS_PER_KEY, locked: LOCKED }), args: [] }), false);

let pg: PgCluster | null = null;
after(async () => {
  await pg?.stop('fast');
});
scaleCases(
  'PostgreSQL',
  async () => {
    pg = await startPostgres();
    return { keys: await seedStatesPostgres(pg.url, COUNT, { versionsPerKey: VERSIONS_PER_KEY, locked: LOCKED }), args: ['--database', pg.url] };
  },
  pgAvailable() ? false : PG_SKIP_REASON,
);
