import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import type { ClientContext } from '../../src/audit/audit-entry.js';
import type { SqliteChunks } from '../../src/store/sqlite/sqlite-chunks.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { ChunkRef, StoredChunk } from '../../src/store/store.js';
import { rawRequest, stateBody } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { indexMark, snapshotWithPageOwners, walCommits } from '../support/sqlite-files.js';

/**
 * The versions' refs by chunk (`version_refs_by_chunk`, SQLite migration 9) are filed in batches: a write appends
 * its manifest only, and the sweep (or a rekey) first files every ref above the mark, sorted by chunk, holding the
 * write lock. As an SQLite index it cost every write one page per chunk of its state once the history was long.
 */

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'test', principal: null };
const servers: RunningServer[] = [];
after(() => Promise.all(servers.map((s) => s.stop())));

const plainChunk = (store: SqliteStore, text: string): StoredChunk => ({ id: store.chunkId(Buffer.from(text)), size: text.length, codec: 'raw', data: Buffer.from(text) });
const refsOf = (chunks: StoredChunk[]): ChunkRef[] => chunks.map((c) => ({ id: c.id, size: c.size }));

/** A new version of `key` naming `chunks`, through the store's one update path. */
function addVersion(store: SqliteStore, key: string, chunks: StoredChunk[]) {
  return store.update(key, client, (snap) => ({
    result: snap.versionCount + 1,
    changes: {
      newVersion: {
        seq: snap.versionCount + 1,
        serial: snap.versionCount + 1,
        lineage: 'L',
        md5: 'm',
        sha256: 's',
        size: chunks.reduce((n, c) => n + c.size, 0),
        encrypted: false,
        createdAt: new Date().toISOString(),
        lockId: null,
        operation: null,
        clientAddr: client.addr,
        forced: null,
        chunks: refsOf(chunks),
      },
    },
  }));
}

function inspect(dir: string) {
  const db = new Database(join(dir, 'statelock.db'), { readonly: true });
  try {
    return {
      mark: indexMark(dir, 'version_refs_by_chunk'),
      filed: db.prepare('SELECT chunk, version_id, n FROM version_refs_by_chunk ORDER BY version_id, n').all(),
      refs: db.prepare('SELECT chunk, version_id, n FROM version_chunk_refs ORDER BY version_id, n').all() as Array<{ chunk: number; version_id: number; n: number }>,
    };
  } finally {
    db.close();
  }
}

test('the catch-up files whole versions in steps of about maxRefs refs, up to the mark it sets, and says when it is done', async () => {
  const dir = tempDir();
  const store = new SqliteStore(dir);
  try {
    const chunks = ['a', 'b', 'c', 'd', 'e'].map((t) => plainChunk(store, `chunk ${t}`));
    await store.putChunks(chunks);
    await addVersion(store, 'k', chunks.slice(0, 3)); // 3 refs
    await addVersion(store, 'k', chunks.slice(1, 5)); // 4 refs
    await addVersion(store, 'j', chunks.slice(0, 2)); // 2 refs
    const { refs } = inspect(dir);
    const versionIds = [...new Set(refs.map((r) => r.version_id))];
    assert.equal(versionIds.length, 3);
    assert.equal(inspect(dir).filed.length, 0, 'a write files nothing by chunk');

    const chunksTable = (store as unknown as { chunks: SqliteChunks }).chunks;
    const db = (store as unknown as { db: Database.Database }).db;
    const step = (maxRefs: number) => db.transaction(() => chunksTable.catchUpRefs(maxRefs)).immediate();
    // A step of 2 refs takes the first version whole (3 refs), the next step the second (4), then the third.
    assert.equal(step(2), false);
    assert.equal(inspect(dir).mark, versionIds[0]);
    assert.deepEqual(inspect(dir).filed, refs.filter((r) => r.version_id <= versionIds[0]!));
    assert.equal(step(2), false);
    assert.equal(inspect(dir).mark, versionIds[1]);
    assert.equal(step(2), true);
    assert.equal(inspect(dir).mark, versionIds[2]);
    assert.deepEqual(inspect(dir).filed, refs);
    assert.equal(step(2), true, 'nothing left');
    assert.deepEqual(inspect(dir).filed, refs);
  } finally {
    await store.close();
  }
});

test('the sweep files the refs above the mark before it decides: it keeps chunks named by filed refs and by new ones, and takes only the chunk nobody names', async () => {
  const dir = tempDir();
  const store = new SqliteStore(dir);
  const future = () => new Date(Date.now() + 60_000).toISOString();
  try {
    const [a, b, c, orphan] = ['filed', 'filed too', 'named after the first sweep', 'named by nothing'].map((t) => plainChunk(store, t));
    await store.putChunks([a!, b!, orphan!]);
    await addVersion(store, 'k', [a!, b!]);
    assert.equal(await store.sweepChunks(future()), 1, 'the orphan goes; a and b are named');
    await store.putChunks([c!]);
    const filedOnce = inspect(dir);
    assert.equal(filedOnce.filed.length, 2);
    // A version after the sweep: its refs are above the mark (not filed) when the next sweep starts.
    await addVersion(store, 'k', [c!]);
    assert.equal(inspect(dir).filed.length, 2);
    assert.equal(await store.sweepChunks(future()), 0, 'c is named by the new version');
    const filed = inspect(dir);
    assert.deepEqual(filed.filed, filed.refs);
    assert.deepEqual((await store.getChunks([a!.id, b!.id, c!.id])).map((x) => x.id), [a!.id, b!.id, c!.id]);
  } finally {
    await store.close();
  }
});

test('on a real server, a state write commits its manifest without a page of any by-chunk table', async () => {
  const server = await startServer();
  servers.push(server);
  const url = `${server.url}/state/refs/app`;
  const resources = Array.from({ length: 400 }, (_, i) => ({ mode: 'managed', type: 'null_resource', name: `r${i}`, provider: 'provider["registry.terraform.io/hashicorp/null"]', instances: [{ schema_version: 0, attributes: { id: `${i}-${'x'.repeat(i % 97)}` } }] }));
  for (let serial = 1; serial <= 3; serial++) {
    const res = await rawRequest(url, { method: 'POST', body: stateBody(serial, 'refs-lineage', { resources }), headers: { 'Content-Type': 'application/json' } });
    assert.equal(res.status, 200, res.text);
  }
  // Which b-tree each page belongs to (dbstat), on a copy: the server keeps running on its own files.
  const copy = snapshotWithPageOwners(server.dataDir);
  const commits = walCommits(join(copy.dir, 'statelock.db-wal')).map((pages) => new Set(pages.map(copy.owner)));
  // The migrations' commit (which creates every table) aside: the commits that wrote a version and its manifest.
  const writes = commits.filter((c) => c.has('versions') && !c.has('sqlite_schema'));
  assert.equal(writes.length, 3, 'the WAL holds the three writes');
  for (const c of writes) {
    assert.ok(c.has('version_chunk_refs'), `a version commits with its manifest: ${[...c].join(', ')}`);
    assert.deepEqual([...c].filter((n) => /by_chunk/.test(n)), [], `a write's commit wrote a by-chunk page: ${[...c].join(', ')}`);
  }
});
