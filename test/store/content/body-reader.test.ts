import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { BodyWorker } from '../../../src/store/content/body-worker.js';
import { BodyReader } from '../../../src/store/content/body-reader.js';
import { ingest } from '../../../src/store/content/ingest.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { ChunkRef, Store, StoredChunk } from '../../../src/store/store.js';
import { StateTemplate } from '../../../bench/lib/state-gen.js';
import { tempDir } from '../../support/server-process.js';

/**
 * BodyReader decodes each batch of chunks into one of a few reused buffers — inflated on the worker thread
 * for reads of several batches, on the event loop otherwise — and fetches at most two batches ahead of the
 * one its caller holds (body-reader.ts). Every byte must come out as it went in on both paths, whole and in
 * ranges across batch boundaries; a damaged chunk ends the read with an error naming it, after only the
 * bytes before it.
 */

const dir = tempDir();
const store = new SqliteStore(dir);
const worker = new BodyWorker();
/** A body worker whose thread never starts: the event-loop path. */
class NoWorker extends BodyWorker {
  override get available(): boolean {
    return false;
  }
}
const noWorker = new NoWorker();
after(async () => {
  await worker.close();
  await store.close();
});

async function* pieces(body: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < body.length; at += 64 * 1024) yield body.subarray(at, at + 64 * 1024);
}

/**
 * Every byte the reader yields, copied a turn of the event loop after it came (a yielded buffer must stay
 * valid until the next one is asked for, while the reader decodes ahead into its other buffers).
 */
async function collect(reader: BodyReader, range?: { start: number; end: number }): Promise<{ bytes: Buffer; error: Error | null }> {
  const parts: Buffer[] = [];
  try {
    for await (const piece of reader.stream(range)) {
      await new Promise((r) => setImmediate(r));
      parts.push(Buffer.from(piece));
    }
    return { bytes: Buffer.concat(parts), error: null };
  } catch (err) {
    return { bytes: Buffer.concat(parts), error: err as Error };
  }
}

// A realistic 6 MiB state (six batches and more), and a body mixing raw (random) and deflated chunks.
const state = StateTemplate.ofSize(6 * 1024 * 1024).body(1);
const mixed = Buffer.concat([state.subarray(0, 1_500_000), randomBytes(700_000), state.subarray(1_500_000, 3_000_000)]);
const stored = { state: await ingest(store, pieces(state)), mixed: await ingest(store, pieces(mixed)) };
const readerOf = (which: 'state' | 'mixed', inflater: BodyWorker, s: Store = store) => new BodyReader(s, { kind: 'chunks', chunks: stored[which].chunks }, stored[which].digests.size, undefined, inflater);

for (const [path, inflater] of [['worker thread', worker], ['event loop', noWorker]] as const) {
  test(`${path}: whole bodies and ranges across batch boundaries read back byte for byte`, async () => {
    for (const [which, body] of [['state', state], ['mixed', mixed]] as const) {
      const whole = await collect(readerOf(which, inflater));
      assert.equal(whole.error, null);
      assert.ok(whole.bytes.equals(body), `${which}: whole`);
      for (const [start, end] of [[0, 0], [1_048_000, 1_049_000], [100, body.length - 100], [body.length - 1, body.length - 1], [2_000_000, 2_000_000 + 3 * 1024 * 1024]]) {
        const e = Math.min(end!, body.length - 1);
        const got = await collect(readerOf(which, inflater), { start: start!, end: e });
        assert.ok(got.bytes.equals(body.subarray(start, e + 1)), `${which}: bytes ${start}-${e}`);
      }
      assert.ok((await readerOf(which, inflater).buffer()).equals(body), `${which}: buffer()`);
    }
  });
}

test('the worker thread is used for a read of several batches, not for one of a single batch', async () => {
  const counting = new BodyWorker();
  let runs = 0;
  const inflate = counting.inflate.bind(counting);
  counting.inflate = (b, j) => (runs++, inflate(b, j));
  try {
    assert.ok((await collect(readerOf('state', counting))).bytes.equals(state));
    assert.ok(runs >= 6, `${runs} batches on the worker`);
    runs = 0;
    const small = await ingest(store, pieces(state.subarray(0, 300_000)));
    const one = new BodyReader(store, { kind: 'chunks', chunks: small.chunks }, small.digests.size, undefined, counting);
    assert.ok((await collect(one)).bytes.equals(state.subarray(0, 300_000)));
    assert.equal(runs, 0);
  } finally {
    await counting.close();
  }
});

