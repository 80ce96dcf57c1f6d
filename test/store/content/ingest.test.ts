import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BodyReader } from '../../../src/store/content/body-reader.js';
import { ScanFailedError } from '../../../src/state/json-stream-scan.js';
import { ingest, ingestBuffer, INGEST_BATCH_BYTES } from '../../../src/store/content/ingest.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { Store, StoredChunk } from '../../../src/store/store.js';
import { StateTemplate } from '../../../bench/lib/state-gen.js';
import { tempDir } from '../../support/server-process.js';

async function* pieces(body: Buffer, size: number, pulled?: { bytes: number }): AsyncGenerator<Buffer> {
  for (let at = 0; at < body.length; at += size) {
    if (pulled) pulled.bytes += Math.min(size, body.length - at);
    yield body.subarray(at, at + size);
  }
}

const readAll = (store: Store, chunks: Array<{ id: string; size: number }>, size: number) => new BodyReader(store, { kind: 'chunks', chunks }, size).buffer();

test('ingest: digests of the exact bytes, a manifest that reads back byte for byte, JSON compressed and random bytes kept raw', async () => {
  const store = new SqliteStore(tempDir());
  try {
    const body = StateTemplate.ofSize(3 * 1024 * 1024).body(1);
    const { digests, chunks } = await ingest(store, pieces(body, 64 * 1024));
    assert.deepEqual(digests, { md5: createHash('md5').update(body).digest('base64'), sha256: createHash('sha256').update(body).digest('hex'), size: body.length });
    assert.equal(chunks.reduce((n, c) => n + c.size, 0), body.length);
    assert.ok((await readAll(store, chunks, body.length)).equals(body));
    const stored = await store.getChunks(chunks.map((c) => c.id));
    assert.ok(stored.every((c) => c.codec === 'deflate'), 'state JSON is deflated');
    const storedBytes = stored.reduce((n, c) => n + c.data.length, 0);
    assert.ok(storedBytes < body.length * 0.5, `stored ${storedBytes} of ${body.length} bytes`);

    const noise = randomBytes(300 * 1024);
    const random = await ingestBuffer(store, noise);
    assert.ok((await store.getChunks(random.chunks.map((c) => c.id))).every((c) => c.codec === 'raw' && c.data.length === c.size), 'incompressible chunks are kept raw');
    assert.ok((await readAll(store, random.chunks, noise.length)).equals(noise));
  } finally {
    await store.close();
  }
});

test('ingest: the same body again stores nothing new; one changed resource stores a few chunks', async () => {
  const store = new SqliteStore(tempDir());
  try {
    const puts: number[] = [];
    const counting = Object.create(store) as Store;
    counting.putChunks = (c: StoredChunk[]) => (puts.push(c.length), store.putChunks(c));
    const body = StateTemplate.ofSize(1024 * 1024).body(1);
    const first = await ingestBuffer(counting, body);
    const before = await store.chunkStats();
    assert.equal(before.chunks, new Set(first.chunks.map((c) => c.id)).size);
    puts.length = 0;
    const again = await ingestBuffer(counting, body);
    assert.deepEqual(again.chunks, first.chunks);
    assert.deepEqual(puts, [], 'nothing compressed or put: every chunk was present');
    const edited = Buffer.from(body.toString().replace('"Environment": "prod"', '"Environment": "test"'));
    const third = await ingestBuffer(counting, edited);
    const after = await store.chunkStats();
    assert.ok(after.chunks - before.chunks >= 1 && after.chunks - before.chunks <= 2, `${after.chunks - before.chunks} new chunks of ${third.chunks.length}`);
  } finally {
    await store.close();
  }
});

test('ingest: backpressure — the source is not read further while a batch is being stored', async () => {
  const store = new SqliteStore(tempDir());
  try {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = Object.create(store) as Store;
    let putsStarted = 0;
    slow.putChunks = async (c: StoredChunk[]) => {
      putsStarted++;
      await gate;
      return store.putChunks(c);
    };
    const body = randomBytes(12 * 1024 * 1024); // incompressible, all new: every batch is put
    const pulled = { bytes: 0 };
    const running = ingest(slow, pieces(body, 64 * 1024, pulled));
    // Wait for the first batch to reach the store (a busy machine may take a few hundred ms), then give an unbounded
    // reader time to run ahead.
    for (const end = Date.now() + 10_000; putsStarted === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < end, 'no batch reached putChunks');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(putsStarted, 1, 'one batch is being stored');
    // One batch stored (blocked), one more filled while it waits, plus what the chunker and the source hold.
    assert.ok(pulled.bytes <= 2 * INGEST_BATCH_BYTES + 256 * 1024, `read ${pulled.bytes} bytes while the first batch was stuck`);
    assert.ok(pulled.bytes < body.length / 2);
    release();
    const { chunks } = await running;
    assert.equal(pulled.bytes, body.length);
    assert.ok((await readAll(store, chunks, body.length)).equals(body));
  } finally {
    await store.close();
  }
});

