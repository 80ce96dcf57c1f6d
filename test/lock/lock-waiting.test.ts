import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import type { ClientContext } from '../../src/audit/audit-entry.js';
import { LockService } from '../../src/lock/lock-service.js';
import { LockWaiters } from '../../src/lock/lock-waiters.js';
import { StatelockError } from '../../src/server/errors.js';
import { Metrics } from '../../src/server/metrics.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { lockBody } from '../support/http.js';
import { tempDir } from '../support/server-process.js';

/**
 * The server-side wait queue when store updates take time (a group commit waits for its batch, an fsync,
 * PostgreSQL's round trips): a release must never be lost while a hand-off is running, and a waiter's
 * deadline or departure must never leave it holding a lock it was told it did not get.
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'lock-waiting-test', principal: null };
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Until `key`'s waiter is in line: queued, and its look on joining (a refused attempt, a commit with an fsync) is
 * over. A fixed sleep was not enough on a slow disk: the release came first and the tests saw another order.
 */
async function inLine(locks: LockService, key: string): Promise<void> {
  for (let i = 0; locks.waiters.count(key) === 0 || locks.waiters.handingOff(key); i++) {
    assert.ok(i < 2000, `the waiter on ${key} never joined the line`);
    await sleep(5);
  }
}

/**
 * A real SQLite store whose n-th update (1, 2, 3 …) resolves `delayMs(n)` after it committed (a slow
 * disk), calling `committed(n)` in between.
 */
function slowStore(delayMs: (n: number) => number, committed: (n: number) => void = () => undefined): { store: Store; inner: SqliteStore } {
  const dir = tempDir('statelock-lock-waiting-');
  dirs.push(dir);
  const inner = new SqliteStore(dir);
  const store = Object.create(inner) as Store;
  let calls = 0;
  store.update = async <T>(...args: Parameters<Store['update']>) => {
    const n = ++calls;
    try {
      return (await inner.update(...args)) as T;
    } finally {
      committed(n);
      await sleep(delayMs(n));
    }
  };
  return { store, inner };
}

/** A real SQLite store and lock service where 'holder' holds `key` and 'waiter' waits in line for it (up to 10 s). */
async function holderAndWaiter(key: string) {
  const dir = tempDir('statelock-lock-waiting-');
  dirs.push(dir);
  const store = new SqliteStore(dir);
  const locks = new LockService(store, new Metrics());
  await locks.lock(key, Buffer.from(lockBody('holder')), client);
  const granted = locks.lock(key, Buffer.from(lockBody('waiter')), client, { waitMs: 10_000 });
  await inLine(locks, key);
  return { store, locks, granted };
}

describe('LockWaiters', () => {
  test('a release that arrives while a hand-off is running makes it try again', async () => {
    const waiters = new LockWaiters();
    const answers: Array<(granted: boolean) => void> = [];
    let attempts = 0;
    waiters.enqueue('k', {
      attempt: () => {
        attempts++;
        return new Promise<boolean>((resolve) => answers.push(resolve));
      },
    });
    const handOff = waiters.wake('k');
    assert.equal(attempts, 1);
    // The lock is released again while the first attempt is being decided …
    await waiters.wake('k');
    assert.equal(attempts, 1, 'one hand-off at a time');
    // … and the first attempt is refused (it was decided before that release): the hand-off looks again.
    answers[0]!(false);
    await sleep(0);
    assert.equal(attempts, 2, 'the release was not dropped');
    answers[1]!(true);
    await handOff;
    assert.equal(waiters.count('k'), 0);
  });

  test('without a release meanwhile, a refused attempt ends the hand-off', async () => {
    const waiters = new LockWaiters();
    let attempts = 0;
    waiters.enqueue('k', { attempt: async () => (attempts++, false) });
    await waiters.wake('k');
    assert.equal(attempts, 1);
    assert.equal(waiters.count('k'), 1);
  });
});