test('a slow caller: the reader fetches at most two batches ahead of the one it holds', async () => {
  const fetched: number[] = [];
  const counting = Object.create(store) as Store;
  counting.getChunks = (ids: readonly string[]) => (fetched.push(ids.length), store.getChunks(ids));
  const batches = readerOf('state', worker, counting).batches();
  let held = 0;
  for (let i = 0; i < 3; i++) {
    assert.equal((await batches.next()).done, false);
    held++;
    await new Promise((r) => setTimeout(r, 50)); // the caller is slow: nothing more may be fetched meanwhile
    assert.ok(fetched.length <= held + 2, `${fetched.length} batches fetched while the caller held ${held}`);
  }
  await batches.return(undefined);
  assert.ok(fetched.length < 8, 'a body of many batches was not fetched whole');
});

/** A store on a copy of the database in which one chunk's stored bytes are damaged. */
function reopen(copy: string, ref: ChunkRef, damage: (data: Buffer) => Buffer): SqliteStore {
  const db = new Database(join(copy, 'statelock.db'));
  const row = db.prepare('SELECT data FROM chunks WHERE id = ?').get(ref.id) as { data: Buffer };
  db.prepare('UPDATE chunks SET data = ? WHERE id = ?').run(damage(row.data), ref.id);
  db.close();
  return new SqliteStore(copy);
}

test('a damaged chunk in the middle of a large read: an error naming it, after exactly the bytes before it (worker and event loop)', async () => {
  const chunks = stored.state.chunks;
  const n = Math.floor(chunks.length / 2);
  const victim = chunks[n]!;
  const before = chunks.slice(0, n).reduce((s, c) => s + c.size, 0);
  const damages: Array<[string, (d: Buffer) => Buffer]> = [
    ['a flipped byte', (d) => Buffer.concat([d.subarray(0, 10), Buffer.from([d[10]! ^ 0xff]), d.subarray(11)])],
    ['truncated', (d) => d.subarray(0, d.length >> 1)],
    ['trailing bytes', (d) => Buffer.concat([d, Buffer.from('xyz')])],
  ];
  for (const [what, damage] of damages) {
    const copy = tempDir();
    const src = new Database(join(dir, 'statelock.db'));
    await src.backup(join(copy, 'statelock.db'));
    src.close();
    const bad = reopen(copy, victim, damage);
    try {
      for (const [path, inflater] of [['worker', worker], ['event loop', noWorker]] as const) {
        const got = await collect(readerOf('state', inflater, bad));
        assert.ok(got.error, `${what}, ${path}: the read fails`);
        assert.match(got.error.message, new RegExp(`stored content is damaged: chunk ${victim.id}`), `${what}, ${path}`);
        assert.ok(got.bytes.length <= before, `${what}, ${path}: nothing at or after the damaged chunk was yielded`);
        assert.ok(got.bytes.equals(state.subarray(0, got.bytes.length)), `${what}, ${path}: what was yielded is the body's prefix`);
      }
    } finally {
      await bad.close();
    }
  }
});

test('a chunk with an unknown codec fails the read on both paths', async () => {
  const broken = Object.create(store) as Store;
  broken.getChunks = async (ids: readonly string[]) => (await store.getChunks(ids)).map((c, i): StoredChunk => (i === 3 ? { ...c, codec: 'zstd' as never } : c));
  for (const inflater of [worker, noWorker]) {
    const got = await collect(readerOf('state', inflater, broken));
    assert.match(got.error?.message ?? '', /unknown codec "zstd"/);
  }
});

for (const [path, inflater] of [['worker thread', worker], ['event loop', noWorker]] as const) {
  test(`${path}: a batch held by its caller stays intact while other reads start and finish (their buffers are reused)`, async () => {
    const held = readerOf('state', inflater).batches()[Symbol.asyncIterator]();
    const first = await held.next();
    assert.equal(first.done, false);
    const copy = Buffer.concat(first.value as Buffer[]);
    // Other reads run to the end meanwhile: they give their batch buffers back for the next reads, which take them.
    for (let i = 0; i < 3; i++) {
      assert.ok((await collect(readerOf('mixed', inflater))).bytes.equals(mixed), `read ${i} of the other body`);
      assert.ok(Buffer.concat(first.value as Buffer[]).equals(copy), `the held batch after read ${i}`);
    }
    const rest: Buffer[] = [copy];
    for (let next = await held.next(); !next.done; next = await held.next()) rest.push(Buffer.from(Buffer.concat(next.value)));
    assert.ok(Buffer.concat(rest).equals(state));
  });
}
