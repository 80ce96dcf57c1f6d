import { StatelockError } from '../../server/errors.js';
import type { BodyContent, ChunkRef, Store, StoredChunk } from '../store.js';
import { bodyWorker, type BodyWorker } from './body-worker.js';
import { noteGarbage } from '../../shared/external-garbage.js';
import { damaged, decodeChunk, decodeChunkInto } from './chunk-codec.js';

/** Plaintext bytes fetched per getChunks call while streaming (and at most this many chunks). */
const READ_BATCH_BYTES = 1024 * 1024;
const READ_BATCH_CHUNKS = 128;
/** How many times a reader reloads its manifest after a chunk was re-filed under it (statelock rekey). */
const RELOADS = 3;

/** An inclusive byte range, as S3's Range gives it. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Batches decoded ahead of the one being sent: one being inflated while another waits its turn. */
const AHEAD = 2;
/** Reads of at least this many batches inflate on the worker thread (a smaller one never starts it). */
const WORKER_MIN_BATCHES = 2;

/**
 * One of a reader's reused batch buffers: the decoded bytes at [0, outCap), the compressed input of the
 * worker's chunks after them. Detached (null) while the worker holds it.
 */
interface Slot {
  buffer: ArrayBuffer | null;
  outCap: number;
}

/**
 * Batch buffers of finished reads, kept for the next reads (process-wide, at most SPARE_SLOTS). Without them
 * every read of two batches or more allocated two or three buffers of ~1–2 MiB that V8 counts as external
 * memory: on 1 MiB reads in a row they added up to a collection under external-memory pressure every dozen
 * reads (~9 ms scavenge + ~4 ms mark-compact, `--trace-gc`; bench/README.md).
 */
const SPARE_SLOTS = 3;
const spareSlots: ArrayBuffer[] = [];

function spareOf(bytes: number): ArrayBuffer | null {
  const i = spareSlots.findIndex((b) => b.byteLength >= bytes);
  return i < 0 ? null : spareSlots.splice(i, 1)[0]!;
}

/**
 * A stored body's bytes, read chunk by chunk: the server holds a few batches of chunks (about 1 MiB each)
 * at a time, never the whole body. A range reads only the chunks it covers (found by their sizes, without
 * fetching the others). Legacy rows (a whole body) read the same way.
 *
 * Each batch is decoded into one of AHEAD + 1 buffers the reader reuses (so a read allocates the same few
 * MiB whatever the body's size, instead of a buffer per chunk that V8 frees only in bulk, late: that garbage
 * was most of a read's peak memory), on the body worker for large reads (body-worker.ts). While the
 * caller sends batch N, batches N+1 and N+2 are fetched and inflated. Hence the rule for callers: **a yielded
 * buffer is valid until the next call to `next()`** — copy it to keep it (sendStream asks for the next batch
 * only once the socket has taken the previous one).
 *
 * `reload` gives the content again: `statelock rekey` may re-file a chunk under a new id while a reader
 * holds the old manifest; re-filing keeps every chunk's size and place, so the reader reloads the manifest
 * and continues at the same chunk.
 */
export class BodyReader {
  constructor(
    private readonly store: Store,
    private content: BodyContent,
    readonly size: number,
    private readonly reload?: () => Promise<BodyContent | null>,
    private readonly inflater: BodyWorker = bodyWorker,
  ) {}

  /** The whole body, or the bytes of `range`, as a sequence of buffers (each valid until the next is asked for). */
  async *stream(range?: ByteRange): AsyncGenerator<Buffer> {
    for await (const batch of this.batches(range)) yield* batch;
  }

  /**
   * The same bytes, one array per batch of chunks (about 1 MiB), each valid until the next call to `next()`.
   */
  async *batches(range?: ByteRange): AsyncGenerator<Buffer[]> {
    const start = range?.start ?? 0;
    const end = range ? range.end + 1 : this.size; // exclusive
    if (start >= end) return;
    if (this.content.kind === 'whole') {
      yield [this.content.body.subarray(start, end)];
      return;
    }
    const refs = this.content.chunks;
    // The chunks covering [start, end) and where the first one begins.
    let first = 0;
    let offset = 0;
    while (first < refs.length && offset + refs[first]!.size <= start) offset += refs[first++]!.size;
    let last = first;
    let upto = offset;
    while (last < refs.length && upto < end) upto += refs[last++]!.size;
    const batches: Array<[number, number]> = [];
    let outCap = 0;
    for (let i = first; i < last; ) {
      let j = i;
      let bytes = 0;
      while (j < last && j - i < READ_BATCH_CHUNKS && (j === i || bytes + refs[j]!.size <= READ_BATCH_BYTES)) bytes += refs[j++]!.size;
      batches.push([i, j]);
      outCap = Math.max(outCap, bytes);
      i = j;
    }
    const onWorker = batches.length >= WORKER_MIN_BATCHES && this.inflater.available;
    const slots: Slot[] = Array.from({ length: AHEAD + 1 }, () => ({ buffer: null, outCap }));
    const decode = (b: number): Promise<Buffer> => {
      const p = this.decode(batches[b]![0], batches[b]![1], slots[b % slots.length]!, onWorker);
      p.catch(() => undefined); // observed when its turn comes
      return p;
    };
    const ahead: Array<Promise<Buffer>> = [];
    for (let b = 0; b < Math.min(AHEAD, batches.length); b++) ahead.push(decode(b));
    let at = offset; // body offset of the next batch yielded
    try {
      for (let b = 0; b < batches.length; b++) {
        // Batch b + AHEAD goes into the slot of batch b - 1, which the caller is done with (it asked for b).
        if (b + AHEAD < batches.length) ahead.push(decode(b + AHEAD));
        const plain = await ahead.shift()!;
        const from = Math.max(0, start - at);
        const to = Math.min(plain.length, end - at);
        at += plain.length;
        if (to > from) yield [from === 0 && to === plain.length ? plain : plain.subarray(from, to)];
      }
    } finally {
      // Whatever is still being decoded settles before the slots are let go (its failure was reported, or is
      // moot); the caller is done with the last batch (it asked for the next one, or stopped).
      await Promise.allSettled(ahead);
      for (const slot of slots) if (slot.buffer && spareSlots.length < SPARE_SLOTS) spareSlots.push(slot.buffer);
    }
  }

