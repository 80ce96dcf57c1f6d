import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { CHUNK_SWEEP_GRACE_MS, type StoredChunk } from '../../src/store/store.js';
import { tempDir } from '../support/server-process.js';

/**
 * The restamp that keeps a write in flight safe from the sweep (docs/storage.md): a chunk stored long ago
 * and named by nothing (a refused write's) may be found again by a new write; presentChunks/putChunks must
 * move its stamp forward, or the sweep could take it between the write storing its chunks and naming them.
 */

const chunk = (text: string, store: SqliteStore): StoredChunk => ({ id: store.chunkId(Buffer.from(text)), size: text.length, codec: 'raw', data: Buffer.from(text) });
const twoDaysAgo = () => new Date(Date.now() - 2 * 86_400_000).toISOString();
const sweepCutoff = () => new Date(Date.now() - CHUNK_SWEEP_GRACE_MS).toISOString();

function age(dir: string, id: string): void {
  const db = new Database(join(dir, 'statelock.db'));
  try {
    db.prepare('UPDATE chunks SET stored_at = ? WHERE id = ?').run(twoDaysAgo(), id);
  } finally {
    db.close();
  }
}

test('an old unreferenced chunk found again by presentChunks or putChunks is restamped, so the sweep keeps it', async () => {
  const dir = tempDir();
  const store = new SqliteStore(dir);
  try {
    const [a, b, c] = ['found by presentChunks', 'stored again by putChunks', 'nobody wants it'].map((t) => chunk(t, store));
    await store.putChunks([a!, b!, c!]);
    for (const x of [a!, b!, c!]) age(dir, x.id);
    assert.deepEqual(await store.presentChunks([a!.id, 'f'.repeat(64)]), new Set([a!.id]));
    await store.putChunks([b!]);
    assert.equal(await store.sweepChunks(sweepCutoff()), 1, 'only the chunk nobody found again goes');
    assert.deepEqual((await store.getChunks([a!.id, b!.id])).map((x) => x.id), [a!.id, b!.id]);
    await assert.rejects(store.getChunks([c!.id]), /CHUNK_MISSING|missing/);
  } finally {
    await store.close();
  }
});

test('stored chunks are not checkpointed in the turn after putChunks (the version commit that follows checkpoints them), but within a few ms when no version follows', async () => {
  const dir = tempDir();
  const store = new SqliteStore(dir);
  const dbFile = join(dir, 'statelock.db');
  try {
    const before = statSync(dbFile).size;
    const chunks: StoredChunk[] = Array.from({ length: 16 }, () => {
      const data = randomBytes(64 * 1024);
      return { id: store.chunkId(data), size: data.length, codec: 'raw', data };
    });
    await store.putChunks(chunks);
    // Where a write's version commit would run: the chunks are still only in the WAL (a checkpoint here
    // would cost the write two fsyncs and its commit a WAL restart).
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(statSync(dbFile).size, before, 'no checkpoint between the chunks and the version');
    // No version came (a refused write): the timer checkpoints them, while the room checked for them is there.
    await sleep(250);
    assert.ok(statSync(dbFile).size >= before + 16 * 64 * 1024, 'checkpointed into the database file');
  } finally {
    await store.close();
  }
});
