import { StatelockError } from '../../server/errors.js';
import type { BodyContent, ChunkRef, Store } from '../store.js';
import { decodeChunk } from './chunk-codec.js';

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

/**
 * A stored body's bytes, read chunk by chunk: the server holds one batch of chunks (about 1 MiB, the next
 * one prefetched) at a time, never the whole body. A range reads only the chunks it covers (found by their
 * sizes, without fetching the others). Legacy rows (a whole body) read the same way.
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
  ) {}

  /** The whole body, or the bytes of `range`, as a sequence of buffers. */
  async *stream(range?: ByteRange): AsyncGenerator<Buffer> {
    for await (const batch of this.batches(range)) yield* batch;
  }

  /**
   * The same bytes, one array per batch of chunks (about 1 MiB): a socket takes a batch in one write
   * (cork/uncork) without the batch being copied into one buffer first.
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
    for (let i = first; i < last; ) {
      let j = i;
      let bytes = 0;
      while (j < last && j - i < READ_BATCH_CHUNKS && (j === i || bytes + refs[j]!.size <= READ_BATCH_BYTES)) bytes += refs[j++]!.size;
      batches.push([i, j]);
      i = j;
    }
    let at = offset; // body offset of the next chunk yielded
    let next = batches.length > 0 ? this.fetch(batches[0]![0], batches[0]![1]) : null;
    for (let b = 0; b < batches.length; b++) {
      const current = next!;
      // Prefetch the next batch while this one is written out.
      next = b + 1 < batches.length ? this.fetch(batches[b + 1]![0], batches[b + 1]![1]) : null;
      next?.catch(() => undefined); // observed when its turn comes
      let plains: Buffer[];
      try {
        plains = await current;
      } catch (err) {
        await next?.catch(() => undefined);
        throw err;
      }
      const out: Buffer[] = [];
      for (const plain of plains) {
        const from = Math.max(0, start - at);
        const to = Math.min(plain.length, end - at);
        if (to > from) out.push(from === 0 && to === plain.length ? plain : plain.subarray(from, to));
        at += plain.length;
      }
      if (out.length > 0) yield out;
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

  /** Chunks [from, to) of the manifest, decoded; reloading the manifest if one was re-filed meanwhile. */
  private async fetch(from: number, to: number): Promise<Buffer[]> {
    for (let attempt = 0; ; attempt++) {
      const refs = (this.content as { chunks: ChunkRef[] }).chunks.slice(from, to);
      try {
        const chunks = await this.store.getChunks(refs.map((r) => r.id));
        return chunks.map((c) => decodeChunk(c));
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