describe('LOCK ?wait= with slow store updates', () => {
  // Updates: 1 the holder's LOCK, 2 the waiter's first try and 3 its try on joining the line (both refused),
  // 4 the holder's UNLOCK, 5 the waiter's attempt in line.
  test('a grant decided after the deadline is answered as a grant, never as a refusal with the lock held', async () => {
    const { store, inner } = slowStore((n) => (n === 5 ? 1000 : 0));
    const locks = new LockService(store, new Metrics());
    await locks.lock('w/deadline', Buffer.from(lockBody('holder')), client);
    const waiting = locks.lock('w/deadline', Buffer.from(lockBody('waiter')), client, { waitMs: 300 });
    const outcome = waiting.then(
      (r) => ({ granted: true as const, id: r.lock.id }),
      (err: unknown) => ({ granted: false as const, code: (err as StatelockError).code }),
    );
    await inLine(locks, 'w/deadline'); // the waiter's first try was refused and it joined the line
    // The release hands the lock to the waiter at once; that attempt resolves 1 s later, after the 300 ms deadline.
    await locks.unlockFromBody('w/deadline', Buffer.from(lockBody('holder')), client);
    const result = await outcome;
    const held = await inner.getLock('w/deadline');
    assert.deepEqual(result, { granted: true, id: 'waiter' }, 'the lock it was given is reported');
    assert.equal(held?.id, 'waiter');
    await inner.close();
  });

  test('a grant decided after the waiting client went away is given straight back', async () => {
    const abort = new AbortController();
    // The client hangs up once its attempt in line has committed, before the answer reaches it.
    const { store, inner } = slowStore((n) => (n === 5 ? 200 : 0), (n) => n === 5 && abort.abort());
    const locks = new LockService(store, new Metrics());
    await locks.lock('w/gone', Buffer.from(lockBody('holder')), client);
    const waiting = locks.lock('w/gone', Buffer.from(lockBody('waiter')), client, { waitMs: 10_000, signal: abort.signal });
    const outcome = waiting.then(
      () => 'granted',
      (err: unknown) => (err as StatelockError).code,
    );
    await inLine(locks, 'w/gone');
    await locks.unlockFromBody('w/gone', Buffer.from(lockBody('holder')), client);
    assert.equal(await outcome, 'STATE_LOCKED', 'the client that left is not answered with a grant');
    for (let i = 0; i < 50 && (await inner.getLock('w/gone')) !== null; i++) await sleep(20);
    assert.equal(await inner.getLock('w/gone'), null, 'the lock it got meanwhile was released');
    const audit = await inner.listAudit({ key: 'w/gone', limit: 10 });
    assert.deepEqual(audit.items.map((e) => `${e.action} ${e.lockId}`), ['lock.acquire holder', 'lock.conflict waiter', 'lock.release holder', 'lock.acquire waiter', 'lock.release waiter']);
    await inner.close();
  });

  test('on SQLite a release and the grant to the first waiter share one COMMIT, and both are answered after it', async () => {
    const { store, locks, granted } = await holderAndWaiter('w/handoff');
    const before = store.commits;
    const order: string[] = [];
    const released = locks.unlockFromBody('w/handoff', Buffer.from(lockBody('holder')), client).then((r) => order.push(`unlock ${r.outcome}`));
    const grant = granted.then((r) => order.push(`lock ${r.outcome} ${r.lock.id}`));
    await Promise.all([released, grant]);
    assert.equal(store.commits - before, 1, 'the release and the grant were committed together');
    assert.deepEqual(order.sort(), ['lock acquired waiter', 'unlock released']);
    assert.equal((await store.getLock('w/handoff'))?.id, 'waiter');
    const audit = await store.listAudit({ key: 'w/handoff', limit: 10 });
    assert.deepEqual(audit.items.map((e) => `${e.action} ${e.lockId}`), ['lock.acquire holder', 'lock.conflict waiter', 'lock.release holder', 'lock.acquire waiter'], 'release first, then the grant');
    await store.close();
  });

  test('a hand-off whose batch is run again (another update threw after writing) grants the lock once, and audits it once', async () => {
    const { store, locks, granted } = await holderAndWaiter('w/rerun');
    const reruns = store.batchReruns;
    const before = store.commits;
    // In one batch: the release (whose hand-off puts the waiter's attempt into the same batch), then an update that
    // writes a lock and then breaks its audit entry's NOT NULL: the batch is rolled back and run again, guarded.
    const released = locks.unlockFromBody('w/rerun', Buffer.from(lockBody('holder')), client);
    const broken = store.update('w/broken', client, () => ({
      result: null,
      changes: {
        lock: { set: { key: 'w/broken', id: 'x', operation: '', who: '', version: '', created: null, info: '', path: '', raw: '{"ID":"x"}', acquiredAt: '', lastActivityAt: '', clientAddr: '', userAgent: '', sessionId: null, holds: ['http'] } },
        audit: [{ action: null as unknown as 'lock.acquire', key: 'w/broken', lockId: 'x', outcome: 'ok', detail: {} }],
      },
    }));
    const [r, g, b] = await Promise.allSettled([released, granted, broken]);
    assert.equal(store.batchReruns - reruns, 1, 'the batch ran twice');
    assert.equal(store.commits - before, 1, 'the release, the grant and the refused update were one batch');
    assert.equal(r.status, 'fulfilled');
    assert.equal(g.status === 'fulfilled' && g.value.outcome, 'acquired');
    assert.equal(b.status, 'rejected');
    assert.equal((await store.getLock('w/rerun'))?.id, 'waiter');
    assert.equal(await store.getLock('w/broken'), null, 'the thrower kept nothing');
    const audit = await store.listAudit({ key: 'w/rerun', limit: 10 });
    assert.deepEqual(audit.items.map((e) => `${e.action} ${e.lockId}`), ['lock.acquire holder', 'lock.conflict waiter', 'lock.release holder', 'lock.acquire waiter']);
    assert.equal(locks.waiters.total(), 0, 'nobody is left in line');
    await store.close();
  });
});
