import { Worker } from 'node:worker_threads';

/** A batch for the inflate worker: `buffer` is transferred there and back; `jobs` holds [inOff, inLen, outOff, size] per chunk. */
export interface InflateRequest {
  seq: number;
  buffer: ArrayBuffer;
  jobs: Int32Array;
}

/** The worker's answer: the buffer (inflated), and the index of the first chunk that did not decode (-1: none) and why. */
export interface InflateReply {
  seq: number;
  buffer: ArrayBuffer;
  bad: number;
  why: string | null;
}

const WORKER_URL = new URL('./inflate-worker.js', import.meta.url);

/**
 * Inflates read batches on a worker thread, so that a large read's decompression (about half of a GET's CPU
 * on the event loop before: bench/README.md) runs beside the event loop, which meanwhile fetches the next
 * batch from the store and writes the previous one to the socket. One worker for the whole process, started
 * on the first large read (it costs about 10 MiB of resident memory: a small read never starts it) and kept
 * for the next ones; it holds the process open only while a batch is on it. Batches from concurrent readers
 * queue on it in order.
 *
 * The thread pool is no substitute: zlib's async API makes a context (and a JS stream) per chunk and costs
 * two thread hops per 8 KiB chunk; here a batch of about 1 MiB is one message each way, its buffer moved,
 * not copied (transferred), and inflated with one reused context.
 *
 * If the worker cannot start or dies, the batches it held fail (their reads end with an error) and the
 * next large read starts a new one; `available` is false when workers cannot be started at all, and the
 * reader then inflates on the event loop.
 */
export class BatchInflater {
  private worker: Worker | null = null;
  private broken = false;
  private seq = 0;
  private readonly pending = new Map<number, { resolve(r: InflateReply): void; reject(e: Error): void }>();

  get available(): boolean {
    return !this.broken;
  }

  /** Inflates `jobs` within `buffer` (which is detached until the promise settles: use the reply's buffer). */
  run(buffer: ArrayBuffer, jobs: Int32Array): Promise<InflateReply> {
    const worker = this.worker ?? this.start();
    const seq = ++this.seq;
    return new Promise<InflateReply>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      const request: InflateRequest = { seq, buffer, jobs };
      worker.postMessage(request, [buffer, jobs.buffer as ArrayBuffer]);
    });
  }

  /** Ends the worker (tests; a server leaves it to the process's exit). Batches on it fail. */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.fail(w, new Error('the inflate worker was closed'));
    await w.terminate();
  }

  private start(): Worker {
    let w: Worker;
    try {
      // It allocates almost nothing of its own (the buffers come and go with the messages): small heap limits.
      w = new Worker(WORKER_URL, { resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 }, stdout: false, stderr: false });
    } catch (err) {
      this.broken = true;
      throw err;
    }
    let answered = false;
    w.on('message', (reply: InflateReply) => {
      answered = true;
      const p = this.pending.get(reply.seq);
      if (!p) return;
      this.pending.delete(reply.seq);
      if (this.pending.size === 0) w.unref();
      p.resolve(reply);
    });
    // A worker that fails before its first answer will not do better next time: readers inflate on the event loop.
    w.on('error', (err) => {
      if (!answered) this.broken = true;
      this.fail(w, err);
    });
    w.on('exit', (code) => this.fail(w, new Error(`the inflate worker exited (${code})`)));
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

/** The process's inflater. */
export const batchInflater = new BatchInflater();
