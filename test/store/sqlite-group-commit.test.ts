import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { ClientContext } from '../../src/audit/audit-entry.js';
import { LockService } from '../../src/lock/lock-service.js';
import { StatelockError } from '../../src/server/errors.js';
import { Metrics } from '../../src/server/metrics.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Changes, ChunkRef, KeySnapshot, LockRecord, NewVersion } from '../../src/store/store.js';
import { lockBody } from '../support/http.js';
import { tempDir } from '../support/server-process.js';

/**
 * Group commit on real SQLite files: updates submitted in the same event-loop turn share one
 * transaction and one COMMIT. A batch runs without savepoints; one that throws after writing makes the
 * batch run again, each update in its own savepoint. `store.commits` counts the COMMITs,
 * `store.batchReruns` the batches run again.
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'group-commit-test', principal: null };
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function open(): { store: SqliteStore; dir: string } {
  const dir = tempDir('statelock-group-commit-');
  dirs.push(dir);
  return { store: new SqliteStore(dir), dir };
}

function lockRecord(key: string, id: string): LockRecord {
  const now = new Date().toISOString();
  return { key, id, operation: 'OperationTypeApply', who: 'a@h', version: '1.15.0', created: now, info: '', path: '', raw: `{"ID":"${id}"}`, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: 'ua', sessionId: null, holds: ['http'] };
}

/** A version row naming `chunks` (stored beforehand with putChunks, as the ingest does). */
function newVersion(seq: number, serial: number, chunks: ChunkRef[]): NewVersion {
  const size = chunks.reduce((n, c) => n + c.size, 0);
  return { seq, serial, lineage: 'L', md5: `md5-${seq}`, sha256: `sha-${seq}`, size, encrypted: false, createdAt: new Date().toISOString(), lockId: null, operation: null, clientAddr: client.addr, forced: null, chunks };
}

/** Stores `bodies` as one raw chunk each and returns their refs, in order. */
async function storeChunks(store: SqliteStore, bodies: Buffer[]): Promise<ChunkRef[]> {
  const chunks = bodies.map((data) => ({ id: store.chunkId(data), size: data.length, codec: 'raw' as const, data }));
  await store.putChunks(chunks);
  return chunks.map(({ id, size }) => ({ id, size }));
}

/** Takes the lock on `key` for `id` when free, as a one-update use case; refuses with STATE_LOCKED otherwise. */
function takeLock(store: SqliteStore, key: string, id: string) {
  return store.update<string>(key, client, (snap) =>
    snap.lock
      ? { error: new StatelockError('STATE_LOCKED', { key, holder: snap.lock.id, operation: '', who: '', created: '' }), changes: {} }
      : { result: id, changes: { lock: { set: lockRecord(key, id) }, audit: [{ action: 'lock.acquire', key, lockId: id, outcome: 'ok', detail: {} }] } as Changes },
  );
}

/** Settles every promise; returns each outcome. */
function settle(ps: Array<Promise<unknown>>) {
  return Promise.allSettled(ps);
}

