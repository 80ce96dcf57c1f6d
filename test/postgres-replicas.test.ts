import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody, type RawResponse } from './support/http.js';
import { PG_SKIP_REASON, pgAvailable, psql, startPostgres, type PgCluster } from './support/postgres.js';
import { startServer, type RunningServer } from './support/server-process.js';
import { POSTGRES_MIGRATIONS } from '../src/store/postgres/postgres-migrations.js';

/**
 * Several statelock replicas on one PostgreSQL database, checked from the clients' own records:
 * no two holders ever overlap, no acknowledged write is lost or forked, serials only increase,
 * and a PostgreSQL outage is a 503 (which Terraform retries) followed by full recovery.
 */
describe('PostgreSQL: three replicas on one database', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  let pg: PgCluster;
  const replicas: RunningServer[] = [];
  before(async () => {
    pg = await startPostgres();
    for (let i = 0; i < 3; i++) replicas.push(await startServer({ args: ['--database', pg.url] }));
  });
  after(async () => {
    for (const r of replicas) await r.stop();
    await pg.stop('fast');
  });
  const replica = (i: number) => replicas[i % replicas.length]!.url;

  /**
   * Like Terraform's client: retry 5xx (and connection errors) with a short backoff, a bounded number of times.
   * `retried` tells whether an attempt before the answer failed: its outcome is unknown (PostgreSQL may have
   * committed it just before it crashed, and the answer was lost with the connection).
   */
  async function retrying(url: string, opts: Parameters<typeof rawRequest>[1], outages: { count: number }): Promise<RawResponse & { retried: boolean }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await rawRequest(url, opts);
        if (res.status < 500 || attempt >= 200) return Object.assign(res, { retried: attempt > 0 });
        outages.count++;
      } catch (err) {
        if (attempt >= 200) throw err;
        outages.count++;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Whether the audit trail holds a committed release of lock `id` on `key` (lock.release, outcome ok). */
  async function releaseCommitted(key: string, id: string): Promise<boolean> {
    for (let after = '0'; ; ) {
      const page = (await rawRequest(`${replica(0)}/api/v1/audit?key=${key}&action=lock.release&limit=1000&after=${after}`)).json<{ items: Array<{ lockId: string; outcome: string }>; next: string | null }>();
      if (page.items.some((e) => e.lockId === id && e.outcome === 'ok')) return true;
      if (!page.next) return false;
      after = page.next;
    }
  }

  interface Hold {
    key: string;
    client: number;
    round: number;
    granted: number;
    released: number;
  }

  /** One client: `rounds` times, lock a random key on a random replica, write the next serial, unlock. */
  async function worker(client: number, keys: string[], rounds: number, holds: Hold[], acked: Map<string, string[]>, outages: { count: number }, stopAt = Infinity) {
    for (let round = 0; round < rounds && Date.now() < stopAt; round++) {
      const key = keys[(client * 7 + round) % keys.length]!;
      const url = `${replica(client + round)}/state/${key}`;
      const id = `c${client}-r${round}`;
      const lock = await retrying(url, { method: 'LOCK', body: lockBody(id) }, outages);
      if (lock.status !== 200) continue; // 423: someone else holds it; try another round
      const granted = performance.now();
      const current = await retrying(url, {}, outages);
      const serial = current.status === 200 ? current.json<{ serial: number }>().serial + 1 : 1;
      const body = stateBody(serial, `lineage-${key}`, { outputs: { by: { value: id, type: 'string' } } });
      const write = await retrying(`${url}?ID=${id}`, { method: 'POST', body }, outages);
      if (write.status === 200) acked.get(key)!.push(body);
      const released = performance.now();
      const unlock = await retrying(url, { method: 'UNLOCK', body: lockBody(id) }, outages);
      if (unlock.status === 409 && unlock.retried) {
        // An UNLOCK that PostgreSQL committed just before it crashed loses its answer; the retry then finds the
        // next holder's lock. Correct, if the trail shows this release committed.
        assert.ok(await releaseCommitted(key, id), `unlock ${id} (after a failed attempt): ${unlock.text}, and no committed release in the trail`);
        console.log(`# unlock ${id}: committed before the crash, its answer lost; the retry found the next holder`);
      } else assert.equal(unlock.status, 200, `unlock ${id}: ${unlock.text}`);
      holds.push({ key, client, round, granted, released });
    }
  }

  function assertExclusive(holds: Hold[]): number {
    const byKey = new Map<string, Hold[]>();
    for (const h of holds) byKey.set(h.key, [...(byKey.get(h.key) ?? []), h]);
    for (const [key, list] of byKey) {
      list.sort((a, b) => a.granted - b.granted);
      for (let i = 1; i < list.length; i++) {
        assert.ok(list[i]!.granted >= list[i - 1]!.released, `${key}: client ${list[i]!.client} was granted the lock while client ${list[i - 1]!.client} still held it`);
      }
    }
    return holds.length;
  }

  async function assertHistory(keys: string[], acked: Map<string, string[]>) {
    for (const key of keys) {
      const versions = (await rawRequest(`${replica(0)}/api/v1/versions/${key}?limit=1000`)).json<{ items: Array<{ serial: number; sha256: string }> }>().items;
      const bodies = acked.get(key)!;
      assert.deepEqual(versions.map((v) => v.serial), bodies.map((_, i) => i + 1), `${key}: serials 1, 2, 3 … with no gap, repeat or fork`);
      for (const [i, body] of bodies.entries()) {
        const stored = await rawRequest(`${replica(i)}/api/v1/content/${key}?seq=${i + 1}`);
        assert.equal(stored.text, body, `${key} version ${i + 1} is the acknowledged write, byte for byte`);
      }
    }
  }

  test('32 clients racing for 4 keys across 3 replicas: no overlapping holders, no lost or forked write', async () => {
    const keys = ['race/a', 'race/b', 'race/c', 'race/d'];
    const acked = new Map(keys.map((k) => [k, [] as string[]]));
    const holds: Hold[] = [];
    const outages = { count: 0 };
    await Promise.all(Array.from({ length: 32 }, (_, c) => worker(c, keys, 25, holds, acked, outages)));
    const checked = assertExclusive(holds);
    assert.ok(checked >= 40, `enough acquisitions to mean something (${checked})`);
    const last = holds[holds.length - 1]!;
    assert.equal(await releaseCommitted(last.key, `c${last.client}-r${last.round}`), true, 'the trail check the outage test relies on finds a release');
    assert.equal(await releaseCommitted(last.key, 'never-held'), false);
    assert.equal(outages.count, 0, 'no 5xx without an outage');
    await assertHistory(keys, acked);
    console.log(`# ${checked} acquisitions checked, ${[...acked.values()].reduce((n, b) => n + b.length, 0)} acknowledged writes verified`);
  });

  test("Terraform's -lock-timeout across replicas: 24 clients retry a refused LOCK with the same ID, each retry on another replica; no two holders overlap", async () => {
    // A retried ID is refused from one committed read, without the key's advisory lock (UpdateOptions.readFirst):
    // whatever a replica decides that way, a grant must still be exclusive.
    const keys = ['retry/a', 'retry/b'];
    const holds: Hold[] = [];
    const outages = { count: 0 };
    let refusals = 0;
    await Promise.all(
      Array.from({ length: 24 }, async (_, client) => {
        for (let round = 0; round < 6; round++) {
          const key = keys[(client + round) % keys.length]!;
          const id = `t${client}-r${round}`;
          let granted = 0;
          for (let tries = 0; !granted; tries++) {
            const lock = await retrying(`${replica(client + tries)}/state/${key}`, { method: 'LOCK', body: lockBody(id) }, outages);
            if (lock.status === 200) granted = performance.now();
            else {
              assert.equal(lock.status, 423, `${id}: ${lock.text}`);
              refusals++;
              await new Promise((r) => setTimeout(r, Math.min(8, 2 ** tries)));
            }
          }
          // Hold it for a moment, as a plan would.
          await new Promise((r) => setTimeout(r, 1));
          const released = performance.now();
          const unlock = await retrying(`${replica(client + round)}/state/${key}`, { method: 'UNLOCK', body: lockBody(id) }, outages);
          assert.equal(unlock.status, 200, `unlock ${id}: ${unlock.text}`);
          holds.push({ key, client, round, granted, released });
        }
      }),
    );
    assert.equal(assertExclusive(holds), 24 * 6);
    assert.ok(refusals >= 24, `the clients did wait for each other (${refusals} refusals)`);
    assert.equal(outages.count, 0, 'no 5xx without an outage');
    const conflicts = (await rawRequest(`${replica(0)}/api/v1/audit?action=lock.conflict&limit=1000`)).json<{ items: Array<{ key: string; lockId: string }> }>().items.filter((e) => keys.includes(e.key));
    // Each replica remembers the conflicts it audited (in memory): at most one entry per key, waiting ID and replica.
    const perPair = new Map<string, number>();
    for (const e of conflicts) perPair.set(`${e.key} ${e.lockId}`, (perPair.get(`${e.key} ${e.lockId}`) ?? 0) + 1);
    assert.ok(Math.max(...perPair.values()) <= replicas.length, `at most one conflict per waiting ID and replica: ${JSON.stringify([...perPair].filter(([, n]) => n > replicas.length))}`);
    console.log(`# ${holds.length} acquisitions checked across 3 replicas, ${refusals} refusals, ${conflicts.length} conflicts audited`);
  });

  test('a waiter on one replica is woken by a release on another (LISTEN/NOTIFY), not by polling', async () => {
    const key = 'replicas/wait';
    assert.equal((await rawRequest(`${replica(0)}/state/${key}`, { method: 'LOCK', body: lockBody('holder') })).status, 200);
    const waiting = rawRequest(`${replica(1)}/state/${key}?wait=30s`, { method: 'LOCK', body: lockBody('waiter') });
    for (let i = 0; i < 500; i++) {
      if ((await rawRequest(`${replica(1)}/api/v1/locks/${key}`)).json<{ waiters?: number }>().waiters === 1) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const released = performance.now();
    assert.equal((await rawRequest(`${replica(2)}/state/${key}`, { method: 'UNLOCK', body: lockBody('holder') })).status, 200);
    const granted = await waiting;
    const handoff = performance.now() - released;
    assert.equal(granted.status, 200);
    assert.ok(handoff < 5_000, `granted ${Math.round(handoff)} ms after the release on another replica`);
    console.log(`# cross-replica hand-off: ${Math.round(handoff)} ms (includes the UNLOCK round trip)`);
  });

  test('PostgreSQL crashes under load: 503s during the outage, full recovery, every acknowledged write present', async () => {
    const keys = ['outage/a', 'outage/b', 'outage/c'];
    const acked = new Map(keys.map((k) => [k, [] as string[]]));
    const holds: Hold[] = [];
    const outages = { count: 0 };
    const load = Promise.all(Array.from({ length: 8 }, (_, c) => worker(c, keys, 1_000, holds, acked, outages, Date.now() + 6_000)));
    while ([...acked.values()].reduce((n, b) => n + b.length, 0) < 10) await new Promise((r) => setTimeout(r, 20));
    await pg.stop('immediate'); // a crash, not a clean shutdown
    const during = await rawRequest(`${replica(0)}/state/${keys[0]}`);
    assert.equal(during.status, 503, `while PostgreSQL is down: ${during.text}`);
    assert.equal(during.headers['retry-after'], '1');
    await new Promise((r) => setTimeout(r, 300));
    await pg.start();
    await load;
    assert.ok(outages.count > 0, 'the clients saw the outage');
    for (const r of replicas) assert.equal((await rawRequest(`${r.url}/readyz`)).status, 200, 'every replica recovered by itself');
    assertExclusive(holds);
    await assertHistory(keys, acked);
    console.log(`# outage: ${outages.count} retried requests; ${[...acked.values()].reduce((n, b) => n + b.length, 0)} acknowledged writes verified after recovery`);
  });
});

describe('PostgreSQL: replicas starting at once', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  test('three replicas started together on an empty database migrate it once and all serve', async () => {
    const pg = await startPostgres();
    let replicas: RunningServer[] = [];
    try {
      replicas = await Promise.all([0, 1, 2].map(() => startServer({ args: ['--database', pg.url] })));
      for (const r of replicas) assert.equal((await rawRequest(`${r.url}/readyz`)).json<{ engine: string }>().engine, 'postgres');
      assert.equal((await psql(pg, 'SELECT count(*) FROM statelock_migrations')).trim(), String(POSTGRES_MIGRATIONS.length), 'each migration applied exactly once');
      assert.equal((await rawRequest(`${replicas[0]!.url}/state/boot/k`, { method: 'POST', body: stateBody(1, 'L') })).status, 200);
      assert.equal((await rawRequest(`${replicas[2]!.url}/state/boot/k`)).status, 200, 'one database behind every replica');
      for (const r of replicas) assert.equal(await r.stop(), 0);
    } finally {
      // A failed assertion must not leave replicas running: they would keep the test process alive.
      await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
      await pg.stop('fast');
    }
  });
});

