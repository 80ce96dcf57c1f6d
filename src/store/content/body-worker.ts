import { Worker } from 'node:worker_threads';
import type { ScanOptions, ScanReport } from '../../state/json-stream-scan.js';

/** A read batch to inflate: `buffer` is transferred there and back; `jobs` holds [inOff, inLen, outOff, size] per chunk. */
export interface InflateRequest {
  kind: 'inflate';
  seq: number;
  buffer: ArrayBuffer;
  jobs: Int32Array;
}

/** The answer: the buffer (inflated), and the index of the first chunk that did not decode (-1: none) and why. */
export interface InflateReply {
  seq: number;
  buffer: ArrayBuffer;
  bad: number;
  why: string | null;
}

/**
 * The next block of a body being checked: its first `length` bytes of `buffer` (transferred there and back).
 * `body` names the body among those being checked at once; `first` opens it (with `scan`: the JSON scan to
 * run over it, or null), `end` closes it.
 */
export interface DigestRequest {
  kind: 'digest';
  seq: number;
  body: number;
  buffer: ArrayBuffer;
  length: number;
  first: boolean;
  end: boolean;
  scan: ScanOptions | null;
}

/**
 * The block's buffer back, free for the next block; with the body's digests after its last block. `scan`:
 * the scan's report once, either with the block where it failed or with the last block. `lost`: the thread
 * holds nothing for this body although this is not its first block (a new thread, after the one that had
 * its first blocks died), so its digests cannot be had.
 */
export interface DigestReply {
  seq: number;
  buffer: ArrayBuffer;
  digests: { md5: string; sha256: string } | null;
  scan: ScanReport | null;
  lost: boolean;
}

type Request = InflateRequest | DigestRequest;
type Reply = InflateReply | DigestReply;

const THREAD_URL = new URL('./body-worker-thread.js', import.meta.url);

/**
 * The body worker: one thread per process that takes per-byte work on body bytes off the event loop, so it
 * runs on another core beside it:
 * - a large read's inflate (about half of a GET's CPU on the event loop before: bench/README.md), a batch
 *   of about 1 MiB per message, while the event loop fetches the next batch and writes the previous one;
 * - a large write's MD5 and SHA-256 and its JSON scan (about half of a write's CPU), 256 KiB blocks per
 *   message, while the event loop chunks and stores the same bytes (body-checks.ts). The thread warms the
 *   scanner up when it starts (jit-warmup.ts), before its first message.
 *
 * Buffers are transferred, not copied, both ways. The thread starts with the first large read or write (it
 * costs about 10 MiB of resident memory: small bodies never start it), stays for the next ones, and holds
 * the process open only while a message is on it. Messages run in order.
 *
 * The thread pool is no substitute: zlib's async API makes a context (and a JS stream) per chunk and costs
 * two thread hops per 8 KiB chunk, and Node's hashes are synchronous on the calling thread.
 *
 * If the thread cannot start or dies, the messages it held fail (their reads and writes end with an error)
 * and the next one starts a new thread; `available` is false when threads cannot be started at all, and
 * callers then do the work on the event loop.
 */
export class BodyWorker {
  private worker: Worker | null = null;
  private broken = false;
  private seq = 0;
  private bodies = 0;
  private readonly pending = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }>();

  get available(): boolean {
    return !this.broken;
  }

  /** Inflates `jobs` within `buffer` (which is detached until the promise settles: use the reply's buffer). */
  inflate(buffer: ArrayBuffer, jobs: Int32Array): Promise<InflateReply> {
    const seq = ++this.seq;
    return this.send({ kind: 'inflate', seq, buffer, jobs }, [buffer, jobs.buffer as ArrayBuffer]) as Promise<InflateReply>;
  }

  /** A name for a new body to digest (the thread keeps its running hashes under it until its last block). */
  newBody(): number {
    return ++this.bodies;
  }

  /**
   * Adds `buffer`'s first `length` bytes to `body`'s digests (and scan); `first`: its first block, `scan` the
   * JSON scan to run over the body (read on the first block only); `end`: its last block (the reply carries
   * the digests and the scan's report).
   */
  digest(body: number, buffer: ArrayBuffer, length: number, first: boolean, end: boolean, scan: ScanOptions | null = null): Promise<DigestReply> {
    const seq = ++this.seq;
    return this.send({ kind: 'digest', seq, body, buffer, length, first, end, scan }, [buffer]) as Promise<DigestReply>;
  }

  /** Ends the thread (tests; a server leaves it to the process's exit). Messages on it fail. */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.fail(w, new Error('the body worker was closed'));
    await w.terminate();
  }

  private send(request: Request, transfer: ArrayBuffer[]): Promise<Reply> {
    const worker = this.worker ?? this.start();
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(request.seq, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage(request, transfer);
    });
  }

  private start(): Worker {
    let w: Worker;
    try {
      // It allocates almost nothing of its own (the buffers come and go with the messages): small heap limits.
      w = new Worker(THREAD_URL, { resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 }, stdout: false, stderr: false });
    } catch (err) {
      this.broken = true;
      throw err;
    }
    let answered = false;
    w.on('message', (reply: Reply) => {
      answered = true;
      const p = this.pending.get(reply.seq);
      if (!p) return;
      this.pending.delete(reply.seq);
      if (this.pending.size === 0) w.unref();
      p.resolve(reply);
    });
    // A thread that fails before its first answer will not do better next time: callers work on the event loop.
    w.on('error', (err) => {
      if (!answered) this.broken = true;
      this.fail(w, err);
    });
    w.on('exit', (code) => this.fail(w, new Error(`the body worker exited (${code})`)));
    w.unref();
    this.worker = w;
    return w;
  }

  private fail(w: Worker, err: Error): void {
    if (this.worker !== w) return;
    this.worker = null;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(err);
  }
}

/** The process's body worker. */
export const bodyWorker = new BodyWorker();
