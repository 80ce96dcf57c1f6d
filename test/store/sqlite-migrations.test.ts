import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { ClientContext } from '../../src/audit/audit-entry.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/sqlite-migrations.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { tempDir } from '../support/server-process.js';

/**
 * Upgrading a SQLite database made by an earlier schema keeps every row of every table. Migration 6 rebuilds the
 * audit table without AUTOINCREMENT (one WAL page less per LOCK and UNLOCK commit): the rows keep their ids and new
 * entries carry on after the largest. Migration 8 moves the by-key indexes of the audit trail and of the released
 * lock IDs into tables written in batches (deferred-key-indexes.ts).
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'migration-test', principal: null };
const dir = () => tempDir('statelock-migrations-');

type Rows = Record<string, unknown[]>;

/** Every row of every table (sorted, so that a rebuilt table compares equal whatever its storage order). */
function everyRow(db: Database.Database): Rows {
  const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{ name: string }>).map((t) => t.name);
  const out: Rows = {};
  for (const t of tables) out[t] = (db.prepare(`SELECT * FROM "${t}"`).all() as unknown[]).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  return out;
}

function withDb<T>(d: string, fn: (db: Database.Database) => T): T {
  const db = new Database(join(d, 'statelock.db'));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** What the previous release wrote: the schema up to `version` migrations, applied as `migrate` does. */
function databaseAtVersion(d: string, version: number): void {
  withDb(d, (db) => {
    db.pragma('journal_mode = WAL');
    for (let i = 0; i < version; i++) {
      db.transaction(() => {
        db.exec(SQLITE_MIGRATIONS[i]!);
        db.pragma(`user_version = ${i + 1}`);
      }).immediate();
    }
  });
}

const auditSql = (db: Database.Database) => (db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'audit'").get() as { sql: string }).sql;

/** Appends one audit entry through the store (a lock taken on `key`, as a LOCK does). */
function lockWithAudit(store: SqliteStore, key: string, id: string) {
  const now = new Date().toISOString();
  return store.update(key, client, () => ({
    result: id,
    changes: {
      lock: { set: { key, id, operation: 'OperationTypeApply', who: 'a@h', version: '1.15.0', created: now, info: '', path: '', raw: `{"ID":"${id}"}`, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: 'ua', sessionId: null, holds: ['http'] } },
      audit: [{ action: 'lock.acquire', key, lockId: id, outcome: 'ok', detail: { n: 1 } }],
    },
  }));
}

describe('SQLite schema migrations', () => {
  test('a schema-5 database: the audit table is rebuilt without AUTOINCREMENT, every row of every table kept, ids carry on', async () => {
    const d = dir();
    databaseAtVersion(d, 5);
    const before = withDb(d, (db) => {
      const audit = db.prepare('INSERT INTO audit (id, at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
      audit.run(1, '2026-11-01T00:00:00.000Z', 'lock.acquire', 'a/b', 'L1', 'ok', '10.0.0.1', 'Terraform/1.9', null, '{}');
      audit.run(2, '2026-11-01T00:00:01.000Z', 'lock.release', 'a/b', 'L1', 'ok', '10.0.0.1', 'Terraform/1.9', 'ci-bot', '{"x":"é✓"}');
      audit.run(7, '2026-11-01T00:00:02.000Z', 'state.write', 'c', null, 'refused', '::1', '', null, '{"serial":3}');
      db.prepare("INSERT INTO locks (key, lock_id, operation, who, version, created, info, path, raw, acquired_at, last_activity_at, client_addr, user_agent, session_id, holds) VALUES ('a/b', 'L2', 'op', 'w', 'v', NULL, '', '', '{}', 't', 't', '10.0.0.1', 'ua', NULL, 'http')").run();
      db.prepare("INSERT INTO released_locks (key, lock_id, released_at) VALUES ('a/b', 'L1', 't')").run();
      assert.match(auditSql(db), /AUTOINCREMENT/);
      assert.deepEqual(db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").get(), { seq: 7 });
      return everyRow(db);
    });

    const store = new SqliteStore(d);
    try {
      const page = await store.listAudit({ limit: 10 });
      assert.deepEqual(page.items.map((e) => e.id), [1, 2, 7]);
      assert.equal(await lockWithAudit(store, 'e/f', 'L3'), 'L3');
      const newest = await store.listAudit({ key: 'e/f', limit: 10 });
      assert.deepEqual(newest.items.map((e) => [e.id, e.action, e.lockId]), [[8, 'lock.acquire', 'L3']], 'a new entry takes the largest id + 1');
      assert.deepEqual((await store.listAudit({ since: '2026-11-01T00:00:01.000Z', limit: 10 })).items.map((e) => e.id), [2, 7, 8]);
    } finally {
      await store.close();
    }

    withDb(d, (db) => {
      assert.equal(db.pragma('user_version', { simple: true }), SQLITE_MIGRATIONS.length);
      assert.doesNotMatch(auditSql(db), /AUTOINCREMENT/);
      assert.deepEqual(db.prepare("SELECT count(*) AS n FROM sqlite_sequence WHERE name = 'audit'").get(), { n: 0 });
      const indexes = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
      assert.deepEqual(indexes, ['audit_by_time'], 'the index by key became audit_key_index (migration 8)');
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      const now = everyRow(db);
      // Migration 8: the by-key tables, filled up to their marks (entry 8 came after the opening's catch-up).
      assert.deepEqual(now.audit_key_index, [{ key: 'a/b', id: 1 }, { key: 'a/b', id: 2 }, { key: 'c', id: 7 }]);
      assert.deepEqual(now.released_key_index, [{ key: 'a/b', id: 1, lock_id: 'L1' }]);
      assert.deepEqual(now.key_index_marks, [{ name: 'audit', upto: 7 }, { name: 'released_locks', upto: 1 }, { name: 'version_refs_by_chunk', upto: 0 }]);
      assert.deepEqual(now.version_refs_by_chunk, [], 'migration 9: no version has refs here');
      for (const t of ['audit_key_index', 'released_key_index', 'key_index_marks', 'version_refs_by_chunk']) delete now[t];
      // …and released_locks became a log with an id.
      now.released_locks = now.released_locks!.map((r) => {
        const { id, ...rest } = r as Record<string, unknown>;
        assert.equal(id, 1);
        return rest;
      });
      const added = now.audit!.filter((r) => (r as { id: number }).id === 8);
      assert.equal(added.length, 1);
      const without = <R>(rows: R[], added: (r: R) => boolean) => rows.filter((r) => !added(r));
      assert.deepEqual(
        { ...now, audit: without(now.audit!, (r) => (r as { id: number }).id === 8), locks: without(now.locks!, (r) => (r as { key: string }).key === 'e/f') },
        before,
        'every row kept',
      );
    });
  });

  test('the schema-4 database of an earlier release (test/fixtures/legacy-sqlite-v4) upgrades with every row kept', async () => {
    const d = dir();
    copyFileSync(new URL('../../../test/fixtures/legacy-sqlite-v4/statelock.db', import.meta.url), join(d, 'statelock.db'));
    const before = withDb(d, (db) => {
      assert.equal(db.pragma('user_version', { simple: true }), 4);
      return everyRow(db);
    });
    assert.ok(before.audit!.length > 0, 'the fixture has audit entries');
    const store = new SqliteStore(d);
    await store.close();
    withDb(d, (db) => {
      assert.equal(db.pragma('user_version', { simple: true }), SQLITE_MIGRATIONS.length);
      assert.doesNotMatch(auditSql(db), /AUTOINCREMENT/);
      const now = everyRow(db);
      // Migration 5 added the chunk tables and a `chunked` column (0 on the old rows).
      for (const t of ['chunks', 'version_chunk_refs', 'rejected_chunk_refs']) assert.deepEqual(now[t], [], t);
      // Migration 8 gave released_locks an id (it became a log, indexed by key apart).
      const strip = (rows: unknown[], t: string) => rows.map((r) => {
        const { chunked, ...rest } = r as Record<string, unknown>;
        assert.ok(chunked === undefined || chunked === 0);
        if (t === 'released_locks') delete rest.id;
        return rest;
      }).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
      for (const t of Object.keys(before)) assert.deepEqual(strip(now[t]!, t), strip(before[t]!, t), t);
      assert.equal((now.audit_key_index ?? []).length, before.audit!.length, 'every audit row indexed by key');
      assert.equal((now.released_key_index ?? []).length, before.released_locks?.length ?? 0);
    });
  });

  test('migration 8: a schema-7 database keeps its audit trail readable by key and its released lock IDs fencing, now from the deferred by-key tables', async () => {
    const d = dir();
    databaseAtVersion(d, 7);
    withDb(d, (db) => {
      const audit = db.prepare("INSERT INTO audit (at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail) VALUES (?, ?, ?, ?, 'ok', '::1', 'ua', NULL, '{}')");
      const rel = db.prepare('INSERT INTO released_locks (key, lock_id, released_at) VALUES (?, ?, ?)');
      for (let i = 0; i < 30; i++) {
        const key = ['x', 'y', 'x/z'][i % 3]!;
        audit.run(`2026-11-01T00:00:${String(i).padStart(2, '0')}.000Z`, i % 2 ? 'lock.release' : 'lock.acquire', key, `L${i}`);
        if (i % 2) rel.run(key, `L${i}`, `2026-11-01T00:00:${String(i).padStart(2, '0')}.000Z`);
      }
    });
    const store = new SqliteStore(d);
    try {
      const every = (await store.listAudit({ limit: 100 })).items;
      assert.equal(every.length, 30);
      assert.equal(await lockWithAudit(store, 'x', 'NEW'), 'NEW'); // one more, in the tail
      for (const key of ['x', 'y', 'x/z']) {
        const expected = [...every.filter((e) => e.key === key).map((e) => e.id), ...(key === 'x' ? [31] : [])];
        assert.deepEqual((await store.listAudit({ key, limit: 100 })).items.map((e) => e.id), expected, key);
        assert.deepEqual((await store.listAudit({ key, newestFirst: true, limit: 100 })).items.map((e) => e.id), [...expected].reverse(), key);
      }
      const fenced = (key: string, id: string) => store.update(key, client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: id });
      assert.equal(await fenced('y', 'L1'), true);
      assert.equal(await fenced('x/z', 'L29'), true);
      assert.equal(await fenced('x', 'L1'), false, 'L1 was released from y');
      assert.equal(await fenced('x', 'L0'), false, 'acquired, never released');
    } finally {
      await store.close();
    }
    withDb(d, (db) => {
      assert.deepEqual(db.prepare('SELECT name, upto FROM key_index_marks ORDER BY name').all(), [
        { name: 'audit', upto: 30 },
        { name: 'released_locks', upto: 15 },
        { name: 'version_refs_by_chunk', upto: 0 },
      ]);
      assert.equal(db.prepare("SELECT name FROM sqlite_schema WHERE name = 'audit_by_key'").get(), undefined);
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    });
  });

  test('migration 9: a schema-8 database files its versions\' refs by chunk up to the mark; the sweep then keeps every named chunk and takes the orphan', async () => {
    const d = dir();
    databaseAtVersion(d, 8);
    withDb(d, (db) => {
      const chunk = db.prepare("INSERT INTO chunks (id, size, codec, stored_at, data) VALUES (?, 1, 'raw', '2026-01-01T00:00:00.000Z', ?)");
      for (const id of ['c1', 'c2', 'c3', 'orphan']) chunk.run(id, Buffer.from(id));
      const version = db.prepare(
        "INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, body, chunked) VALUES ('k', ?, ?, 'L', 'm', 's', 2, 0, '2026-01-01T00:00:00.000Z', NULL, NULL, '::1', NULL, x'', 1)",
      );
      const ref = db.prepare('INSERT INTO version_chunk_refs (version_id, n, chunk) VALUES (?, ?, (SELECT rowid FROM chunks WHERE id = ?))');
      const v1 = version.run(1, 1).lastInsertRowid;
      const v2 = version.run(2, 2).lastInsertRowid;
      ref.run(v1, 0, 'c1');
      ref.run(v1, 1, 'c2');
      ref.run(v2, 0, 'c3');
      ref.run(v2, 1, 'c2');
    });
    const store = new SqliteStore(d);
    try {
      withDb(d, (db) => {
        assert.equal(db.prepare("SELECT name FROM sqlite_schema WHERE name = 'version_chunk_refs_by_chunk'").get(), undefined, 'the index is gone');
        const refs = db.prepare('SELECT chunk, version_id, n FROM version_chunk_refs ORDER BY chunk, version_id, n').all();
        assert.equal(refs.length, 4);
        assert.deepEqual(db.prepare('SELECT chunk, version_id, n FROM version_refs_by_chunk').all(), refs, 'every ref filed, in chunk order');
        assert.deepEqual(db.prepare("SELECT upto FROM key_index_marks WHERE name = 'version_refs_by_chunk'").get(), { upto: 2 });
      });
      assert.equal(await store.sweepChunks(new Date(Date.now() + 60_000).toISOString()), 1, 'only the orphan goes');
      assert.deepEqual((await store.getChunks(['c1', 'c2', 'c3'])).map((c) => c.data.toString()), ['c1', 'c2', 'c3']);
    } finally {
      await store.close();
    }
    withDb(d, (db) => assert.equal(db.pragma('integrity_check', { simple: true }), 'ok'));
  });

  test('migration 7: the chunk lookups by id (stamp; rowid and size) are answered from the chunks_lookup index alone', async () => {
    const d = dir();
    await new SqliteStore(d).close();
    withDb(d, (db) => {
      for (const columns of ['stored_at', 'rowid AS r, size']) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN SELECT id, ${columns} FROM chunks INDEXED BY chunks_lookup WHERE id IN (?, ?)`).all('a', 'b') as Array<{ detail: string }>).map((r) => r.detail).join('; ');
        assert.match(plan, /COVERING INDEX chunks_lookup/, `${columns}: ${plan}`);
      }
    });
  });
});
