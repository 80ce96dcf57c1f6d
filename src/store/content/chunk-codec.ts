import { promisify } from 'node:util';
import { constants, createInflateRaw, deflateRaw, inflateRawSync } from 'node:zlib';
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
 * The plaintext of a stored (already opened) chunk, checked against its recorded size, in a buffer of its
 * own. Inflated on the calling thread: inflating a chunk of at most 64 KiB takes tens of microseconds, and
 * the thread pool's per-call cost (a zlib context per call, two thread hops) measured more than twice the
 * work itself. Streaming readers inflate whole batches into reused buffers instead (decodeChunkInto, and
 * the body worker's thread, body-worker-thread.ts).
 */
export function decodeChunk(chunk: StoredChunk): Buffer {
  if (chunk.codec === 'raw') return checked(chunk, chunk.data, chunk.data.length);
  if (chunk.codec !== 'deflate') return unknownCodec(chunk);
  const out = Buffer.allocUnsafe(chunk.size);
  decodeChunkInto(chunk, out, 0);
  return out;
}

/**
 * Decodes a stored (already opened) chunk into `out` at `at` (where `chunk.size` bytes must fit), checked
 * against its recorded size: a chunk that decodes to anything else throws as damaged, and the bytes of
 * `out` it covered are then meaningless.
 */
export function decodeChunkInto(chunk: StoredChunk, out: Buffer, at: number): void {
  if (chunk.codec === 'raw') {
    checked(chunk, chunk.data, chunk.data.length);
    chunk.data.copy(out, at);
    return;
  }
  if (chunk.codec !== 'deflate') unknownCodec(chunk);
  const failure = inflateInto(chunk.data, 0, chunk.data.length, out, at, chunk.size);
  if (failure !== null) throw damaged(chunk.id, failure);
}

/**
 * {@link InflateInto} with the reused context where it exists, else `inflateRawSync` and a copy; a stream that
 * does not inflate at all is a failure like the others (here and on the body worker).
 */
export function inflateInto(input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, size: number): string | null {
  try {
    const fast = size > 0 ? reusedInflate() : null;
    if (fast) return fast(input, inOff, inLen, out, outOff, size);
    const plain = inflateRawSync(input.subarray(inOff, inOff + inLen));
    if (plain.length !== size) return `decodes to ${plain.length} bytes, not ${size}`;
    out.set(plain, outOff);
    return null;
  } catch (err) {
    return `does not inflate (${(err as Error).message})`;
  }
}

/** The error of a chunk whose stored bytes do not decode to its recorded size. */
export function damaged(id: string, why: string): Error {
  return new Error(`stored content is damaged: chunk ${id} ${why}`);
}

function checked(chunk: StoredChunk, plain: Buffer, decodedBytes: number | string): Buffer {
  if (decodedBytes !== chunk.size) throw damaged(chunk.id, `decodes to ${decodedBytes} bytes, not ${chunk.size}`);
  return plain;
}

function unknownCodec(chunk: StoredChunk): never {
  throw new Error(`chunk ${chunk.id} has unknown codec "${String(chunk.codec)}"`);
}

/** The parts of Node's zlib binding handle used below (not a public API: feature-checked, with a fallback). */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  reset(): void;
  onerror: (message: string, errno: number) => void;
}

/**
 * Inflates one raw-deflate stream, `input[inOff, inOff + inLen)`, into exactly `out[outOff, outOff + size)`:
 * null when it decoded to exactly `size` bytes with all of its input consumed, otherwise why not (the
 * words after "chunk <id>" in the damaged-content error).
 */
export type InflateInto = (input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, size: number) => string | null;

let inflater: InflateInto | null | undefined;

/**
 * One raw-inflate context, reset and reused for every chunk, inflating straight into the caller's buffer.
 * `inflateRawSync` builds and tears down a zlib context (and its JS stream object) per call; for 8 KiB
 * chunks that was about half the cost of a read and most of its garbage (measured in bench/README.md's
 * profile of GetObject). Relies on the binding handle behind Node's zlib streams (`_handle.writeSync`,
 * `reset`, the `_writeState` pair of what input and output space is left): if a Node release changes it,
 * reusedInflate() is null and callers use inflateRawSync. Synchronous, so one context serves every caller
 * on its thread (the body worker's thread has its own).
 */
export function reusedInflate(): InflateInto | null {
  if (inflater !== undefined) return inflater;
  const stream = createInflateRaw() as unknown as { _handle?: ZlibHandle; _writeState?: Uint32Array };
  const handle = stream._handle;
  const left = stream._writeState;
  if (!handle || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || !(left instanceof Uint32Array) || left.length < 2) return (inflater = null);
  let failure: string | null = null;
  // The stream would destroy itself (and emit 'error' with nobody listening); the failure is ours to report.
  handle.onerror = (message) => {
    failure = message;
  };
  inflater = (input, inOff, inLen, out, outOff, size) => {
    failure = null;
    handle.reset();
    handle.writeSync(constants.Z_FINISH, input, inOff, inLen, out, outOff, size);
    if (failure !== null) {
      inflater = undefined; // a fresh context next time
      return `does not inflate (${failure})`;
    }
    const outLeft = left[0]!;
    const inLeft = left[1]!;
    // Exactly the recorded size, with all of the input consumed: anything else is a damaged chunk.
    if (outLeft !== 0) return `decodes to ${size - outLeft} bytes, not ${size}`;
    if (inLeft !== 0) return `decodes to more than ${size} bytes`;
    return null;
  };
  return inflater;
}