test('ingest: a body whose scan fails stops the reading, with the scan\'s report; a failing store fails the ingest', async () => {
  const store = new SqliteStore(tempDir());
  try {
    // One JSON object whose long string holds a control character at 1 MiB: the scan runs on the body worker.
    const bad = 1024 * 1024;
    const body = Buffer.alloc(8 * 1024 * 1024, 0x78);
    body.write('{"a":"', 0);
    body[bad] = 0x01;
    const pulled = { bytes: 0 };
    const failed = await ingest(store, pieces(body, 64 * 1024, pulled), { capture: ['a'] }).then(
      () => assert.fail('the ingest accepted a body that is not JSON'),
      (err: unknown) => err,
    );
    assert.ok(failed instanceof ScanFailedError, String(failed));
    assert.deepEqual(failed.report.error, { utf8: false, what: 'control character in a string', offset: bad, atEnd: false });
    // Noticed within a few blocks of the bad byte (the worker answers blocks while the next ones are read).
    assert.ok(pulled.bytes < bad + 2 * 1024 * 1024, `read ${pulled.bytes} bytes`);
    // The same body as one piece on the event loop: a body under a block is scanned there.
    const small = body.subarray(0, 100_000);
    small[50_000] = 0x01;
    await assert.rejects(ingestBuffer(store, small, {}), (err: unknown) => err instanceof ScanFailedError && err.report.error?.offset === 50_000);
    const broken = Object.create(store) as Store;
    broken.putChunks = async () => {
      throw new Error('disk on fire');
    };
    await assert.rejects(ingestBuffer(broken, randomBytes(5 * 1024 * 1024)), /disk on fire/);
  } finally {
    await store.close();
  }
});

test('body reader: any byte range, across chunk boundaries, equals the slice; legacy whole bodies too', async () => {
  const store = new SqliteStore(tempDir());
  try {
    const body = StateTemplate.ofSize(2 * 1024 * 1024).body(3);
    const { chunks } = await ingestBuffer(store, body);
    const reader = new BodyReader(store, { kind: 'chunks', chunks }, body.length);
    const whole = new BodyReader(store, { kind: 'whole', body }, body.length);
    const edges: number[] = [];
    chunks.reduce((at, c) => (edges.push(at), at + c.size), 0);
    const ranges: Array<[number, number]> = [[0, 0], [0, body.length - 1], [body.length - 1, body.length - 1], [edges[3]! - 1, edges[3]!], [edges[2]!, edges[5]! - 1], [edges[1]! + 17, edges[40]! + 3]];
    for (let i = 0; i < 40; i++) {
      const a = Math.floor(Math.random() * body.length);
      ranges.push([a, Math.min(body.length - 1, a + Math.floor(Math.random() * 300_000))]);
    }
    for (const [start, end] of ranges) {
      for (const r of [reader, whole]) {
        const parts: Buffer[] = [];
        for await (const p of r.stream({ start, end })) parts.push(p);
        assert.ok(Buffer.concat(parts).equals(body.subarray(start, end + 1)), `bytes ${start}-${end}`);
      }
    }
    assert.ok((await reader.buffer()).equals(body));
  } finally {
    await store.close();
  }
});

test('body reader: a range reads only the chunks it covers', async () => {
  const store = new SqliteStore(tempDir());
  try {
    const body = StateTemplate.ofSize(1024 * 1024).body(1);
    const { chunks } = await ingestBuffer(store, body);
    const asked: string[] = [];
    const spy = Object.create(store) as Store;
    spy.getChunks = (ids: readonly string[]) => (asked.push(...ids), store.getChunks(ids));
    const start = chunks.slice(0, 10).reduce((n, c) => n + c.size, 0) + 5;
    const parts: Buffer[] = [];
    for await (const p of new BodyReader(spy, { kind: 'chunks', chunks }, body.length).stream({ start, end: start + 100 })) parts.push(p);
    assert.ok(Buffer.concat(parts).equals(body.subarray(start, start + 101)));
    assert.deepEqual(asked, [chunks[10]!.id]);
  } finally {
    await store.close();
  }
});
