import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { AuditAction, ClientContext } from '../../src/audit/audit-entry.js';
import { CATCH_UP_MS, CATCH_UP_ROWS } from '../../src/store/sqlite/deferred-key-indexes.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { AuditQuery, LockRecord } from '../../src/store/store.js';
import { tempDir } from '../support/server-process.js';

/**
 * The audit trail's and the released lock IDs' by-key indexes are written in batches (deferred-key-indexes.ts):
 * reads by key must be exact at every moment — rows already indexed, rows still in the tail, and both — and the
 * catch-up must happen on its own, by count, by time and at opening.
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'key-index-test', principal: null };
const dir = () => tempDir('statelock-key-indexes-');

function lockRecord(key: string, id: string): LockRecord {
  const now = new Date().toISOString();
  return { key, id, operation: 'OperationTypeApply', who: 'a@h', version: '1.9.0', created: now, info: '', path: '', raw: `{"ID":"${id}"}`, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: 'ua', sessionId: null, holds: ['http'] };
}

/** A LOCK then an UNLOCK of `id` on `key`, as the lock service writes them: two audit rows, one released ID. */
async function cycle(store: SqliteStore, key: string, id: string): Promise<void> {
  await store.update(key, client, () => ({ result: null, changes: { lock: { set: lockRecord(key, id) }, audit: [{ action: 'lock.acquire', key, lockId: id, outcome: 'ok', detail: {} }] } }));
  await store.update(key, client, () => ({ result: null, changes: { lock: { clear: true }, audit: [{ action: 'lock.release', key, lockId: id, outcome: 'ok', detail: {} }] } }));
}

function released(store: SqliteStore, key: string, id: string): Promise<boolean> {
  return store.update(key, client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: id });
}

/** The marks as another connection sees them (WAL: a reader beside the store's connection). */
function marks(d: string): Record<string, number> {
  const db = new Database(join(d, 'statelock.db'), { readonly: true });
  try {
    return Object.fromEntries((db.prepare("SELECT name, upto FROM key_index_marks WHERE name IN ('audit', 'released_locks')").all() as Array<{ name: string; upto: number }>).map((r) => [r.name, r.upto]));
  } finally {
    db.close();
  }
}

/** Every page of a query, following `next`. */
async function allPages(store: SqliteStore, query: Omit<AuditQuery, 'limit'>, limit: number): Promise<number[]> {
  const ids: number[] = [];
  let q: AuditQuery = { ...query, limit };
  for (;;) {
    const page = await store.listAudit(q);
    ids.push(...page.items.map((e) => e.id));
    if (!page.next) return ids;
    q = query.newestFirst ? { ...q, before: Number(page.next) } : { ...q, after: Number(page.next) };
  }
}

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

