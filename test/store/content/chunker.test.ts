import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { Chunker, DEFAULT_CHUNK_SIZES, GEAR, type ChunkSizes } from '../../../src/store/content/chunker.js';
import { StateTemplate, versionSeries } from '../../../bench/lib/state-gen.js';
import { rng } from '../../support/rng.js';

const cut = (body: Buffer, pieces: number[] = [body.length]): Buffer[] => {
  const c = new Chunker();
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const n = pieces[i % pieces.length]!;
    out.push(...c.push(body.subarray(at, at + n)));
    at += n;
  }
  return [...out, ...c.end()];
};
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('chunks put back together are the body; boundaries do not depend on how the bytes arrive', () => {
  const body = StateTemplate.ofSize(600 * 1024).body(7);
  const whole = cut(body);
  assert.ok(Buffer.concat(whole).equals(body));
  for (const pieces of [[1], [7, 1300, 65536, 3], [16384], [100_000]]) {
    const parts = pieces[0] === 1 ? cut(body.subarray(0, 40_000), pieces) : cut(body, pieces);
    const expected = pieces[0] === 1 ? cut(body.subarray(0, 40_000)) : whole;
    assert.deepEqual(parts.map(sha), expected.map(sha), `pieces of ${pieces.join('/')} bytes`);
  }
  assert.deepEqual(cut(Buffer.alloc(0)), []);
});

test('every chunk but the last is between min and max; the average is near the target', () => {
  const r = rng(99);
  const random = Buffer.from(Array.from({ length: 2_000_000 }, () => Math.floor(r() * 256)));
  for (const body of [StateTemplate.ofSize(2 * 1024 * 1024).body(1), random, Buffer.alloc(300_000, 0x20)]) {
    const chunks = cut(body);
    for (const c of chunks.slice(0, -1)) assert.ok(c.length >= DEFAULT_CHUNK_SIZES.min && c.length <= DEFAULT_CHUNK_SIZES.max, `chunk of ${c.length} bytes`);
    if (body !== random) continue;
    const avg = body.length / chunks.length;
    assert.ok(avg > DEFAULT_CHUNK_SIZES.avg * 0.6 && avg < DEFAULT_CHUNK_SIZES.avg * 1.6, `average ${avg.toFixed(0)} bytes`);
  }
  assert.equal(cut(Buffer.alloc(300_000, 0x20))[0]!.length, DEFAULT_CHUNK_SIZES.max, 'content without cut points is cut at max');
});

test('content-defined: a version that changes 3 resources shares all but a few chunks with the one before', () => {
  const [v1, v2] = versionSeries(200 * 1024, 2, 3);
  const a = new Set(cut(v1!).map(sha));
  const b = cut(v2!).map(sha);
  const fresh = b.filter((id) => !a.has(id));
  assert.ok(b.length >= 20, `${b.length} chunks`);
  assert.ok(fresh.length <= 8, `${fresh.length} of ${b.length} chunks are new`);
  // An insertion shifts every later byte; the chunks after it are still found again.
  const inserted = Buffer.concat([v1!.subarray(0, 50_000), Buffer.from('"inserted": true,\n'), v1!.subarray(50_000)]);
  const again = cut(inserted).map(sha);
  assert.ok(again.filter((id) => !a.has(id)).length <= 3, 'only the chunks around the insertion are new');
});

test('the cut points are fixed for ever (changing the gear table or masks would stop new versions sharing chunks with old ones)', () => {
  const r = rng(20261126);
  const body = Buffer.from(Array.from({ length: 96 * 1024 }, () => 32 + Math.floor(r() * 95)));
  assert.deepEqual(cut(body).map((c) => c.length), PINNED);
});
const PINNED = [12894, 9827, 8168, 8316, 9559, 9388, 8854, 13113, 7115, 7713, 3357];

/** The chunker's rule written plainly, a byte at a time: the chunk lengths of a whole body. */
function referenceCuts(body: Uint8Array, sizes: ChunkSizes): number[] {
  const bits = Math.round(Math.log2(sizes.avg));
  const top = (b: number) => (0xffffffff << (32 - b)) | 0;
  const hard = top(Math.min(31, bits + 2));
  const easy = top(Math.max(1, bits - 2));
  const lengths: number[] = [];
  let start = 0;
  let hash = 0;
  for (let i = 0; i < body.length; i++) {
    const length = i - start + 1; // with byte i
    if (length <= sizes.min) continue; // the first `min` bytes are not even hashed
    hash = ((hash << 1) + GEAR[body[i]!]!) | 0;
    if ((hash & (length <= sizes.avg ? hard : easy)) === 0 || length >= sizes.max) {
      lengths.push(length);
      start = i + 1;
      hash = 0;
    }
  }
  if (start < body.length) lengths.push(body.length - start);
  return lengths;
}

test('the cut points are those of the plain byte-at-a-time rule, whatever the sizes and however the bytes arrive', () => {
  const r = rng(4242);
  const state = StateTemplate.ofSize(600 * 1024).body(5);
  const text = Buffer.from(Array.from({ length: 300 * 1024 }, () => 32 + Math.floor(r() * 95)));
  const zeros = Buffer.alloc(200 * 1024); // no cut but the hard one at max
  const sizesList: ChunkSizes[] = [DEFAULT_CHUNK_SIZES, { min: 1, avg: 64, max: 1000 }, { min: 7, avg: 7, max: 9 }, { min: 100, avg: 3000, max: 3001 }];
  for (const body of [state, text, zeros]) {
    for (const sizes of sizesList) {
      const expected = referenceCuts(body, sizes);
      for (const piece of [body.length, 65_536, 4_099, 13]) {
        const c = new Chunker(sizes);
        const got: number[] = [];
        for (let at = 0; at < body.length; at += piece) got.push(...c.push(body.subarray(at, at + piece)).map((x) => x.length));
        got.push(...c.end().map((x) => x.length));
        assert.deepEqual(got, expected, `${body.length} B, sizes ${JSON.stringify(sizes)}, pieces of ${piece}`);
      }
    }
  }
});
