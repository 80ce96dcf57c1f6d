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
 * The plaintext of a stored (already opened) chunk, checked against its recorded size. Inflated on the
 * calling thread: inflating a chunk of at most 64 KiB takes tens of microseconds, and the thread pool's
 * per-call cost (a zlib context per call, two thread hops) measured more than twice the work itself; the
 * reader decodes one batch (about 1 MiB) at a time, so the event loop is never held for more than a few ms.
 */
export function decodeChunk(chunk: StoredChunk): Buffer {
  if (chunk.codec === 'raw') return checked(chunk, chunk.data, chunk.data.length);
  if (chunk.codec !== 'deflate') return unknownCodec(chunk);
  if (chunk.size > 0) {
    const fast = reusedInflate();
    if (fast) return fast(chunk);
  }
  const plain = inflateRawSync(chunk.data);
  return checked(chunk, plain, plain.length);
}

function checked(chunk: StoredChunk, plain: Buffer, decodedBytes: number | string): Buffer {
  if (decodedBytes !== chunk.size) throw new Error(`stored content is damaged: chunk ${chunk.id} decodes to ${decodedBytes} bytes, not ${chunk.size}`);
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

let inflater: ((chunk: StoredChunk) => Buffer) | null | undefined;

/**
 * One raw-inflate context, reset and reused for every chunk, inflating straight into a buffer of the
 * chunk's recorded size. `inflateRawSync` builds and tears down a zlib context (and its JS stream object)
 * per call; for 8 KiB chunks that was about half the cost of a read and most of its garbage (measured
 * in bench/README.md's profile of GetObject). Relies on the binding handle behind Node's zlib streams
 * (`_handle.writeSync`, `reset`, the `_writeState` pair of what input and output space is left): if a
 * Node release changes it, decodeChunk falls back to inflateRawSync. Synchronous, so one context serves
 * every caller on this thread.
 */
function reusedInflate(): ((chunk: StoredChunk) => Buffer) | null {
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
  inflater = (chunk) => {
    const out = Buffer.allocUnsafe(chunk.size);
    failure = null;
    handle.reset();
    handle.writeSync(constants.Z_FINISH, chunk.data, 0, chunk.data.length, out, 0, chunk.size);
    if (failure !== null) {
      inflater = undefined; // a fresh context next time
      throw new Error(`stored content is damaged: chunk ${chunk.id} does not inflate (${failure})`);
    }
    const outLeft = left[0]!;
    const inLeft = left[1]!;
    // Exactly the recorded size, with all of the input consumed: anything else is a damaged chunk.
    if (outLeft !== 0) return checked(chunk, out, chunk.size - outLeft);
    if (inLeft !== 0) return checked(chunk, out, `more than ${chunk.size}`);
    return out;
  };
  return inflater;
}