  /** The whole body in one buffer, for callers that must parse it (diff, restore, resource counts). */
  async buffer(): Promise<Buffer> {
    if (this.content.kind === 'whole') return this.content.body;
    const out = Buffer.allocUnsafe(this.size);
    let at = 0;
    for await (const piece of this.stream()) at += piece.copy(out, at);
    if (at !== this.size) throw new Error(`stored body holds ${at} bytes, its version says ${this.size}`);
    return out;
  }

  /**
   * Chunks [from, to) of the manifest decoded, one after another, into `slot`: raw chunks copied on the event
   * loop, deflated ones inflated on the worker (`onWorker`) or here. Resolves with a view of the slot.
   */
  private async decode(from: number, to: number, slot: Slot, onWorker: boolean): Promise<Buffer> {
    const chunks = await this.fetch(from, to);
    let outBytes = 0;
    let inBytes = 0;
    let fetched = 0;
    for (const c of chunks) {
      outBytes += c.size;
      fetched += c.data.length;
      if (c.codec === 'deflate') inBytes += c.data.length;
      else if (c.codec !== 'raw') decodeChunk(c); // throws: unknown codec
    }
    noteGarbage(fetched); // the rows' buffers are dead once decoded into the slot
    const outCap = Math.max(slot.outCap, outBytes);
    const need = outCap + (onWorker ? inBytes : 0);
    if (!slot.buffer || slot.buffer.byteLength < need || outCap !== slot.outCap) {
      slot.buffer = spareOf(need) ?? new ArrayBuffer(Math.max(need, slot.buffer?.byteLength ?? 0));
      slot.outCap = outCap;
    }
    const out = Buffer.from(slot.buffer, 0, outBytes);
    if (!onWorker) {
      let at = 0;
      for (const c of chunks) {
        decodeChunkInto(c, out, at);
        at += c.size;
      }
      return out;
    }
    // Raw chunks go straight to their place; deflated ones are queued for the worker with their input.
    const whole = Buffer.from(slot.buffer);
    const jobs: number[] = [];
    const jobChunk: StoredChunk[] = [];
    let at = 0;
    let inAt = outCap;
    for (const c of chunks) {
      if (c.codec === 'raw') decodeChunkInto(c, out, at);
      else {
        jobs.push(inAt, c.data.length, at, c.size);
        jobChunk.push(c);
        inAt += c.data.copy(whole, inAt);
      }
      at += c.size;
    }
    if (jobs.length === 0) return out;
    const buffer = slot.buffer;
    slot.buffer = null;
    const reply = await this.inflater.inflate(buffer, Int32Array.from(jobs));
    slot.buffer = reply.buffer;
    if (reply.bad >= 0) throw damaged(jobChunk[reply.bad]!.id, reply.why ?? 'does not inflate');
    return Buffer.from(reply.buffer, 0, outBytes);
  }

  /** Chunks [from, to) of the manifest as stored; reloading the manifest if one was re-filed meanwhile. */
  private async fetch(from: number, to: number): Promise<StoredChunk[]> {
    for (let attempt = 0; ; attempt++) {
      const refs = (this.content as { chunks: ChunkRef[] }).chunks.slice(from, to);
      try {
        return await this.store.getChunks(refs.map((r) => r.id));
      } catch (err) {
        if (!(err instanceof StatelockError && err.code === 'CHUNK_MISSING') || !this.reload || attempt >= RELOADS) throw err;
        const again = await this.reload();
        if (!again || again.kind !== 'chunks' || !sameShape(again.chunks, (this.content as { chunks: ChunkRef[] }).chunks)) throw err;
        this.content = again;
      }
    }
  }
}

function sameShape(a: ChunkRef[], b: ChunkRef[]): boolean {
  return a.length === b.length && a.every((r, i) => r.size === b[i]!.size);
}
