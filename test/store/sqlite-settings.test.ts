import assert from 'node:assert/strict';
import { test } from 'node:test';
import type Database from 'better-sqlite3';
import { PAGE_CACHE_KIB, SqliteStore, TEMP_STORE_MEMORY } from '../../src/store/sqlite/sqlite-store.js';
import { tempDir } from '../support/server-process.js';

/** The connection settings the durability and memory figures rest on (docs/storage.md, bench/README.md). */
test("the server's SQLite connection: WAL, synchronous=FULL, foreign keys, a 4 MiB page cache, temporary files in memory", async () => {
  const store = new SqliteStore(tempDir());
  try {
    const db = (store as unknown as { db: Database.Database }).db;
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('synchronous', { simple: true }), 2);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
    assert.equal(PAGE_CACHE_KIB, 4000);
    assert.equal(db.pragma('cache_size', { simple: true }), -PAGE_CACHE_KIB, 'better-sqlite3 builds SQLite with a 16 MiB default');
    assert.equal(TEMP_STORE_MEMORY, 2);
    assert.equal(db.pragma('temp_store', { simple: true }), TEMP_STORE_MEMORY, 'savepoint sub-journals stay in memory (sqlite-temp-files.test.ts)');
    // compact() runs VACUUM with its temporary database on disk, then puts the setting back.
    await store.compact();
    assert.equal(db.pragma('temp_store', { simple: true }), TEMP_STORE_MEMORY);
  } finally {
    await store.close();
  }
});
