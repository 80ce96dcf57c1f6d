import { promisify } from 'node:util';
import { constants, deflateRaw, inflateRawSync } from 'node:zlib';
import type { ChunkCodec, StoredChunk } from '../store.js';

const deflateRawAsync = promisify(deflateRaw);

/**
 * zlib level for chunks. Chosen with the bench (docs/storage.md): most of the history's saving comes from
 * sharing chunks, and a chunk is compressed once, when it is first stored.
 */
export const DEFLATE_LEVEL = 6;

/**
 * Compresses one chunk on the libuv thread pool (never on the event loop); keeps it raw when deflate does
 * not make it smaller (OpenTofu's encrypted states, base64 blobs).
 */
export async function encodeChunk(plain: Buffer): Promise<{ codec: ChunkCodec; data: Buffer }> {
  const packed = await deflateRawAsync(plain, { level: DEFLATE_LEVEL, memLevel: 8, strategy: constants.Z_DEFAULT_STRATEGY });
  return packed.length < plain.length ? { codec: 'deflate', data: packed } : { codec: 'raw', data: plain };
}

/**
 * The plaintext of a stored (already opened) chunk, checked against its recorded size. Inflated on the
 * calling thread: inflating a chunk of at most 64 KiB takes tens of microseconds, and the thread pool's
 * per-call cost (a zlib context per call, two thread hops) measured more than twice the work itself; the
 * reader decodes one batch (about 1 MiB) at a time, so the event loop is never held for more than a few ms.
 */
export function decodeChunk(chunk: StoredChunk): Buffer {
  const plain = chunk.codec === 'raw' ? chunk.data : chunk.codec === 'deflate' ? inflateRawSync(chunk.data) : unknownCodec(chunk);
  if (plain.length !== chunk.size) throw new Error(`stored content is damaged: chunk ${chunk.id} decodes to ${plain.length} bytes, not ${chunk.size}`);
  return plain;
}

function unknownCodec(chunk: StoredChunk): never {
  throw new Error(`chunk ${chunk.id} has unknown codec "${String(chunk.codec)}"`);
}
