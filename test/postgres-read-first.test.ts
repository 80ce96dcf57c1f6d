import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { ClientContext } from '../src/audit/audit-entry.js';
import { StatelockError } from '../src/server/errors.js';
import { PostgresStore } from '../src/store/postgres/postgres-store.js';
import type { KeySnapshot } from '../src/store/store.js';
import { lockBody, rawRequest } from './support/http.js';
import { PG_SKIP_REASON, pgAvailable, startPostgres, type PgCluster } from './support/postgres.js';
import { startServer, type RunningServer } from './support/server-process.js';

/**
 * UpdateOptions.readFirst on PostgreSQL: a retried LOCK that is refused again is decided on a committed snapshot,
 * without queueing on the key's write lock. Here another session holds that lock (the advisory lock every
 * update of the key takes) for as long as the test wants, standing for a slow transaction on the key.
 */
const client: ClientContext = { addr: '127.0.0.1', userAgent: 'test', principal: null };
/** Long enough for one query on a loaded machine; an update that waits for the key's lock never settles before it is freed. */
const SETTLES_WITHIN_MS = 10_000;

function settled<T>(p: Promise<T>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
}

describe('PostgreSQL store: readFirst', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  let cluster: PgCluster;
  let store: PostgresStore;
  let other: pg.Client;
  const holdKey = (key: string) => other.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key]);
  const freeKey = (key: string) => other.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]);

  before(async () => {
    cluster = await startPostgres();
    store = await PostgresStore.open(cluster.url);
    other = new pg.Client({ connectionString: cluster.url });
    await other.connect();
    const lock = { key: 'rf/a', id: 'holder', operation: 'OperationTypeApply', who: 'alice@build-07', version: '1.15.0', created: '2026-08-21T13:10:23.12345Z', info: '', path: '', raw: lockBody('holder'), acquiredAt: '2026-11-27T00:00:00.000Z', lastActivityAt: '2026-11-27T00:00:00.000Z', clientAddr: '127.0.0.1', userAgent: 'test', sessionId: null, holds: ['http' as const] };
    await store.update('rf/a', client, () => ({ result: null, changes: { lock: { set: lock } } }));
  });
  after(async () => {
    await other?.end();
    await store?.close();
    await cluster?.stop('fast');
  });

  test('a decision that writes nothing is answered from a committed snapshot while the key is locked elsewhere', async () => {
    await holdKey('rf/a');
    try {
      const seen: Array<string | null> = [];
      const refusal = store.update(
        'rf/a',
        client,
        (snap: KeySnapshot) => {
          seen.push(snap.lock?.id ?? null);
          return { error: new StatelockError('STATE_LOCKED', { holder: snap.lock?.id ?? '' }), changes: {} };
        },
        { readFirst: true },
      );
      assert.equal(await settled(refusal, SETTLES_WITHIN_MS), true, 'answered without waiting for the key');
      await assert.rejects(refusal, (err: unknown) => err instanceof StatelockError && err.code === 'STATE_LOCKED');
      assert.deepEqual(seen, ['holder'], 'decided once, on the committed lock');
    } finally {
      await freeKey('rf/a');
    }
  });

  test('a decision that writes waits for the key, is decided again under its lock, and is committed once', async () => {
    await holdKey('rf/a');
    const calls: number[] = [];
    let n = 0;
    const write = store.update(
      'rf/a',
      client,
      (snap: KeySnapshot) => {
        calls.push(++n);
        return { result: snap.lock?.id ?? null, changes: { lock: { touch: `2026-11-27T00:00:0${n}.000Z` } } };
      },
      { readFirst: true },
    );
    try {
      assert.equal(await settled(write, 1_500), false, 'still waiting for the key');
    } finally {
      await freeKey('rf/a');
    }
    assert.equal(await write, 'holder');
    assert.deepEqual(calls, [1, 2], 'once on the unlocked snapshot (thrown away), once under the lock');
    assert.equal((await store.getLock('rf/a'))?.lastActivityAt, '2026-11-27T00:00:02.000Z', 'the decision under the lock is the one committed');
  });

  test('without readFirst, even a decision that writes nothing waits for the key', async () => {
    await holdKey('rf/a');
    const read = store.update('rf/a', client, (snap: KeySnapshot) => ({ result: snap.lock?.id ?? null, changes: {} }));
    try {
      assert.equal(await settled(read, 1_500), false);
    } finally {
      await freeKey('rf/a');
    }
    assert.equal(await read, 'holder');
  });
});

describe('PostgreSQL engine: Terraform retrying a refused LOCK', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  let cluster: PgCluster;
  let server: RunningServer;
  let other: pg.Client;
  before(async () => {
    cluster = await startPostgres();
    server = await startServer({ args: ['--database', cluster.url] });
    other = new pg.Client({ connectionString: cluster.url });
    await other.connect();
  });
  after(async () => {
    await other?.end();
    await server?.stop();
    await cluster?.stop('fast');
  });

  test('a retry with the refused ID is answered 423 without the key; a new ID still decides under it', async () => {
    const lock = (id: string) => rawRequest(`${server.url}/state/rf/tf`, { method: 'LOCK', body: lockBody(id) });
    assert.equal((await lock('holder')).status, 200);
    assert.equal((await lock('waiter')).status, 423);
    await other.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', ['rf/tf']);
    let fresh: Promise<Awaited<ReturnType<typeof lock>>>;
    try {
      const retry = lock('waiter');
      assert.equal(await settled(retry, SETTLES_WITHIN_MS), true, 'the retry did not wait for the key');
      assert.equal((await retry).status, 423);
      assert.match((await retry).text, /"ID":"holder"/, "the refusal carries the holder's lock info");
      fresh = lock('newcomer');
      assert.equal(await settled(fresh, 1_500), false, 'a first attempt (its conflict is audited) waits for the key');
    } finally {
      await other.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', ['rf/tf']);
    }
    assert.equal((await fresh).status, 423);
    const trail = (await rawRequest(`${server.url}/api/v1/audit?key=rf/tf&action=lock.conflict`)).json<{ items: Array<{ lockId: string }> }>();
    assert.deepEqual(trail.items.map((e) => e.lockId), ['waiter', 'newcomer']);
  });
});
