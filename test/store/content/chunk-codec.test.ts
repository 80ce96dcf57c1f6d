import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decodeChunk, encodeChunk } from '../../../src/store/content/chunk-codec.js';
import { Chunker } from '../../../src/store/content/chunker.js';
import type { StoredChunk } from '../../../src/store/store.js';
import { StateTemplate } from '../../../bench/lib/state-gen.js';

/**
 * decodeChunk inflates with one reused zlib context straight into a buffer of the recorded size
 * (chunk-codec.ts): every chunk must come out exactly as it went in, whatever came before it, and a chunk
 * whose bytes or recorded size are wrong must be refused as damaged, never returned short or long.
 */

const chunksOf = (body: Buffer) => {
  const c = new Chunker();
  return [...c.push(body), ...c.end()];
};

test('every chunk of a realistic state decodes to exactly its plaintext, chunk after chunk with the same context', async () => {
  const plain = chunksOf(StateTemplate.ofSize(512 * 1024).body(3));
  assert.ok(plain.length > 30);
  const stored: StoredChunk[] = [];
  for (const [n, p] of plain.entries()) stored.push({ id: `c${n}`, size: p.length, ...(await encodeChunk(p)) });
  assert.ok(stored.every((s) => s.codec === 'deflate'), 'state JSON compresses');
  for (let round = 0; round < 2; round++) {
    for (const [n, s] of stored.entries()) assert.ok(decodeChunk(s).equals(plain[n]!), `chunk ${n}, round ${round}`);
  }
});

test('a decoded chunk is a buffer of its own: decoding the next one does not change it', () => {
  const a = Buffer.from('a'.repeat(5000));
  const b = Buffer.from('b'.repeat(7000));
  const first = decodeChunk({ id: 'a', size: a.length, codec: 'deflate', data: deflateRawSync(a) });
  decodeChunk({ id: 'b', size: b.length, codec: 'deflate', data: deflateRawSync(b) });
  assert.ok(first.equals(a));
});

test('raw chunks come back as stored; incompressible bytes are kept raw by encodeChunk', async () => {
  const noise = randomBytes(8192);
  const encoded = await encodeChunk(noise);
  assert.equal(encoded.codec, 'raw');
  assert.ok(decodeChunk({ id: 'r', size: noise.length, ...encoded }).equals(noise));
  assert.throws(() => decodeChunk({ id: 'r', size: noise.length + 1, codec: 'raw', data: noise }), /damaged: chunk r decodes to 8192 bytes, not 8193/);
});

test('damaged chunks are refused: a wrong recorded size either way, truncated or trailing bytes, garbage; the next good chunk still decodes', () => {
  const text = Buffer.from(JSON.stringify({ resources: Array.from({ length: 200 }, (_, i) => ({ name: `r${i}`, id: i })) }));
  const data = deflateRawSync(text);
  const good: StoredChunk = { id: 'g', size: text.length, codec: 'deflate', data };
  const damaged: Array<[string, StoredChunk, RegExp]> = [
    ['recorded size one too large', { ...good, size: text.length + 1 }, new RegExp(`decodes to ${text.length} bytes, not ${text.length + 1}`)],
    ['recorded size one too small', { ...good, size: text.length - 1 }, new RegExp(`decodes to more than ${text.length - 1} bytes`)],
    ['truncated', { ...good, data: data.subarray(0, data.length >> 1) }, /damaged: chunk g/],
    ['trailing bytes', { ...good, data: Buffer.concat([data, Buffer.from('xyz')]) }, /damaged: chunk g/],
    ['garbage', { ...good, data: Buffer.from('this is not a deflate stream at all') }, /damaged: chunk g/],
  ];
  for (const [what, chunk, message] of damaged) {
    assert.throws(() => decodeChunk(chunk), message, what);
    assert.ok(decodeChunk(good).equals(text), `a good chunk after "${what}"`);
  }
  assert.ok(inflateRawSync(data).equals(text));
});

test('an unknown codec is refused', () => {
  assert.throws(() => decodeChunk({ id: 'u', size: 1, codec: 'zstd' as never, data: Buffer.from('x') }), /unknown codec "zstd"/);
});
