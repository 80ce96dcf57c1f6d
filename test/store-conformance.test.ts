import assert from 'node:assert/strict';
import { Keyring, keyIdOf } from '../src/store/encryption.js';
import { after, describe, test } from 'node:test';
import type { ClientContext } from '../src/audit/audit-entry.js';
import { StatelockError } from '../src/server/errors.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import type { BodyContent, ChunkRef, LockRecord, NewVersion, Store, StoredChunk } from '../src/store/store.js';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { tempDir } from './support/server-process.js';
import { PostgresStore } from '../src/store/postgres/postgres-store.js';
import { PG_SKIP_REASON, pgAvailable, psql, startPostgres, type PgCluster } from './support/postgres.js';
import { loadSqlDump } from './support/legacy-postgres.js';

/**
 * Every engine runs the same contract. PostgreSQL: one private cluster for the file, a database per
 * "directory" (the same directory opens the same database, as two SQLite stores on one file do).
 */
let cluster: Promise<PgCluster> | null = null;
const databases = new Map<string, Promise<string>>();
const postgresFor = (dir: string): Promise<string> => {
  cluster ??= startPostgres();
  let db = databases.get(dir);
  if (!db) {
    const name = `conformance_${databases.size + 1}`;
    db = cluster.then(async (c) => {
      await psql(c, `CREATE DATABASE ${name}`);
      return c.url.replace(/\/statelock$/, `/${name}`);
    });
    databases.set(dir, db);
  }
  return db;
};
/** The SQLite fixture made by the code before bodies were chunked (test/fixtures/legacy-sqlite-v4/README.md). */
const LEGACY_SQLITE = new URL('../../test/fixtures/legacy-sqlite-v4/statelock.db', import.meta.url);
/** The same content in a PostgreSQL database of that time, as pg_dump wrote it (test/fixtures/legacy-postgres-v3/README.md). */
const LEGACY_POSTGRES = new URL('../../test/fixtures/legacy-postgres-v3/statelock.sql', import.meta.url);

const ENGINES: Array<{ name: string; open: (dir: string) => Promise<Store>; skip: string | false; openLegacy?: () => Promise<Store> }> = [
  {
    name: 'sqlite',
    open: async (dir) => new SqliteStore(dir),
    skip: false,
    openLegacy: async () => {
      const dir = tempDir();
      copyFileSync(LEGACY_SQLITE, join(dir, 'statelock.db'));
      return new SqliteStore(dir);
    },
  },
  {
    name: 'postgres',
    open: async (dir) => PostgresStore.open(await postgresFor(dir)),
    skip: pgAvailable() ? false : PG_SKIP_REASON,
    openLegacy: async () => {
      const url = await postgresFor(tempDir());
      await loadSqlDump(url, LEGACY_POSTGRES);
      return PostgresStore.open(url);
    },
  },
];
after(async () => {
  if (cluster) await (await cluster).stop('fast');
});

const client: ClientContext = { addr: '127.0.0.1', userAgent: 'test', principal: null };

/**
 * Stores `body` as chunks of `piece` bytes (how chunks are cut is the content layer's business, not the
 * engine's) and returns its manifest.
 */
async function storeBody(store: Store, body: Buffer | string, piece = 4096): Promise<ChunkRef[]> {
  const bytes = Buffer.from(body);
  const chunks: StoredChunk[] = [];
  for (let at = 0; at < bytes.length; at += piece) {
    const p = bytes.subarray(at, at + piece);
    chunks.push({ id: store.chunkId(p), size: p.length, codec: 'raw', data: Buffer.from(p) });
  }
  await store.putChunks(chunks);
  return chunks.map(({ id, size }) => ({ id, size }));
}

/** The bytes of a read's content: its chunks fetched and decoded in order, or a legacy row's whole body. */
async function bytesOf(store: Store, content: BodyContent | undefined): Promise<Buffer | undefined> {
  if (!content) return undefined;
  if (content.kind === 'whole') return content.body;
  const chunks = await store.getChunks(content.chunks.map((c) => c.id));
  chunks.forEach((c, i) => assert.deepEqual([c.id, c.size], [content.chunks[i]!.id, content.chunks[i]!.size]));
  return Buffer.concat(chunks.map((c) => (c.codec === 'deflate' ? inflateRawSync(c.data) : c.data)));
}

function version(seq: number, serial: number, chunks: ChunkRef[], size: number, lineage = 'L'): NewVersion {
  return { seq, serial, lineage, md5: `md5-${seq}`, sha256: `sha-${seq}-${size}`, size, encrypted: false, createdAt: new Date().toISOString(), lockId: null, operation: null, clientAddr: client.addr, forced: null, chunks };
}

function lockRecord(key: string, id: string): LockRecord {
  const now = new Date().toISOString();
  return { key, id, operation: 'OperationTypeApply', who: 'a@h', version: '1.15.0', created: now, info: '', path: '', raw: `{"ID":"${id}"}`, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: 'ua', sessionId: null, holds: ['http'] };
}

/** Appends the next version of `key` through update, as the state service does. */
async function put(store: Store, key: string, serial: number, body = `{"serial":${serial},"lineage":"L"}`, piece?: number) {
  const chunks = await storeBody(store, body, piece);
  return store.update(key, client, (snap) => ({ result: snap.versionCount + 1, changes: { newVersion: version(snap.versionCount + 1, serial, chunks, Buffer.byteLength(body)) } }));
}

const readBytes = async (store: Store, key: string, which?: { seq: number } | { serial: number }) =>
  bytesOf(store, (which ? await store.readVersion(key, which) : await store.readCurrent(key))?.content);

