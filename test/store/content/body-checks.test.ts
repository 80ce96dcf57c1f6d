import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { BodyChecks, DIGEST_BLOCK_BYTES } from '../../../src/store/content/body-checks.js';
import { BodyWorker, type DigestReply } from '../../../src/store/content/body-worker.js';
import type { ScanOptions } from '../../../src/state/json-stream-scan.js';

/**
 * BodyChecks (src/store/content/body-checks.ts): MD5 and SHA-256 of a body given in pieces, on the body
 * worker's real thread for bodies of a block or more, on the event loop otherwise. Its JSON scan:
 * body-checks-scan.test.ts.
 */

/** A body worker that counts its digest messages and how many were out at once. */
class CountingWorker extends BodyWorker {
  messages = 0;
  outstanding = 0;
  maxOutstanding = 0;
  /** The scan options each message carried, and the scan reports the answers carried. */
  scans: Array<ScanOptions | null> = [];
  reports: Array<DigestReply['scan']> = [];
  override digest(body: number, buffer: ArrayBuffer, length: number, first: boolean, end: boolean, scan: ScanOptions | null = null): Promise<DigestReply> {
    this.messages++;
    this.scans.push(scan);
    this.maxOutstanding = Math.max(this.maxOutstanding, ++this.outstanding);
    return super
      .digest(body, buffer, length, first, end, scan)
      .then((reply) => {
        this.reports.push(reply.scan);
        return reply;
      })
      .finally(() => this.outstanding--);
  }
}

/** One whose thread never starts: the event-loop path. */
class NoWorker extends BodyWorker {
  override get available(): boolean {
    return false;
  }
  override digest(): Promise<DigestReply> {
    throw new Error('digest() called although the worker is not available');
  }
}

const worker = new CountingWorker();
after(() => worker.close());

const expected = (body: Buffer) => ({ md5: createHash('md5').update(body).digest('base64'), sha256: createHash('sha256').update(body).digest('hex'), scan: null });

async function digestOf(body: Buffer, pieceSize: number, w: BodyWorker) {
  const d = new BodyChecks(null, w);
  for (let at = 0; at < body.length; at += pieceSize) await d.update(body.subarray(at, at + pieceSize));
  return d.values();
}

const B = DIGEST_BLOCK_BYTES;
const big = randomBytes(5 * B + 12_345);
const sizes = [0, 1, B - 1, B, B + 1, 3 * B + 17, big.length];
const pieceSizes = [1, 7_001, 64 * 1024, Number.MAX_SAFE_INTEGER /* the whole body as one piece */];

test('the digests are those of the exact bytes, at every size around a block and in pieces of every size', async () => {
  for (const size of sizes) {
    const body = big.subarray(0, size);
    for (const pieceSize of pieceSizes) {
      if (pieceSize === 1 && size > B + 1) continue; // a byte at a time is slow; the small sizes cover it
      for (const [path, w] of [['worker', worker], ['event loop', new NoWorker()]] as const) {
        assert.deepEqual(await digestOf(Buffer.from(body), pieceSize, w), expected(body), `${size} B in pieces of ${pieceSize}, ${path}`);
      }
    }
  }
});

test('a body of a block or more goes to the worker in blocks, a smaller one never does', async () => {
  worker.messages = 0;
  await digestOf(big.subarray(0, B - 1), 64 * 1024, worker);
  assert.equal(worker.messages, 0, 'one byte short of a block: on the event loop');
  await digestOf(big, 64 * 1024, worker);
  assert.equal(worker.messages, Math.ceil(big.length / B), 'a message per block, the last one closing the body');
});

test('at most four blocks of a body are on the worker at once, even when the body comes as one piece', async () => {
  worker.maxOutstanding = 0;
  assert.deepEqual(await digestOf(big, big.length, worker), expected(big));
  assert.ok(worker.maxOutstanding >= 2 && worker.maxOutstanding <= 4, `${worker.maxOutstanding} blocks out at once`);
});

test('bodies digested at the same time do not mix, and an abandoned one does not disturb the others', async () => {
  const a = randomBytes(3 * B + 5);
  const b = randomBytes(2 * B + 9);
  const da = new BodyChecks(null, worker);
  const db = new BodyChecks(null, worker);
  const dropped = new BodyChecks(null, worker);
  for (let at = 0; at < a.length; at += 50_000) {
    await da.update(a.subarray(at, at + 50_000));
    await db.update(b.subarray(at, at + 50_000));
    if (at <= 2 * B) await dropped.update(randomBytes(50_000));
    else dropped.abandon(); // twice or more: the later calls do nothing
  }
  assert.deepEqual(await da.values(), expected(a));
  assert.deepEqual(await db.values(), expected(b));
});

test('a worker that dies under a body fails that body, whether or not its blocks were answered; the next body gets a new thread', async () => {
  const w = new CountingWorker();
  try {
    // Blocks still out when the thread ends: their answers fail.
    const early = new BodyChecks(null, w);
    await early.update(big.subarray(0, 2 * B));
    assert.ok(w.outstanding > 0);
    await w.close();
    await assert.rejects(early.values(), /closed/);
    // Blocks all answered, then the thread ends: the new thread never saw the body's beginning.
    const late = new BodyChecks(null, w);
    await late.update(big.subarray(0, 2 * B));
    while (w.outstanding > 0) await new Promise((r) => setTimeout(r, 5));
    await w.close();
    await assert.rejects(late.values(), /restarted/);
    assert.deepEqual(await digestOf(big, 64 * 1024, w), expected(big));
  } finally {
    await w.close();
  }
});

test('a body of a block or more is scanned on the worker: the options go with its first block, the report comes back with its last', async () => {
  const w = new CountingWorker();
  try {
    const state = Buffer.concat([Buffer.from('{"serial":4,"lineage":"L","pad":"'), Buffer.alloc(3 * B, 0x61), Buffer.from('"}')]);
    const checks = new BodyChecks({ capture: ['serial'] }, w);
    for (let at = 0; at < state.length; at += 64 * 1024) await checks.update(state.subarray(at, at + 64 * 1024));
    const { scan } = await checks.values();
    assert.deepEqual(w.scans, [{ capture: ['serial'] }, null, null, null], 'options with the first block only');
    assert.deepEqual(w.reports.slice(0, -1), [null, null, null], 'no report before the last block');
    assert.deepEqual(w.reports.at(-1), scan);
    assert.equal(scan?.bytesPushed, state.length);
    assert.deepEqual(scan?.members, [['serial', { raw: new Uint8Array(Buffer.from('4')), tooLarge: false, firstByte: 0x34 }]]);
    assert.equal(scan?.error, null);
    // A smaller body is scanned here: no message at all.
    const small = new BodyChecks({ capture: ['serial'] }, w);
    await small.update(Buffer.from('{"serial":5}'));
    assert.equal((await small.values()).scan?.members.length, 1);
    assert.equal(w.messages, 4);
  } finally {
    await w.close();
  }
});