describe('deferred by-key indexes of the audit trail and of released lock IDs', () => {
  test('a key\'s audit entries read the same from the index, the tail and both: every order, page size and filter', async () => {
    const d = dir();
    const store = new SqliteStore(d);
    try {
      const keys = ['a/one', 'a/two', 'b/three'];
      // 20 cycles per key, then a catch-up (at the next opening), then 7 more: part indexed, part in the tail.
      for (let i = 0; i < 20; i++) for (const k of keys) await cycle(store, k, `${k}-L${i}`);
      await store.close();
      const reopened = new SqliteStore(d);
      try {
        const indexedUpTo = marks(d).audit!;
        assert.equal(indexedUpTo, 120, 'the opening indexed every row');
        for (let i = 20; i < 27; i++) for (const k of keys) await cycle(reopened, k, `${k}-L${i}`);
        assert.equal(marks(d).audit, 120, 'the new rows are in the tail (no catch-up yet)');

        const every = (await reopened.listAudit({ limit: 10_000 })).items;
        assert.equal(every.length, 162);
        const filters: Array<{ since?: string; action?: AuditAction }> = [{}, { action: 'lock.release' }, { since: every[100]!.at }];
        for (const key of keys) {
          for (const f of filters) {
            const expected = every.filter((e) => e.key === key && (f.action === undefined || e.action === f.action) && (f.since === undefined || e.at >= f.since)).map((e) => e.id);
            assert.ok(expected.some((id) => id <= indexedUpTo) && expected.some((id) => id > indexedUpTo), 'both parts hold entries');
            for (const limit of [1, 3, 7, 40, 100]) {
              assert.deepEqual(await allPages(reopened, { key, ...f }, limit), expected, `${key} ${JSON.stringify(f)} oldest first, ${limit} per page`);
              assert.deepEqual(await allPages(reopened, { key, ...f, newestFirst: true }, limit), [...expected].reverse(), `${key} ${JSON.stringify(f)} newest first, ${limit} per page`);
            }
            const mid = expected[Math.floor(expected.length / 2)]!;
            assert.deepEqual((await reopened.listAudit({ key, ...f, after: mid, limit: 1000 })).items.map((e) => e.id), expected.filter((id) => id > mid));
            assert.deepEqual((await reopened.listAudit({ key, ...f, newestFirst: true, before: mid, limit: 1000 })).items.map((e) => e.id), expected.filter((id) => id < mid).reverse());
          }
        }
        assert.deepEqual((await reopened.listAudit({ key: 'a/on', limit: 10 })).items, [], 'a prefix of a key is another key');
      } finally {
        await reopened.close();
      }
    } finally {
      await store.close();
    }
  });

  test('fencing finds a released lock ID in the tail and once indexed, on its own key only; a held or unknown ID is not released', async () => {
    const d = dir();
    const store = new SqliteStore(d);
    try {
      await cycle(store, 'k/1', 'OLD');
      await store.update('k/1', client, () => ({ result: null, changes: { lock: { set: lockRecord('k/1', 'HELD') } } }));
      assert.equal(marks(d).released_locks, 0, 'still in the tail');
      assert.equal(await released(store, 'k/1', 'OLD'), true);
      assert.equal(await released(store, 'k/2', 'OLD'), false, 'released from another key');
      assert.equal(await released(store, 'k/1', 'HELD'), false);
      assert.equal(await released(store, 'k/1', 'NEVER'), false);
      // A takeover (a new lock replacing a held one) releases the held ID too.
      await store.update('k/1', client, () => ({ result: null, changes: { lock: { set: lockRecord('k/1', 'NEXT') } } }));
      assert.equal(await released(store, 'k/1', 'HELD'), true);
    } finally {
      await store.close();
    }
    const reopened = new SqliteStore(d);
    try {
      assert.equal(marks(d).released_locks, 2, 'indexed at the opening');
      assert.equal(await released(reopened, 'k/1', 'OLD'), true);
      assert.equal(await released(reopened, 'k/1', 'HELD'), true);
      assert.equal(await released(reopened, 'k/2', 'OLD'), false);
      assert.equal(await released(reopened, 'k/1', 'NEXT'), false);
    } finally {
      await reopened.close();
    }
  });

  test(`the catch-up runs by itself: ${CATCH_UP_MS} ms after a lone row, and at once when ${CATCH_UP_ROWS} rows wait`, async () => {
    const d = dir();
    // The defaults: by time (no count reached).
    const store = new SqliteStore(d);
    try {
      const started = Date.now(); // before the cycle: its first commit starts the timer
      await cycle(store, 'timer/k', 'T1');
      assert.deepEqual(marks(d), { audit: 0, released_locks: 0 });
      await waitFor('the timed catch-up', () => marks(d).audit === 2, CATCH_UP_MS + 4000);
      assert.ok(Date.now() - started >= CATCH_UP_MS * 0.8, 'not before its time');
      assert.equal(marks(d).released_locks, 1);
    } finally {
      await store.close();
    }
    // By count: with a timer that would never fire in this test.
    const byCount = new SqliteStore(d, { keyIndexCatchUp: { rows: 300, ms: 600_000 } });
    try {
      for (let i = 0; i < 99; i++) await cycle(byCount, `count/${i % 7}`, `C${i}`); // 297 rows: one short
      await sleep(100);
      assert.deepEqual(marks(d), { audit: 2, released_locks: 1 }, 'below the count: nothing indexed');
      await cycle(byCount, 'count/0', 'C99');
      await waitFor('the catch-up by count', () => marks(d).audit === 202, 3000);
      assert.equal(marks(d).released_locks, 101);
      const db = new Database(join(d, 'statelock.db'), { readonly: true });
      try {
        assert.deepEqual(db.prepare('SELECT count(*) AS n FROM audit_key_index').get(), { n: 202 }, 'one index row per audit row up to the mark');
        assert.deepEqual(db.prepare('SELECT count(*) AS n FROM audit a LEFT JOIN audit_key_index k ON k.key = a.key AND k.id = a.id WHERE k.id IS NULL').get(), { n: 0 });
        assert.deepEqual(db.prepare('SELECT count(*) AS n FROM released_locks r LEFT JOIN released_key_index k ON k.key = r.key AND k.id = r.id AND k.lock_id = r.lock_id WHERE k.id IS NULL').get(), { n: 0 });
      } finally {
        db.close();
      }
    } finally {
      await byCount.close();
    }
  });

  test('an opening with nothing to index writes nothing (a CLI command beside the server takes no write)', async () => {
    const d = dir();
    const store = new SqliteStore(d);
    await cycle(store, 'quiet/k', 'Q1');
    await store.close(); // indexes nothing (close does not catch up) and truncates the WAL
    const walSize = () => {
      try {
        return statSync(join(d, 'statelock.db-wal')).size;
      } catch {
        return 0;
      }
    };
    const first = new SqliteStore(d); // indexes the cycle's 3 rows: a write
    try {
      assert.ok(walSize() > 0);
      assert.deepEqual(marks(d), { audit: 2, released_locks: 1 });
    } finally {
      await first.close();
    }
    assert.equal(walSize(), 0);
    const second = new SqliteStore(d);
    try {
      assert.equal(walSize(), 0, 'nothing new: the marks are not rewritten');
    } finally {
      await second.close();
    }
  });

  test('reads by key go to the by-key tables and to the tail by id range, never through the whole log', async () => {
    const d = dir();
    await new SqliteStore(d).close();
    const db = new Database(join(d, 'statelock.db'), { readonly: true });
    try {
      const plan = (sql: string, ...params: unknown[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail).join('; ');
      const indexed = plan('SELECT a.* FROM audit_key_index k JOIN audit a ON a.id = k.id WHERE k.key = ? AND k.id > ? AND k.id < ? AND a.at >= ? ORDER BY k.id LIMIT ?', 'k', 0, 10, 't', 5);
      assert.match(indexed, /SEARCH k USING PRIMARY KEY \(key=\? AND id>\? AND id<\?\)/, indexed);
      assert.match(indexed, /SEARCH a USING INTEGER PRIMARY KEY \(rowid=\?\)/, indexed);
      const tail = plan('SELECT a.* FROM audit a WHERE a.id > ? AND a.id < ? AND a.key = ? AND a.at >= ? ORDER BY a.id LIMIT ?', 0, 10, 'k', 't', 5);
      assert.match(tail, /SEARCH a USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/, tail);
      const fencing = plan("SELECT 1 FROM released_locks WHERE id > 5 AND key = 'k' AND lock_id = 'x'");
      assert.match(fencing, /USING INTEGER PRIMARY KEY \(rowid>\?\)/, fencing);
    } finally {
      db.close();
    }
  });
});