describe('SQLite group commit', () => {
  test('concurrent updates all resolve, all are stored, and share fewer commits than there are updates', async () => {
    const { store, dir } = open();
    const before = store.commits;
    const N = 64;
    const results = await Promise.all(Array.from({ length: N }, (_, i) => takeLock(store, `gc/many/${i}`, `id-${i}`)));
    assert.deepEqual(results, Array.from({ length: N }, (_, i) => `id-${i}`));
    const commits = store.commits - before;
    assert.ok(commits >= 1 && commits < N, `${N} updates in ${commits} commits`);
    assert.equal(store.committedUpdates, N);
    for (let i = 0; i < N; i++) assert.equal((await store.getLock(`gc/many/${i}`))?.id, `id-${i}`);
    await store.close();
    // Durable on the file, read by another connection after the store closed.
    const db = new Database(join(dir, 'statelock.db'), { readonly: true });
    try {
      assert.equal((db.prepare("SELECT count(*) AS n FROM locks WHERE key LIKE 'gc/many/%'").get() as { n: number }).n, N);
      assert.equal((db.prepare("SELECT count(*) AS n FROM audit WHERE action = 'lock.acquire'").get() as { n: number }).n, N);
    } finally {
      db.close();
    }
  });

  test('updates that arrive one after another each commit on their own (a lone update is not held back)', async () => {
    const { store } = open();
    const before = store.commits;
    for (let i = 0; i < 5; i++) assert.equal(await takeLock(store, `gc/lone/${i}`, `id-${i}`), `id-${i}`);
    assert.equal(store.commits - before, 5);
    await store.close();
  });

  test('two LOCKs on one key in one batch: exactly one wins, the other sees its lock', async () => {
    const { store } = open();
    const locks = new LockService(store, new Metrics());
    const before = store.commits;
    const outcomes = await settle([
      locks.lock('gc/race', Buffer.from(lockBody('first')), client),
      locks.lock('gc/race', Buffer.from(lockBody('second')), client),
    ]);
    assert.equal(store.commits - before, 1, 'both decided in one transaction');
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.equal((lost[0]!.reason as StatelockError).code, 'STATE_LOCKED');
    assert.equal((await store.getLock('gc/race'))?.id, 'first', 'the first in the batch took it');
    // The refusal was decided on the first LOCK's uncommitted lock and its audit entry committed with it.
    const audit = await store.listAudit({ key: 'gc/race', limit: 10 });
    assert.deepEqual(audit.items.map((e) => e.action), ['lock.acquire', 'lock.conflict']);
    await store.close();
  });

  test("a snapshot's field first read after its transaction ended is refused; one read inside keeps its value", async () => {
    const { store } = open();
    await store.update('snap/k', client, () => ({ result: null, changes: { lock: { set: lockRecord('snap/k', 'L1') } } }));
    let kept: KeySnapshot | undefined;
    await store.update('snap/k', client, (snap) => {
      kept = snap;
      return { result: snap.lock?.id, changes: {} };
    });
    assert.equal(kept!.lock?.id, 'L1', 'read inside the transaction: the same answer after it');
    assert.throws(() => kept!.current, /KeySnapshot\.current read after its transaction ended/);
    assert.throws(() => kept!.versionCount, /KeySnapshot\.versionCount read after its transaction ended/);
    // Handed back as the result, the snapshot is read whole before the transaction ends.
    const whole = await store.update('snap/k', client, (snap) => ({ result: snap, changes: {} }));
    assert.deepEqual([whole.current, whole.versionCount, whole.highestSerial, whole.probedLockIdReleased, whole.lock?.id], [null, 0, 0, false, 'L1']);
    await store.close();
  });

  test('a later update in a batch sees the earlier ones (versions numbered 1, 2, 3 in one commit)', async () => {
    const { store } = open();
    const refs = await storeChunks(store, [Buffer.from('{"serial":1}')]);
    const before = store.commits;
    const put = (serial: number) =>
      store.update('gc/seq', client, (snap) => ({ result: snap.versionCount + 1, changes: { newVersion: newVersion(snap.versionCount + 1, serial, refs) } }));
    assert.deepEqual(await Promise.all([put(1), put(2), put(3)]), [1, 2, 3]);
    assert.equal(store.commits - before, 1);
    assert.deepEqual((await store.listVersions('gc/seq', { limit: 10 })).items.map((v) => [v.seq, v.serial]), [[1, 1], [2, 2], [3, 3]]);
    await store.close();
  });

  test('a decide that throws in the middle of a batch rejects only its caller; the others commit', async () => {
    const { store } = open();
    const before = store.commits;
    const reruns = store.batchReruns;
    const boom = new Error('a bug in a rule');
    const outcomes = await settle([
      takeLock(store, 'gc/mid/a', 'a'),
      store.update('gc/mid/b', client, () => {
        throw boom;
      }),
      takeLock(store, 'gc/mid/c', 'c'),
    ]);
    assert.equal(store.commits - before, 1);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal((outcomes[1] as PromiseRejectedResult).reason, boom);
    assert.equal(store.batchReruns - reruns, 0, 'it threw before writing: nothing to undo, the batch is not run again');
    assert.equal((await store.getLock('gc/mid/a'))?.id, 'a');
    assert.equal((await store.getLock('gc/mid/c'))?.id, 'c');
    await store.close();
  });

  test('a statement error in the middle of a batch rolls back only that update, even the part it had written', async () => {
    const { store } = open();
    const [one, two] = await storeChunks(store, [Buffer.from('{"serial":1}'), Buffer.from('{"serial":2}')]);
    await store.update('gc/stmt', client, () => ({ result: 1, changes: { newVersion: newVersion(1, 1, [one!]) } }));
    const before = store.commits;
    const reruns = store.batchReruns;
    let decidedA = 0;
    const outcomes = await settle([
      store.update<string>('gc/stmt/a', client, (snap) => {
        decidedA++;
        assert.equal(snap.lock, null, 'run again, it sees the key as it was before the batch');
        return { result: 'a', changes: { lock: { set: lockRecord('gc/stmt/a', 'a') }, audit: [{ action: 'lock.acquire', key: 'gc/stmt/a', lockId: 'a', outcome: 'ok', detail: {} }] } };
      }),
      // Stores version 2 and takes a lock, then its audit entry breaks NOT NULL: the version and the lock written before it go too.
      store.update('gc/stmt', client, () => ({
        result: 2,
        changes: {
          newVersion: newVersion(2, 2, [two!]),
          lock: { set: lockRecord('gc/stmt', 'stmt') },
          audit: [{ action: null as unknown as 'state.write', key: 'gc/stmt', lockId: null, outcome: 'ok', detail: {} }],
        },
      })),
      takeLock(store, 'gc/stmt/c', 'c'),
    ]);
    assert.equal(store.commits - before, 1);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((outcomes[1] as PromiseRejectedResult).reason), /NOT NULL/);
    assert.equal(store.batchReruns - reruns, 1, 'the batch ran again, guarded');
    assert.equal(decidedA, 2, 'the update before the failure was decided once per run');
    assert.equal((await store.listAudit({ key: 'gc/stmt/a', limit: 10 })).items.length, 1, 'and stored once');
    assert.equal((await store.getLock('gc/stmt/a'))?.id, 'a');
    assert.deepEqual((await store.listVersions('gc/stmt', { limit: 10 })).items.map((v) => v.serial), [1]);
    assert.equal(await store.getLock('gc/stmt'), null, 'its lock went with it');
    assert.equal((await store.getLock('gc/stmt/c'))?.id, 'c');
    await store.close();
  });

  test('a COMMIT that fails rejects every caller of its batch, and stores nothing of it', async () => {
    const { store, dir } = open();
    // A deferred foreign key is checked at COMMIT: a trigger on the audit trail, added through a second
    // connection, makes any batch holding a 'poison' audit entry fail there.
    const side = new Database(join(dir, 'statelock.db'));
    side.exec(`CREATE TABLE gc_parent (id INTEGER PRIMARY KEY);
      CREATE TABLE gc_child (parent INTEGER REFERENCES gc_parent (id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER gc_poison AFTER INSERT ON audit WHEN NEW.detail LIKE '%poison%' BEGIN INSERT INTO gc_child VALUES (42); END;`);
    side.close();
    const before = store.commits;
    const poisoned = store.update('gc/commit/b', client, () => ({ result: 'b', changes: { audit: [{ action: 'lock.acquire', key: 'gc/commit/b', lockId: 'b', outcome: 'ok', detail: { poison: true } }] } }));
    const outcomes = await settle([takeLock(store, 'gc/commit/a', 'a'), poisoned, takeLock(store, 'gc/commit/c', 'c')]);
    assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected', 'rejected']);
    for (const o of outcomes) assert.match(String((o as PromiseRejectedResult).reason), /FOREIGN KEY/);
    assert.equal(store.commits, before, 'no commit happened');
    assert.equal(await store.getLock('gc/commit/a'), null);
    assert.equal(await store.getLock('gc/commit/c'), null);
    // The store goes on: the next batch commits.
    assert.equal(await takeLock(store, 'gc/commit/a', 'a2'), 'a2');
    await store.close();
  });

  test('a full database refuses the batch\'s state body with STORE_FULL and still commits the locks around it', async () => {
    const { store } = open();
    // SQLite's own limit on the file's size: growing past it is SQLITE_FULL, as a full disk is.
    const db = (store as unknown as { db: Database.Database }).db;
    // A version naming 6,000 chunks writes ~6,000 reference rows: far more than the 8 pages left.
    const many = await storeChunks(store, Array.from({ length: 6000 }, (_, i) => Buffer.from(`chunk ${i}`)));
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 8}`);
    const before = store.commits;
    const outcomes = await settle([
      takeLock(store, 'gc/full/lock-a', 'a'),
      store.update('gc/full/state', client, () => ({ result: 1, changes: { newVersion: newVersion(1, 1, many) } })),
      takeLock(store, 'gc/full/lock-b', 'b'),
    ]);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    const err = (outcomes[1] as PromiseRejectedResult).reason as StatelockError;
    assert.equal(err.code, 'STORE_FULL');
    assert.equal(err.status, 507);
    // SQLite rolls the whole transaction back on SQLITE_FULL: the lock before the state write is run again
    // in a new transaction, the one after it goes into the next batch.
    assert.ok(store.commits - before >= 1);
    assert.equal((await store.getLock('gc/full/lock-a'))?.id, 'a');
    assert.equal((await store.getLock('gc/full/lock-b'))?.id, 'b');
    assert.equal((await store.listVersions('gc/full/state', { limit: 10 })).items.length, 0);
    await store.close();
  });

  test('updates queued when the store closes are committed before it closes', async () => {
    const { store, dir } = open();
    const pending = takeLock(store, 'gc/close', 'last');
    await store.close();
    assert.equal(await pending, 'last');
    const db = new Database(join(dir, 'statelock.db'), { readonly: true });
    try {
      assert.equal((db.prepare("SELECT lock_id FROM locks WHERE key = 'gc/close'").get() as { lock_id: string }).lock_id, 'last');
    } finally {
      db.close();
    }
  });
});