for (const engine of ENGINES) {
  describe(`store contract: ${engine.name}`, { skip: engine.skip }, () => {
    test('update sees the previous commit and numbers versions 1, 2, 3', async () => {
      const store = await engine.open(tempDir());
      assert.equal(await put(store, 'a/k', 1), 1);
      assert.equal(await put(store, 'a/k', 2), 2);
      const seen = await store.update('a/k', client, (snap) => ({ result: snap, changes: {} }));
      assert.equal(seen.current?.serial, 2);
      assert.equal(seen.current?.seq, 2);
      assert.equal(seen.versionCount, 2);
      assert.equal(seen.lock, null);
      await store.close();
    });

    test("the snapshot's highest serial is the current lineage's, and 0 without a current version", async () => {
      const store = await engine.open(tempDir());
      try {
        const putIn = async (lineage: string, serial: number) => {
          const body = `{"serial":${serial},"lineage":"${lineage}"}`;
          const chunks = await storeBody(store, body);
          await store.update('h', client, (snap) => ({ result: null, changes: { newVersion: version(snap.versionCount + 1, serial, chunks, Buffer.byteLength(body), lineage) } }));
        };
        const snap = () => store.update('h', client, (s) => ({ result: { current: s.current?.lineage ?? null, highest: s.highestSerial, count: s.versionCount }, changes: {} }));
        assert.deepEqual(await snap(), { current: null, highest: 0, count: 0 });
        await putIn('L', 1);
        await putIn('L', 7);
        await putIn('L', 3); // a forced push may go back: the highest stays 7
        await putIn('M', 2);
        assert.deepEqual(await snap(), { current: 'M', highest: 2, count: 4 });
        await putIn('L', 4);
        assert.deepEqual(await snap(), { current: 'L', highest: 7, count: 5 });
        await store.update('h', client, () => ({ result: null, changes: { deleteState: true } }));
        assert.deepEqual(await snap(), { current: null, highest: 0, count: 5 }, 'a soft-deleted key has no current version; its numbering goes on');
      } finally {
        await store.close();
      }
    });

    test('bytes come back exactly as written, current and by seq or serial', async () => {
      const store = await engine.open(tempDir());
      const odd = '{"serial":1,"lineage":"L","x":"\u00e9\u2603",  "pad":"  "}\n';
      await put(store, 'k', 1, odd);
      await put(store, 'k', 2);
      await put(store, 'k', 2, '{"serial":2,"lineage":"L","again":true}');
      assert.equal((await readBytes(store, 'k', { seq: 1 }))?.toString(), odd);
      assert.equal((await store.readVersion('k', { serial: 2 }))?.meta.seq, 3, 'the newest version with that serial');
      assert.equal((await store.readCurrent('k'))?.meta.seq, 3);
      assert.equal(await store.readVersion('k', { seq: 9 }), null);
      await store.close();
    });

    test('a refusal commits its audit entry and nothing else, then throws', async () => {
      const store = await engine.open(tempDir());
      await put(store, 'k', 1);
      await assert.rejects(
        store.update('k', client, () => ({
          error: new StatelockError('SERIAL_LOWER', { incoming: 0, current: 1 }),
          changes: { audit: [{ action: 'state.write.refused', key: 'k', lockId: null, outcome: 'refused', detail: { why: 'test' } }] },
        })),
        (e: unknown) => e instanceof StatelockError && e.code === 'SERIAL_LOWER',
      );
      const audit = await store.listAudit({ key: 'k', limit: 10 });
      assert.deepEqual(audit.items.map((a) => [a.action, a.outcome, a.detail]), [['state.write.refused', 'refused', { why: 'test' }]]);
      assert.equal((await store.readCurrent('k'))?.meta.seq, 1);
      await store.close();
    });

    test('an exception inside decide rolls the whole transaction back', async () => {
      const store = await engine.open(tempDir());
      await assert.rejects(
        store.update('k', client, () => {
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await store.readCurrent('k'), null);
      await store.close();
    });

    test('locks: set, touch, clear, list by prefix with pagination, count', async () => {
      const store = await engine.open(tempDir());
      for (const key of ['p/1', 'p/2', 'p/3', 'q/1']) await store.update(key, client, () => ({ result: null, changes: { lock: { set: lockRecord(key, `id-${key}`) } } }));
      await store.update('p/1', client, () => ({ result: null, changes: { lock: { touch: '2030-01-01T00:00:00.000Z' } } }));
      assert.equal((await store.getLock('p/1'))?.lastActivityAt, '2030-01-01T00:00:00.000Z');
      assert.equal((await store.getLock('p/1'))?.raw, '{"ID":"id-p/1"}');
      const first = await store.listLocks({ prefix: 'p/', limit: 2 });
      assert.deepEqual(first.items.map((l) => l.key), ['p/1', 'p/2']);
      const second = await store.listLocks({ prefix: 'p/', after: first.next!, limit: 2 });
      assert.deepEqual([second.items.map((l) => l.key), second.next], [['p/3'], null]);
      assert.equal(await store.countLocks(), 4);
      await store.update('p/2', client, () => ({ result: null, changes: { lock: { clear: true } } }));
      assert.equal(await store.getLock('p/2'), null);
      assert.equal(await store.countLocks(), 3);
      await store.close();
    });

    test('a key with quotes, backslashes and non-ASCII: its lock and snapshot are its own', async () => {
      // PostgreSQL takes the key's advisory lock in a simple query, with the key as an escaped literal.
      const store = await engine.open(tempDir());
      try {
        const odd = `it's a \\"key\\"/é'; SELECT 1; --`;
        const plain = `it's a "key"/é'; SELECT 1; --`;
        await store.update(odd, client, () => ({ result: null, changes: { lock: { set: lockRecord(odd, 'A') } } }));
        const seen = await store.update(odd, client, (snap) => ({ result: snap.lock?.id ?? null, changes: { lock: { clear: true } } }));
        assert.equal(seen, 'A');
        assert.equal(await store.update(odd, client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: 'A' }), true);
        assert.equal(await store.update(plain, client, (snap) => ({ result: snap.lock, changes: {} })), null, 'a key differing only by its backslashes is another key');
      } finally {
        await store.close();
      }
    });

    test('lock holds: set with one door, touch adds and drops doors, the lock row keeps them', async () => {
      const store = await engine.open(tempDir());
      await store.update('h/1', client, () => ({ result: null, changes: { lock: { set: { ...lockRecord('h/1', 'H'), holds: ['s3'] } } } }));
      assert.deepEqual((await store.getLock('h/1'))?.holds, ['s3']);
      await store.update('h/1', client, () => ({ result: null, changes: { lock: { touch: '2030-01-01T00:00:00.000Z', holds: ['s3', 'dynamodb'] } } }));
      assert.deepEqual((await store.getLock('h/1'))?.holds, ['s3', 'dynamodb']);
      await store.update('h/1', client, () => ({ result: null, changes: { lock: { touch: '2030-01-01T00:00:01.000Z' } } }));
      assert.deepEqual((await store.getLock('h/1'))?.holds, ['s3', 'dynamodb'], 'a touch without holds keeps them');
      await store.update('h/1', client, () => ({ result: null, changes: { lock: { touch: '2030-01-01T00:00:02.000Z', holds: ['dynamodb'] } } }));
      const l = await store.getLock('h/1');
      assert.deepEqual([l?.holds, l?.lastActivityAt, l?.id], [['dynamodb'], '2030-01-01T00:00:02.000Z', 'H']);
      assert.deepEqual((await store.listLocks({ limit: 10 })).items.map((x) => x.holds), [['dynamodb']]);
      await store.close();
    });

    test('buckets and lock tables: create once, get, list in name order, delete', async () => {
      const store = await engine.open(tempDir());
      const at = new Date().toISOString();
      assert.equal(await store.createBucket({ name: 'tfstate', region: 'us-east-1', createdAt: at }), true);
      assert.equal(await store.createBucket({ name: 'tfstate', region: 'eu-west-1', createdAt: at }), false);
      assert.equal(await store.createBucket({ name: 'acme', region: 'eu-west-1', createdAt: at }), true);
      assert.deepEqual(await store.getBucket('tfstate'), { name: 'tfstate', region: 'us-east-1', createdAt: at });
      assert.equal(await store.getBucket('nope'), null);
      assert.deepEqual((await store.listBuckets()).map((b) => b.name), ['acme', 'tfstate']);
      assert.equal(await store.deleteBucket('acme'), true);
      assert.equal(await store.deleteBucket('acme'), false);
      const definition = { KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], BillingMode: 'PAY_PER_REQUEST' };
      assert.equal(await store.createLockTable({ name: 'locks', definition, createdAt: at }), true);
      assert.equal(await store.createLockTable({ name: 'locks', definition: {}, createdAt: at }), false);
      assert.deepEqual(await store.getLockTable('locks'), { name: 'locks', definition, createdAt: at });
      assert.deepEqual((await store.listLockTables()).map((t) => t.name), ['locks']);
      assert.equal(await store.deleteLockTable('locks'), true);
      assert.equal(await store.getLockTable('locks'), null);
      await store.close();
    });

    test('multipart uploads: parts are kept (a re-sent part replaces), listed in order, read back, deleted with the upload', async () => {
      const store = await engine.open(tempDir());
      const at = new Date().toISOString();
      await store.createUpload({ id: 'U1', key: 'b/big.tfstate', contentType: 'application/json', createdAt: at, clientAddr: client.addr });
      assert.deepEqual(await store.getUpload('U1'), { id: 'U1', key: 'b/big.tfstate', contentType: 'application/json', createdAt: at, clientAddr: client.addr });
      const big = Buffer.alloc(6 * 1024 * 1024, 7);
      await store.putPart('U1', 2, Buffer.from('tail'), 'm2');
      await store.putPart('U1', 1, Buffer.from('first try'), 'm1a');
      await store.putPart('U1', 1, big, 'm1');
      assert.deepEqual(await store.listParts('U1'), [
        { uploadId: 'U1', partNumber: 1, md5: 'm1', size: big.length },
        { uploadId: 'U1', partNumber: 2, md5: 'm2', size: 4 },
      ]);
      assert.ok((await store.readPart('U1', 1))?.equals(big));
      assert.equal(await store.readPart('U1', 3), null);
      assert.equal(await store.deleteUpload('U1'), true);
      assert.equal(await store.getUpload('U1'), null);
      assert.deepEqual(await store.listParts('U1'), []);
      assert.equal(await store.deleteUpload('U1'), false);
      await store.close();
    });

    test('rewriteBodies: chunks pass through transformChunk, parts through transform; null leaves it; metadata stays', async () => {
      const store = await engine.open(tempDir());
      await put(store, 'rw/a', 1);
      await put(store, 'rw/a', 2, `{"serial":2,"lineage":"L","pad":"${'a'.repeat(5000)}${'b'.repeat(5000)}"}`); // three distinct chunks
      await store.createUpload({ id: 'U', key: 'rw/a', contentType: 'application/json', createdAt: new Date().toISOString(), clientAddr: client.addr });
      await store.putPart('U', 1, Buffer.from('part'), 'm');
      const ring = new Keyring([{ id: 'k', key: Buffer.alloc(32, 7) }]);
      const seenChunks: number[] = [];
      const seenWhole: string[] = [];
      // Seal the small chunk (as rekey does) and the part, leave the large chunks.
      const result = await store.rewriteBodies(
        (body) => (seenWhole.push(body.toString()), ring.seal(body)),
        undefined,
        (chunk) => (seenChunks.push(chunk.size), chunk.size < 100 ? { ...chunk, data: ring.seal(chunk.data) } : null),
      );
      assert.deepEqual(seenWhole, ['part'], 'chunked versions are not offered as whole bodies');
      assert.deepEqual(seenChunks.sort((a, b) => a - b), [26, 1843, 4096, 4096]);
      assert.deepEqual(result, { scanned: 5, rewritten: 2 });
      const v1 = (await store.readVersion('rw/a', { seq: 1 }))!;
      assert.equal(v1.content.kind, 'chunks');
      const [sealed] = await store.getChunks(v1.content.kind === 'chunks' ? v1.content.chunks.map((c) => c.id) : []);
      assert.equal(keyIdOf(sealed!.data), 'k');
      assert.equal(ring.open(sealed!.data).toString(), '{"serial":1,"lineage":"L"}');
      assert.equal(ring.open((await store.readPart('U', 1))!).toString(), 'part');
      const v2 = (await store.readVersion('rw/a', { seq: 2 }))!;
      assert.equal((await bytesOf(store, v2.content))?.length, v2.meta.size, 'untouched chunks read back whole');
      await store.close();
    });

    test('rewriteBodies: a chunk returned under a new id is re-filed: references move, the old id is gone, an id already stored is kept', async () => {
      const store = await engine.open(tempDir());
      const plain = Buffer.from('{"serial":1,"lineage":"L"}');
      // Two ids for one plaintext, as after encryption was turned on: the old scheme's and the new one's.
      await store.putChunks([
        { id: `old.${store.chunkId(plain)}`, size: plain.length, codec: 'raw', data: plain },
        { id: `new.${store.chunkId(plain)}`, size: plain.length, codec: 'raw', data: plain },
        { id: 'old.other', size: 5, codec: 'raw', data: Buffer.from('other') },
      ]);
      const ref = (prefix: string) => [{ id: `${prefix}.${store.chunkId(plain)}`, size: plain.length }];
      await store.update('rf/a', client, () => ({ result: null, changes: { newVersion: version(1, 1, ref('old'), plain.length) } }));
      await store.update('rf/a', client, () => ({ result: null, changes: { newVersion: version(2, 2, [...ref('new'), { id: 'old.other', size: 5 }], plain.length + 5) } }));
      await store.update('rf/a', client, () => ({ result: null, changes: { rejectedWrite: { lockId: 'X', serial: 3, lineage: 'L', size: 5, sha256: 's', reason: 'fenced', clientAddr: 'a', chunks: [{ id: 'old.other', size: 5 }] } } }));
      assert.equal((await store.chunkStats()).chunks, 3);
      const result = await store.rewriteBodies(() => null, undefined, (c) => (c.id.startsWith('old.') ? { ...c, id: `new.${c.id.slice(4)}` } : null));
      assert.deepEqual(result, { scanned: 3, rewritten: 2 });
      const ids = async (seq: number) => {
        const c = (await store.readVersion('rf/a', { seq }))!.content;
        return c.kind === 'chunks' ? c.chunks.map((x) => x.id) : [];
      };
      assert.deepEqual(await ids(1), [`new.${store.chunkId(plain)}`], 'moved to the id that was already stored');
      assert.deepEqual(await ids(2), [`new.${store.chunkId(plain)}`, 'new.other']);
      const rejected = (await store.readRejected('rf/a', 1))!.content;
      assert.deepEqual(rejected.kind === 'chunks' ? rejected.chunks : null, [{ id: 'new.other', size: 5 }]);
      assert.equal((await bytesOf(store, (await store.readVersion('rf/a', { seq: 2 }))!.content))?.toString(), `${plain.toString()}other`);
      assert.equal((await store.chunkStats()).chunks, 2, 'the duplicate is gone');
      await assert.rejects(store.getChunks([`old.${store.chunkId(plain)}`]), (e: unknown) => e instanceof StatelockError && e.code === 'CHUNK_MISSING');
      assert.equal(await store.sweepChunks(new Date(Date.now() + 60_000).toISOString()), 0, 'nothing left unreferenced');
      await store.close();
    });

    test('chunks: two versions sharing content store the shared chunks once; getChunks keeps order and duplicates', async () => {
      const store = await engine.open(tempDir());
      const block = (c: string) => c.repeat(4096);
      const first = `${block('a')}${block('b')}${block('c')}`;
      await put(store, 'dd/a', 1, first);
      await put(store, 'dd/b', 1, first); // another key, same content
      await put(store, 'dd/a', 2, `${block('a')}${block('x')}${block('c')}`); // one chunk changed
      const stats = await store.chunkStats();
      assert.equal(stats.chunks, 4, 'a, b, c once each, plus x');
      assert.equal(stats.storedBytes, 4 * 4096);
      assert.equal((await readBytes(store, 'dd/a'))?.toString(), `${block('a')}${block('x')}${block('c')}`);
      assert.equal((await readBytes(store, 'dd/b'))?.toString(), first);
      const [a, c] = [Buffer.from(block('a')), Buffer.from(block('c'))].map((b) => store.chunkId(b));
      const got = await store.getChunks([c!, a!, c!]);
      assert.deepEqual(got.map((g) => [g.id, g.size, g.codec, g.data.subarray(0, 1).toString()]), [[c, 4096, 'raw', 'c'], [a, 4096, 'raw', 'a'], [c, 4096, 'raw', 'c']]);
      assert.deepEqual(await store.getChunks([]), []);
      assert.deepEqual(await store.presentChunks([a!, 'f'.repeat(64), c!]), new Set([a, c]));
      assert.deepEqual(await store.presentChunks([]), new Set());
      // Stored again: left alone (the data of an id already present is never replaced).
      await store.putChunks([{ id: a!, size: 4096, codec: 'deflate', data: Buffer.from('not it') }]);
      assert.deepEqual((await store.getChunks([a!]))[0]!.data, Buffer.from(block('a')));
      await store.close();
    });

    test('chunks: a missing id is CHUNK_MISSING for getChunks, and CHUNK_GONE for a version or rejected write naming it (nothing committed)', async () => {
      const store = await engine.open(tempDir());
      const chunks = await storeBody(store, 'present');
      await assert.rejects(store.getChunks([chunks[0]!.id, 'f'.repeat(64)]), (e: unknown) => e instanceof StatelockError && e.code === 'CHUNK_MISSING');
      await assert.rejects(
        store.update('miss/a', client, () => ({ result: null, changes: { newVersion: version(1, 1, [...chunks, { id: 'e'.repeat(64), size: 3 }], 10), audit: [{ action: 'state.write', key: 'miss/a', lockId: null, outcome: 'ok', detail: {} }] } })),
        (e: unknown) => e instanceof StatelockError && e.code === 'CHUNK_GONE',
      );
      assert.equal(await store.readCurrent('miss/a'), null);
      assert.equal((await store.listAudit({ key: 'miss/a', limit: 10 })).items.length, 0, 'the whole transaction rolled back');
      await assert.rejects(
        store.update('miss/a', client, () => ({ result: null, changes: { rejectedWrite: { lockId: 'X', serial: 1, lineage: 'L', size: 3, sha256: 's', reason: 'fenced', clientAddr: 'a', chunks: [{ id: 'e'.repeat(64), size: 3 }] } } })),
        (e: unknown) => e instanceof StatelockError && e.code === 'CHUNK_GONE',
      );
      assert.equal((await store.listRejected('miss/a', { limit: 10 })).items.length, 0);
      await store.close();
    });

    test('chunks: the sweep takes unreferenced chunks stamped before the cut-off, and keeps referenced and recent ones', async () => {
      const store = await engine.open(tempDir());
      await put(store, 'sw/a', 1, `{"serial":1,"lineage":"L","v":"${'1'.repeat(5000)}"}`);
      const fenced = await storeBody(store, 'fenced work');
      await store.update('sw/a', client, () => ({ result: null, changes: { rejectedWrite: { lockId: 'X', serial: 9, lineage: 'L', size: 11, sha256: 's', reason: 'fenced', clientAddr: 'a', chunks: fenced } } }));
      const orphans = await storeBody(store, `an abandoned write ${'z'.repeat(6000)}`); // two chunks nobody names
      const before = await store.chunkStats();
      assert.equal(before.chunks, 2 + 1 + 2);
      const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
      assert.equal(await store.sweepChunks(hourAgo), 0, 'recent orphans are kept: they may belong to a write in flight');
      assert.equal(await store.sweepChunks(new Date(Date.now() + 60_000).toISOString()), 2);
      assert.equal((await store.chunkStats()).chunks, 3);
      await assert.rejects(store.getChunks([orphans[0]!.id]), (e: unknown) => e instanceof StatelockError && e.code === 'CHUNK_MISSING');
      assert.equal((await readBytes(store, 'sw/a'))?.length, (await store.readCurrent('sw/a'))!.meta.size, 'referenced chunks stay');
      assert.equal((await bytesOf(store, (await store.readRejected('sw/a', 1))!.content))?.toString(), 'fenced work');
      // A soft-deleted key's versions still name their chunks.
      await store.update('sw/a', client, () => ({ result: null, changes: { deleteState: true } }));
      assert.equal(await store.sweepChunks(new Date(Date.now() + 60_000).toISOString()), 0);
      await store.close();
    });

    test('legacy rows written before chunking still read whole, beside new chunked versions', { skip: engine.openLegacy ? false : 'no fixture of the pre-chunking schema for this engine yet' }, async () => {
      const store = await engine.openLegacy!();
      const key = 'legacy/app/terraform.tfstate';
      const v1 = (await store.readVersion(key, { seq: 1 }))!;
      assert.equal(v1.content.kind, 'whole');
      assert.match((await bytesOf(store, v1.content))!.toString(), /"serial": 1,[\s\S]*"id": "first"/);
      assert.equal((await bytesOf(store, v1.content))!.length, v1.meta.size);
      const current = (await store.readCurrent(key))!;
      assert.deepEqual([current.meta.seq, current.meta.serial], [2, 2]);
      assert.match((await bytesOf(store, current.content))!.toString(), /"id": "second"/);
      const rejected = (await store.readRejected(key, 1))!;
      assert.equal(rejected.content.kind, 'whole');
      assert.match((await bytesOf(store, rejected.content))!.toString(), /"id": "fenced"/);
      assert.equal(await put(store, key, 3), 3, 'a new version continues the numbering, stored as chunks');
      assert.equal((await store.readCurrent(key))!.content.kind, 'chunks');
      assert.equal((await readBytes(store, key))?.toString(), '{"serial":3,"lineage":"L"}');
      // rekey offers legacy bodies whole, and chunks as chunks.
      const whole: number[] = [];
      const chunked: number[] = [];
      await store.rewriteBodies((b) => (whole.push(b.length), null), undefined, (c) => (chunked.push(c.size), null));
      assert.deepEqual([whole.length, chunked.length], [3, 1]);
      await store.close();
    });

    test('soft delete hides the key from reads and listings and keeps every version', async () => {
      const store = await engine.open(tempDir());
      await put(store, 'd/k', 1);
      await put(store, 'd/k', 2);
      await put(store, 'd/other', 1);
      await store.update('d/k', client, () => ({ result: null, changes: { deleteState: true } }));
      assert.equal(await store.readCurrent('d/k'), null);
      assert.deepEqual((await store.listStates({ prefix: 'd/', limit: 10 })).items.map((s) => s.key), ['d/other']);
      assert.deepEqual((await store.listVersions('d/k', { limit: 10 })).items.map((v) => v.seq), [1, 2]);
      const snap = await store.update('d/k', client, (s) => ({ result: s, changes: {} }));
      assert.equal(snap.current, null, 'a deleted key is empty for the rules');
      assert.equal(snap.versionCount, 2, 'but its version numbering continues');
      assert.equal(await put(store, 'd/k', 1), 3);
      assert.equal((await store.readCurrent('d/k'))?.meta.seq, 3);
      await store.close();
    });

    test('listStates orders by key, filters by prefix exactly, paginates, and flags locks', async () => {
      const store = await engine.open(tempDir());
      for (const key of ['a/b', 'a/b/c', 'a/bz', 'a0', 'a/é', 'b']) await put(store, key, 1);
      await store.update('a/bz', client, () => ({ result: null, changes: { lock: { set: lockRecord('a/bz', 'X') } } }));
      const all = await store.listStates({ prefix: 'a/', limit: 100 });
      assert.deepEqual(all.items.map((s) => s.key), ['a/b', 'a/b/c', 'a/bz', 'a/é']);
      assert.deepEqual(all.items.map((s) => s.locked), [false, false, true, false]);
      const keys: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listStates({ limit: 2, ...(after ? { after } : {}) });
        keys.push(...page.items.map((s) => s.key));
        if (!page.next) break;
        after = page.next;
      }
      assert.deepEqual(keys, ['a/b', 'a/b/c', 'a/bz', 'a/é', 'a0', 'b']);
      await store.close();
    });

    test('audit filters by key, action and time, paginated by id', async () => {
      const store = await engine.open(tempDir());
      const entry = (key: string, action: 'lock.acquire' | 'state.write') => ({ action, key, lockId: null, outcome: 'ok' as const, detail: {} });
      await store.update('x', client, () => ({ result: null, changes: { audit: [entry('x', 'lock.acquire'), entry('x', 'state.write')] } }));
      await store.update('y', client, () => ({ result: null, changes: { audit: [entry('y', 'state.write')] } }));
      assert.equal((await store.listAudit({ key: 'x', limit: 10 })).items.length, 2);
      assert.deepEqual((await store.listAudit({ action: 'state.write', limit: 10 })).items.map((a) => a.key), ['x', 'y']);
      assert.equal((await store.listAudit({ since: '2999-01-01T00:00:00.000Z', limit: 10 })).items.length, 0);
      const p1 = await store.listAudit({ limit: 2 });
      const p2 = await store.listAudit({ limit: 2, after: Number(p1.next) });
      assert.deepEqual([...p1.items, ...p2.items].map((a) => a.id), [1, 2, 3]);
      assert.equal(p2.next, null);
      assert.equal(p1.items[0]!.clientAddr, '127.0.0.1');
      await store.close();
    });

    test("a lock change's audit entries land with it, in order, whether one or several", async () => {
      const store = await engine.open(tempDir());
      try {
        const entry = (action: 'lock.acquire' | 'lock.release' | 'lock.force-unlock', lockId: string, n: number) => ({ action, key: 'k', lockId, outcome: 'ok' as const, detail: { n } });
        await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'A') }, audit: [entry('lock.acquire', 'A', 1)] } }));
        await store.update('k', client, () => ({ result: null, changes: { lock: { clear: true }, audit: [entry('lock.release', 'A', 2)] } }));
        await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'B') }, audit: [entry('lock.acquire', 'B', 3), entry('lock.acquire', 'B', 4)] } }));
        await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'C') }, audit: [entry('lock.force-unlock', 'B', 5)] } }));
        await store.update('k', client, () => ({ result: null, changes: { lock: { clear: true }, audit: [entry('lock.release', 'C', 6), entry('lock.release', 'C', 7)] } }));
        await store.update('k', client, () => ({ result: null, changes: { lock: { clear: true }, audit: [entry('lock.release', 'C', 8)] } })); // nothing held: no row to clear
        const trail = (await store.listAudit({ key: 'k', limit: 20 })).items;
        assert.deepEqual(
          trail.map((a) => [a.action, a.lockId, (a.detail as { n: number }).n, a.clientAddr]),
          [
            ['lock.acquire', 'A', 1, client.addr],
            ['lock.release', 'A', 2, client.addr],
            ['lock.acquire', 'B', 3, client.addr],
            ['lock.acquire', 'B', 4, client.addr],
            ['lock.force-unlock', 'B', 5, client.addr],
            ['lock.release', 'C', 6, client.addr],
            ['lock.release', 'C', 7, client.addr],
            ['lock.release', 'C', 8, client.addr],
          ],
        );
        assert.equal(await store.getLock('k'), null);
        for (const id of ['A', 'B', 'C']) assert.equal(await store.update('k', client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: id }), true, `${id} released`);
      } finally {
        await store.close();
      }
    });

    test('two store instances on one database never act on the same snapshot', async () => {
      const dir = tempDir();
      const a = await engine.open(dir);
      const b = await engine.open(dir);
      // Each round both try to take the same lock with a rule that acquires only when free.
      let wins = 0;
      for (let round = 0; round < 50; round++) {
        const key = `race/${round}`;
        const attempt = (s: Store, id: string) =>
          s.update(key, client, (snap) => (snap.lock ? { result: false, changes: {} } : { result: true, changes: { lock: { set: lockRecord(key, id) } } }));
        const results = await Promise.all([attempt(a, 'A'), attempt(b, 'B')]);
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: exactly one winner`);
        wins++;
      }
      assert.equal(wins, 50);
      await a.close();
      await b.close();
    });

    test('sessions: create, renew while live, end; a lock bound to a session reads back with it joined', async () => {
      const store = await engine.open(tempDir());
      const now = new Date().toISOString();
      await store.createSession({ id: 's1', key: 'k', ttlMs: 30_000, createdAt: now, expiresAt: now, lastHeartbeatAt: now, endedAt: null, endReason: null, clientAddr: 'a', userAgent: 'u', holder: { host: 'h' }, ci: { provider: 'gitlab' } });
      assert.equal((await store.renewSession('s1', '2030-01-01T00:00:00.000Z', now))?.expiresAt, '2030-01-01T00:00:00.000Z');
      await store.update('k', client, () => ({ result: null, changes: { lock: { set: { ...lockRecord('k', 'L1'), sessionId: 's1' } } } }));
      const lock = await store.getLock('k');
      assert.deepEqual([lock?.sessionId, lock?.session?.ci, lock?.session?.holder], ['s1', { provider: 'gitlab' }, { host: 'h' }]);
      await store.update('k', client, () => ({ result: null, changes: { endSession: { id: 's1', reason: 'exited' } } }));
      const ended = await store.getSession('s1');
      assert.equal(ended?.endReason, 'exited');
      assert.equal((await store.renewSession('s1', '2040-01-01T00:00:00.000Z', now))?.expiresAt, '2030-01-01T00:00:00.000Z', 'an ended session is not renewed');
      assert.equal(await store.getSession('nope'), null);
      await store.close();
    });

    test('every lock ID that is cleared or replaced is recorded as released, for fencing', async () => {
      const store = await engine.open(tempDir());
      const probe = (id: string) => store.update('k', client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: id });
      await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'A') } } }));
      assert.equal(await probe('A'), false, 'the current holder is not released');
      await store.update('k', client, () => ({ result: null, changes: { lock: { clear: true } } }));
      assert.equal(await probe('A'), true);
      await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'B') } } }));
      await store.update('k', client, () => ({ result: null, changes: { lock: { set: lockRecord('k', 'C') } } })); // taken over
      assert.equal(await probe('B'), true);
      assert.equal(await probe('never-held'), false);
      assert.equal(await store.update('other', client, (snap) => ({ result: snap.probedLockIdReleased, changes: {} }), { probeLockId: 'A' }), false, 'per key');
      await store.close();
    });

    test('rejected writes are kept with their bodies, listed per key', async () => {
      const store = await engine.open(tempDir());
      const body = Buffer.from('{"serial":9,"lineage":"L","lost":"work"}');
      const chunks = await storeBody(store, body, 16);
      await store.update('k', client, () => ({
        result: null,
        changes: { rejectedWrite: { lockId: 'OLD', serial: 9, lineage: 'L', size: body.length, sha256: 'x', reason: 'fenced', clientAddr: 'a', chunks } },
      }));
      const page = await store.listRejected('k', { limit: 10 });
      assert.deepEqual(page.items.map((r) => [r.lockId, r.serial, r.reason]), [['OLD', 9, 'fenced']]);
      const found = await store.readRejected('k', page.items[0]!.id);
      assert.deepEqual(found?.content, { kind: 'chunks', chunks });
      assert.deepEqual(await bytesOf(store, found?.content), body);
      assert.equal(await store.readRejected('other', page.items[0]!.id), null);
      await store.close();
    });

    test('committed changes survive closing and reopening', async () => {
      const dir = tempDir();
      const s1 = await engine.open(dir);
      await put(s1, 'keep', 1);
      await s1.update('keep', client, () => ({ result: null, changes: { lock: { set: lockRecord('keep', 'K') } } }));
      await s1.close();
      await s1.close(); // idempotent
      const s2 = await engine.open(dir);
      assert.equal((await s2.readCurrent('keep'))?.meta.serial, 1);
      assert.equal((await s2.getLock('keep'))?.id, 'K');
      await s2.close();
    });

    test('rewriteBodies: fenced writes\' chunks and AWS secrets too (secrets only through transformSecret); other rows untouched', async () => {
      const store = await engine.open(tempDir());
      await put(store, 'rw/f', 1);
      const lost = Buffer.from('{"serial":2,"lineage":"L","lost":"work"}');
      const chunks = await storeBody(store, lost);
      await store.update('rw/f', client, () => ({
        result: null,
        changes: { rejectedWrite: { lockId: 'OLD', serial: 2, lineage: 'L', size: lost.length, sha256: 'x', reason: 'fenced', clientAddr: 'a', chunks } },
      }));
      const principal = { id: 'p1', name: 'ci', tokenHash: 'h', grants: ['*:read'], awsAccessKeyId: 'AKIA1', awsSecret: 'SECRET-1', createdAt: new Date().toISOString(), revokedAt: null };
      assert.equal(await store.createPrincipal(principal, { action: 'token.create', key: '*', lockId: null, outcome: 'ok', detail: {} }, client), true);
      await store.createPrincipal({ ...principal, id: 'p2', name: 'no-aws', awsAccessKeyId: null, awsSecret: null }, { action: 'token.create', key: '*', lockId: null, outcome: 'ok', detail: {} }, client);
      const tag = (c: StoredChunk) => (c.data[0] === 0x58 ? null : { ...c, data: Buffer.concat([Buffer.from('X'), c.data]) });
      assert.deepEqual(await store.rewriteBodies(() => null, undefined, tag), { scanned: 2, rewritten: 2 }, 'one version chunk, one fenced-write chunk; no secret without transformSecret');
      assert.equal((await store.getPrincipal('p1'))?.awsSecret, 'SECRET-1');
      assert.deepEqual(await store.rewriteBodies(() => null, (s) => (s.startsWith('Y') ? null : `Y${s}`), tag), { scanned: 3, rewritten: 1 }, 'chunks already done; one secret (a principal without one is not offered)');
      const rejected = (await store.readRejected('rw/f', 1))!;
      assert.equal((await store.getChunks(rejected.content.kind === 'chunks' ? rejected.content.chunks.map((c) => c.id) : []))[0]!.data.toString(), `X${lost.toString()}`);
      assert.equal(rejected.meta.size, lost.length, 'metadata (plaintext size) stays');
      assert.equal((await store.getPrincipalByAccessKey('AKIA1'))?.awsSecret, 'YSECRET-1');
      assert.equal((await store.getPrincipal('p2'))?.awsSecret, null);
      await store.close();
    });

    test('rewriteBodies: two at once on one database (two rekeys) and reads meanwhile never lose or splice a body', async () => {
      const dir = tempDir();
      const a = await engine.open(dir);
      const b = await engine.open(dir);
      let n = 0;
      const original = `{"serial":1,"lineage":"L","pad":"${Array.from({ length: 150_000 }, () => (n++ * 7919) % 100_003).join(',')}"}`; // ~900 KiB, all chunks distinct
      await put(a, 'rw/big', 1, original, 16 * 1024);
      // As rekey does: reseal under the newest key and re-file under an id of the newest key, unless already
      // done. The rounds alternate the newest key, so every round moves every chunk.
      const k1 = { id: 'k1', key: Buffer.alloc(32, 1) };
      const k2 = { id: 'k2', key: Buffer.alloc(32, 2) };
      const rings = [new Keyring([k2, k1]), new Keyring([k1, k2])];
      const plainOf = (ring: Keyring, c: StoredChunk) => ring.open(c.data);
      const rekey = (ring: Keyring) => (c: StoredChunk) => (ring.isCurrent(c.data) ? null : { ...c, id: `${ring.newest!.id}.${a.chunkId(plainOf(ring, c))}`, data: ring.seal(plainOf(ring, c)) });
      const chunkCount = ((await a.readCurrent('rw/big'))!.content as { chunks: unknown[] }).chunks.length;
      let stop = false;
      const seen = new Set<string>();
      // A reader that, as the body reader does, reloads the manifest when a chunk was re-filed under it.
      const readWhole = async (): Promise<string> => {
        for (let attempt = 0; attempt < 5; attempt++) {
          const content = (await b.readVersion('rw/big', { seq: 1 }))!.content;
          try {
            const chunks = await b.getChunks(content.kind === 'chunks' ? content.chunks.map((c) => c.id) : []);
            return Buffer.concat(chunks.map((c) => rings[0]!.open(c.data))).toString();
          } catch (err) {
            if (!(err instanceof StatelockError && err.code === 'CHUNK_MISSING')) throw err;
          }
        }
        throw new Error('five manifests in a row named a missing chunk');
      };
      const reader = (async () => {
        while (!stop) {
          try {
            const body = await readWhole();
            seen.add(body === original ? 'whole' : `spliced (${body.length} bytes)`);
          } catch (err) {
            seen.add(`failed: ${(err as Error).message}`);
          }
          await new Promise((r) => setImmediate(r));
        }
      })();
      try {
        for (let round = 0; round < 4; round++) {
          const ring = rings[round % 2]!;
          const results = await Promise.all([a.rewriteBodies(() => null, undefined, rekey(ring)), b.rewriteBodies(() => null, undefined, rekey(ring))]);
          assert.equal(results[0].rewritten + results[1].rewritten, chunkCount, 'each chunk rewritten once; the other rewrite saw its result');
          const content = (await a.readVersion('rw/big', { seq: 1 }))!.content;
          const stored = await a.getChunks(content.kind === 'chunks' ? content.chunks.map((c) => c.id) : []);
          assert.ok(stored.every((c) => keyIdOf(c.data) === ring.newest!.id && c.id.startsWith(`${ring.newest!.id}.`)));
          assert.equal(Buffer.concat(stored.map((c) => ring.open(c.data))).toString(), original);
          assert.equal((await a.chunkStats()).chunks, chunkCount, 'no chunk left behind under an old id');
        }
      } finally {
        stop = true;
        await reader;
        await a.close();
        await b.close();
      }
      assert.deepEqual([...seen], ['whole'], 'every read during the rewrites saw the one whole body');
    });

    test('countStates counts live states under a prefix; countAudit counts actions since a time; the trail reads newest first', async () => {
      const store = await engine.open(tempDir());
      try {
        for (const k of ['cnt/a', 'cnt/b', 'cnt/c/d', 'other/x']) await put(store, k, 1);
        await store.update('cnt/b', client, () => ({ result: null, changes: { deleteState: true } }));
        assert.equal(await store.countStates(), 3);
        assert.equal(await store.countStates('cnt/'), 2, 'a deleted state is not counted');
        assert.equal(await store.countStates('nothing/'), 0);
        const at = new Date().toISOString();
        const audit = (action: 'lock.conflict' | 'state.write.refused' | 'lock.force-unlock') => ({ action, key: 'cnt/a', lockId: null, outcome: 'refused' as const, detail: {} });
        await store.update('cnt/a', client, () => ({ result: null, changes: { audit: [audit('lock.conflict'), audit('state.write.refused'), audit('lock.force-unlock')] } }));
        assert.equal(await store.countAudit({ since: at, actions: ['lock.conflict', 'state.write.refused'] }), 2);
        assert.equal(await store.countAudit({ since: at, actions: ['lock.force-unlock'] }), 1);
        assert.equal(await store.countAudit({ since: new Date(Date.now() + 60_000).toISOString(), actions: ['lock.conflict'] }), 0, 'entries before `since` are not counted');
        assert.equal(await store.countAudit({ since: at, actions: [] }), 0);

        const all = await store.listAudit({ limit: 1000 });
        const newest = await store.listAudit({ newestFirst: true, limit: 2 });
        assert.deepEqual(newest.items.map((e) => e.id), all.items.map((e) => e.id).reverse().slice(0, 2));
        assert.ok(newest.next !== null);
        const older = await store.listAudit({ newestFirst: true, before: Number(newest.next), limit: 1000 });
        assert.deepEqual([...newest.items, ...older.items].map((e) => e.id), all.items.map((e) => e.id).reverse(), 'the pages cover the trail once, newest first');
        assert.equal(older.next, null);
        const filtered = await store.listAudit({ newestFirst: true, action: 'lock.conflict', limit: 10 });
        assert.deepEqual(filtered.items.map((e) => e.action), ['lock.conflict']);
      } finally {
        await store.close();
      }
    });
  });
}
