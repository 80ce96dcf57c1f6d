import assert from 'node:assert/strict';
import { fdatasync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { ClientContext } from '../../src/audit/audit-entry.js';
import { StatelockError } from '../../src/server/errors.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { WalSyncIo } from '../../src/store/sqlite/wal-sync.js';
import type { Changes, LockRecord } from '../../src/store/store.js';
import { tempDir } from '../support/server-process.js';

/**
 * Group-committed batches are answered only after the WAL's fdatasync (wal-sync.ts) — on a real SQLite
 * file, with the real fdatasync, which the test can hold back or make fail: nobody learns of a change
 * (not its writer, not a reader) before it is on disk, and a failed sync acknowledges nothing.
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'wal-sync-test', principal: null };
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The real fdatasync behind a gate: while `held`, calls wait; `fail` makes the next ones report EIO. */
function gatedIo() {
  const state = { held: false, fail: false, calls: 0, waiting: [] as Array<() => void> };
  const io: WalSyncIo = {
    fdatasync(fd, done) {
      state.calls++;
      const go = () => (state.fail ? done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : fdatasync(fd, done));
      if (state.held) state.waiting.push(go);
      else go();
    },
  };
  const release = () => {
    state.held = false;
    const w = state.waiting.splice(0);
    w.forEach((f) => f());
  };
  return { io, state, release };
}

function open(io: WalSyncIo): SqliteStore {
  const dir = tempDir('statelock-wal-sync-');
  dirs.push(dir);
  return new SqliteStore(dir, { walIo: io });
}

function lockRecord(key: string, id: string): LockRecord {
  const now = new Date().toISOString();
  return { key, id, operation: 'OperationTypeApply', who: 'a@h', version: '1.15.0', created: now, info: '', path: '', raw: `{"ID":"${id}"}`, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: 'ua', sessionId: null, holds: ['http'] };
}

function takeLock(store: SqliteStore, key: string, id: string) {
  return store.update<string>(key, client, (snap) =>
    snap.lock
      ? { error: new StatelockError('STATE_LOCKED', { key, holder: snap.lock.id, operation: '', who: '', created: '' }), changes: {} }
      : { result: id, changes: { lock: { set: lockRecord(key, id) }, audit: [{ action: 'lock.acquire', key, lockId: id, outcome: 'ok', detail: {} }] } as Changes },
  );
}

/** Marks when `p` settles. */
function watch<T>(p: Promise<T>) {
  const w = { settled: false, p };
  p.then(
    () => (w.settled = true),
    () => (w.settled = true),
  );
  return w;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SQLite WAL sync after group commit', () => {
  test('concurrent updates are answered only once the fdatasync after their COMMIT completed; a reader waits too', async () => {
    const { io, state, release } = gatedIo();
    const store = open(io);
    try {
      state.held = true;
      const a = watch(takeLock(store, 'ws/a', 'id-a'));
      const b = watch(takeLock(store, 'ws/b', 'id-b'));
      await pause(30);
      assert.equal(store.commits, 1, 'the two updates committed, in one batch');
      assert.equal(state.waiting.length, 1, 'and a sync of the WAL was started');
      assert.equal(a.settled || b.settled, false, 'nobody is answered before the sync completed');
      const read = watch(store.getLock('ws/a'));
      await pause(30);
      assert.equal(read.settled, false, 'a read would show the lock before it is durable: it waits');
      release();
      assert.deepEqual(await Promise.all([a.p, b.p]), ['id-a', 'id-b']);
      assert.equal((await read.p)?.id, 'id-a');
      assert.ok(store.walSyncs >= 1);
    } finally {
      await store.close();
    }
  });

  test('updates arriving while a sync runs wait for it, then commit together as the next batch', async () => {
    const { io, state, release } = gatedIo();
    const store = open(io);
    try {
      state.held = true;
      const first = [takeLock(store, 'ws/1', 'x'), takeLock(store, 'ws/2', 'y')];
      await pause(20);
      assert.equal(store.commits, 1);
      const later: Promise<string>[] = [];
      for (let i = 0; i < 5; i++) {
        later.push(takeLock(store, `ws/later-${i}`, `l-${i}`));
        await pause(5); // separate event-loop turns: without the wait they would be separate batches
      }
      assert.equal(store.commits, 1, 'no commit while the sync runs');
      release();
      await Promise.all(first);
      state.held = false;
      assert.deepEqual(await Promise.all(later), ['l-0', 'l-1', 'l-2', 'l-3', 'l-4']);
      assert.equal(store.commits, 2, 'the five updates shared the next commit');
      assert.equal(store.committedUpdates, 7);
    } finally {
      await store.close();
    }
  });

  test('a lone update with no sync running commits with synchronous=FULL: no extra fdatasync, answered at once', async () => {
    const { io, state } = gatedIo();
    const store = open(io);
    try {
      state.held = true; // a call would hang the test: none may be made
      assert.equal(await takeLock(store, 'ws/lone', 'lone'), 'lone');
      assert.equal(state.calls, 0);
      assert.equal((await store.getLock('ws/lone'))?.id, 'lone', 'a read after it needs no sync either');
    } finally {
      await store.close();
    }
  });

  test('a failed sync acknowledges nothing: the batch and every later update and read are refused with 503 STORE_UNAVAILABLE', async () => {
    const { io, state } = gatedIo();
    const store = open(io);
    try {
      state.fail = true;
      const results = await Promise.allSettled([takeLock(store, 'ws/f1', 'f1'), takeLock(store, 'ws/f2', 'f2')]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.equal(((r as PromiseRejectedResult).reason as StatelockError).code, 'STORE_UNAVAILABLE');
      }
      state.fail = false;
      await assert.rejects(Promise.all([takeLock(store, 'ws/f3', 'f3'), takeLock(store, 'ws/f4', 'f4')]), (e: StatelockError) => e.code === 'STORE_UNAVAILABLE');
      await assert.rejects(store.getLock('ws/f1'), (e: StatelockError) => e.code === 'STORE_UNAVAILABLE');
    } finally {
      await store.close();
    }
    // Nothing was committed after the failure: the refused f3/f4 never reached the file.
    const db = new Database(join(dirs.at(-1)!, 'statelock.db'), { readonly: true });
    try {
      assert.equal((db.prepare("SELECT count(*) AS n FROM locks WHERE key IN ('ws/f3', 'ws/f4')").get() as { n: number }).n, 0);
    } finally {
      db.close();
    }
  });
});
