import type { Digests } from '../../state/state-file.js';
import type { ChunkRef, Store, StoredChunk } from '../store.js';
import { noteGarbage } from '../../shared/external-garbage.js';
import type { ScanOptions, ScanReport } from '../../state/json-stream-scan.js';
import { BodyChecks } from './body-checks.js';
import { Chunker } from './chunker.js';
import { encodeChunk } from './chunk-codec.js';

/** Plaintext bytes cut into chunks before they are stored as one batch (one putChunks transaction). */
export const INGEST_BATCH_BYTES = 2 * 1024 * 1024;

/** Chunks being deflated at once per ingest (the libuv pool has 4 threads by default). */
const DEFLATE_CONCURRENCY = 4;

export interface IngestResult {
  digests: Digests;
  /** The body's manifest: every chunk named here is stored. */
  chunks: ChunkRef[];
  /** The JSON scan's report, when `scan` was given (an error in it is one found at the end: the body stopped short). */
  scan: ScanReport | null;
}

/**
 * Stores a body as chunks in one pass over its bytes, as they arrive: size, MD5, SHA-256 and, when `scan`
 * is given, a JSON scan with those options (the state header reader's), all on the body worker's thread for
 * a large body (body-checks.ts); a scan that fails while the body arrives stops the reading with a
 * ScanFailedError; the chunker cuts; each batch of about INGEST_BATCH_BYTES is compressed on the thread pool (only the chunks the store
 * does not hold yet: presentChunks) and stored with putChunks while the next batch is read. At most one
 * batch is being stored while another fills, and the source is not read while a full batch waits for the
 * one before it: backpressure, so memory stays at a few MiB whatever the body's size.
 *
 * Nothing names the chunks until the caller commits a version with the manifest; a body refused after
 * this (bad digest, invalid state, a rule) leaves them for the sweep.
 */
export async function ingest(store: Store, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, scan?: ScanOptions): Promise<IngestResult> {
  const checks = new BodyChecks(scan ?? null);
  const chunker = new Chunker();
  const refs: ChunkRef[] = [];
  let size = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let inFlight: Promise<void> | null = null;

  const flush = async (): Promise<void> => {
    const pieces = batch;
    batch = [];
    batchBytes = 0;
    const named = pieces.map((plain) => ({ id: store.chunkId(plain), plain }));
    for (const { id, plain } of named) refs.push({ id, size: plain.length });
    // Wait for the batch before: at most one is stored at a time, and batches land in order.
    if (inFlight) await inFlight;
    inFlight = storeBatch(store, named);
    inFlight.catch(() => undefined); // observed below, when it is awaited; never an unhandled rejection
  };

  try {
    for await (const piece of source) {
      size += piece.length;
      await checks.update(piece); // waits only while the body worker is IN_FLIGHT blocks behind
      noteGarbage(piece.length); // a request piece is dead once its batch is stored
      for (const chunk of chunker.push(piece)) {
        batch.push(chunk);
        batchBytes += chunk.length;
      }
      if (batchBytes >= INGEST_BATCH_BYTES) await flush();
    }
    // The body worker finishes the last block's checks while the last batch is stored.
    const checked = checks.values();
    checked.catch(() => undefined); // observed below, after the last batch
    for (const chunk of chunker.end()) batch.push(chunk);
    if (batch.length > 0) await flush();
    if (inFlight) await inFlight;
    const { md5, sha256, scan: report } = await checked;
    return { digests: { md5, sha256, size }, chunks: refs, scan: report };
  } catch (err) {
    checks.abandon();
    // Let a batch being stored finish (its chunks are left for the sweep), then report the first failure.
    if (inFlight) await (inFlight as Promise<void>).catch(() => undefined);
    throw err;
  }
}

/** Ingests a body that is already in memory (restore's rewritten header, a test). */
export function ingestBuffer(store: Store, body: Buffer, scan?: ScanOptions): Promise<IngestResult> {
  return ingest(store, [body], scan);
}

/** Compresses and stores the chunks of one batch that the store does not already hold. */
async function storeBatch(store: Store, named: Array<{ id: string; plain: Buffer }>): Promise<void> {
  const unique = new Map<string, Buffer>();
  for (const { id, plain } of named) if (!unique.has(id)) unique.set(id, plain);
  const present = await store.presentChunks([...unique.keys()]);
  const missing = [...unique].filter(([id]) => !present.has(id));
  if (missing.length === 0) return;
  // A few deflates at a time (each holds ~256 KiB of zlib state until it runs): enough to keep the thread
  // pool busy, without a context per chunk of the batch allocated up front.
  const stored: StoredChunk[] = new Array(missing.length);
  let next = 0;
  const worker = async () => {
    while (next < missing.length) {
      const i = next++;
      const [id, plain] = missing[i]!;
      const { codec, data } = await encodeChunk(plain);
      stored[i] = { id, size: plain.length, codec, data };
    }
  };
  await Promise.all(Array.from({ length: Math.min(DEFLATE_CONCURRENCY, missing.length) }, worker));
  await store.putChunks(stored);
  noteGarbage(stored.reduce((n, c) => n + c.data.length, 0));
}
