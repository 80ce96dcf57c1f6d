import { plainView } from '../../state/json-stream-scan.js';

/**
 * Content-defined chunking: a gear rolling hash with FastCDC's normalized cut points. A cut falls where
 * the hash of the last 32 bytes matches a mask, so boundaries follow the content, not the offsets: an
 * edit in the middle of a state moves the boundaries around it only, and every chunk before and after it
 * is cut exactly as before — which is what lets versions share chunks.
 *
 * The sizes: nothing is cut before `min` bytes (and those bytes are not even hashed); between `min` and
 * `avg` a cut needs a harder mask (more bits), after `avg` an easier one, which pulls chunk sizes towards
 * `avg`; `max` is a hard cut. Chosen with the bench's storage suite (bench/README.md): see docs/storage.md.
 *
 * The gear table and the masks are part of the storage format in practice: changing them changes where
 * every new body is cut, so new versions would stop sharing chunks with old ones (nothing would break).
 */

export interface ChunkSizes {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNK_SIZES: ChunkSizes = { min: 2 * 1024, avg: 8 * 1024, max: 64 * 1024 };

/** 256 fixed pseudo-random 32-bit values (splitmix32 from a fixed seed): the same on every machine, for ever. Exported for a test's reference chunker. */
export const GEAR = (() => {
  const table = new Int32Array(256);
  let state = 0x5eed1e55;
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    table[i] = z ^ (z >>> 16);
  }
  return table;
})();

/** The gear hash where gearScan stopped (a module variable, so that the hot loop returns one number). */
let gearHash = 0;

/**
 * Rolls the gear hash from `hash` over bytes[from, stop) and returns the index just past the first byte at
 * which `(hash & mask) === 0`, or -1 when there is none; either way `gearHash` is then the hash there.
 *
 * Unrolled eight bytes at a time: the same cut points as one byte per iteration, but the chunker runs
 * ~35% faster (V8 checks the loop's bound and counter once per eight bytes; measured on the bench's 100 MiB
 * state, 113 → 72 ms; bench/README.md).
 */
function gearScan(bytes: Uint8Array, from: number, stop: number, hash: number, mask: number): number {
  let h = hash;
  let i = from;
  for (; i + 8 <= stop; i += 8) {
    if (((h = ((h << 1) + GEAR[bytes[i]!]!) | 0) & mask) === 0) return stopAt(h, i + 1);
    if (((h = ((h << 1) + GEAR[bytes[i + 1]!]!) | 0) & mask) === 0) return stopAt(h, i + 2);
    if (((h = ((h << 1) + GEAR[bytes[i + 2]!]!) | 0) & mask) === 0) return stopAt(h, i + 3);
    if (((h = ((h << 1) + GEAR[bytes[i + 3]!]!) | 0) & mask) === 0) return stopAt(h, i + 4);
    if (((h = ((h << 1) + GEAR[bytes[i + 4]!]!) | 0) & mask) === 0) return stopAt(h, i + 5);
    if (((h = ((h << 1) + GEAR[bytes[i + 5]!]!) | 0) & mask) === 0) return stopAt(h, i + 6);
    if (((h = ((h << 1) + GEAR[bytes[i + 6]!]!) | 0) & mask) === 0) return stopAt(h, i + 7);
    if (((h = ((h << 1) + GEAR[bytes[i + 7]!]!) | 0) & mask) === 0) return stopAt(h, i + 8);
  }
  for (; i < stop; i++) {
    if (((h = ((h << 1) + GEAR[bytes[i]!]!) | 0) & mask) === 0) return stopAt(h, i + 1);
  }
  gearHash = h;
  return -1;
}

function stopAt(hash: number, at: number): number {
  gearHash = hash;
  return at;
}

/** A mask of the top `bits` bits: the high bits of the gear hash depend on the most bytes (up to 32). */
function topBits(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

/** Incremental: push bytes as they arrive, take the chunks that are finished; end() gives the last one. */
export class Chunker {
  private readonly min: number;
  private readonly avg: number;
  private readonly max: number;
  private readonly maskHard: number;
  private readonly maskEasy: number;
  private pending: Buffer[] = [];
  private length = 0;
  private hash = 0;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    if (!(sizes.min > 0 && sizes.min <= sizes.avg && sizes.avg <= sizes.max)) throw new Error(`chunk sizes must be 0 < min <= avg <= max, not ${JSON.stringify(sizes)}`);
    this.min = sizes.min;
    this.avg = sizes.avg;
    this.max = sizes.max;
    const bits = Math.round(Math.log2(sizes.avg));
    this.maskHard = topBits(Math.min(31, bits + 2));
    this.maskEasy = topBits(Math.max(1, bits - 2));
  }

  /**
   * The chunks completed by these bytes. They may be views of the input (and the chunker keeps views of an
   * unfinished chunk's bytes): the caller must not reuse or change an input buffer afterwards. Request bodies
   * and buffers read from the database never are.
   */
  push(piece: Uint8Array): Buffer[] {
    const bytes = plainView(piece); // one hidden class for the loop below, whoever made the piece
    const out: Buffer[] = [];
    const { min, avg, max, maskHard, maskEasy } = this;
    let start = 0; // where the current chunk's part of `bytes` begins
    let i = 0;
    let length = this.length;
    let hash = this.hash;
    const n = bytes.length;
    while (i < n) {
      if (length < min) {
        // The first `min` bytes of a chunk can never end it: skip them without hashing.
        const skip = Math.min(min - length, n - i);
        i += skip;
        length += skip;
        continue;
      }
      let cut = -1; // exclusive end of the chunk in `bytes`
      if (length < avg) {
        const stop = Math.min(n, i + (avg - length));
        cut = gearScan(bytes, i, stop, hash, maskHard);
        hash = gearHash;
        const end = cut < 0 ? stop : cut;
        length += end - i;
        i = end;
      }
      if (cut < 0 && length >= avg) {
        const stop = Math.min(n, i + (max - length));
        cut = gearScan(bytes, i, stop, hash, maskEasy);
        hash = gearHash;
        const end = cut < 0 ? stop : cut;
        length += end - i;
        i = end;
        if (cut < 0 && length >= max) cut = i;
      }
      if (cut >= 0) {
        out.push(this.take(bytes, start, cut));
        start = cut;
        length = 0;
        hash = 0;
      }
    }
    this.length = length;
    this.hash = hash;
    if (start < n) this.keep(bytes, start, n);
    return out;
  }

  /** The last chunk (empty array for an empty body). */
  end(): Buffer[] {
    if (this.length === 0 && this.pending.length === 0) return [];
    const last = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.length = 0;
    this.hash = 0;
    return [last];
  }

  private take(bytes: Uint8Array, from: number, to: number): Buffer {
    const tail = bytes.subarray(from, to);
    // A chunk inside one input piece is a view of it (no copy; most chunks are); one that spans pieces is joined.
    if (this.pending.length === 0) return Buffer.from(tail.buffer, tail.byteOffset, tail.length);
    const chunk = Buffer.allocUnsafe(this.pendingBytes() + tail.length);
    let at = 0;
    for (const p of this.pending) at += p.copy(chunk, at);
    chunk.set(tail, at);
    this.pending = [];
    return chunk;
  }

  private keep(bytes: Uint8Array, from: number, to: number): void {
    const rest = bytes.subarray(from, to);
    this.pending.push(Buffer.from(rest.buffer, rest.byteOffset, rest.length));
  }

  private pendingBytes(): number {
    let n = 0;
    for (const p of this.pending) n += p.length;
    return n;
  }
}
