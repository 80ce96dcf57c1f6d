import { createHash, type Hash } from 'node:crypto';
import { bodyWorker, type BodyWorker, type DigestReply } from './body-worker.js';

/** Bytes per message to the body worker. A body shorter than this is digested on the event loop, in one go. */
export const DIGEST_BLOCK_BYTES = 256 * 1024;

/** Blocks of one body on the worker at once: the next block waits for the oldest (backpressure). */
const IN_FLIGHT = 4;

/** Block buffers back from the worker, kept for the next blocks (process-wide, at most this many). */
const SPARE_MAX = 4;
const spare: ArrayBuffer[] = [];

export interface BodyDigestValues {
  /** base64, as Content-MD5 */
  md5: string;
  /** hex, as x-amz-content-sha256 */
  sha256: string;
}

/**
 * The MD5 and SHA-256 of a body pushed piece by piece, computed on the body worker's thread (body-worker.ts)
 * once the body passes DIGEST_BLOCK_BYTES: the pieces are copied into 256 KiB blocks that go there, at most
 * IN_FLIGHT at a time, while the event loop goes on scanning, chunking and storing the same bytes. On this
 * machine the two hashes cost about 2.3 ms per MiB, a third of a write's CPU (bench/README.md).
 *
 * A smaller body (most Terraform states) is hashed on the event loop at the end, from the pieces it was
 * given (held, not copied): a message each way would cost more than the hashes. Where worker threads cannot
 * start, everything is hashed on the event loop as it arrives.
 *
 * Call `digests()` once after the last piece, or `abandon()` when the body is refused before its end.
 */
export class BodyDigests {
  /** Pieces not yet hashed nor copied, until the first block (the worker's name for the body: `body`) starts. */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private body = 0;
  private local: { md5: Hash; sha256: Hash } | null = null;
  private block: Uint8Array | null = null;
  private blockLength = 0;
  private readonly inFlight: Array<Promise<DigestReply>> = [];
  private sent = 0;
  private finished = false;

  constructor(private readonly worker: BodyWorker = bodyWorker) {}

  /** The next piece of the body; the promise settles when the worker is ready for more. */
  async update(piece: Uint8Array): Promise<void> {
    if (this.local) {
      this.local.md5.update(piece);
      this.local.sha256.update(piece);
      return;
    }
    if (this.body !== 0) return this.copy(piece);
    this.held.push(piece);
    this.heldBytes += piece.length;
    if (this.heldBytes < DIGEST_BLOCK_BYTES) return;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    if (!this.worker.available) {
      this.local = { md5: createHash('md5'), sha256: createHash('sha256') };
      for (const p of held) await this.update(p);
      return;
    }
    this.body = this.worker.newBody();
    for (const p of held) await this.copy(p);
  }

  /** The digests of every byte given to `update`. */
  async digests(): Promise<BodyDigestValues> {
    this.finished = true;
    if (this.local) return { md5: this.local.md5.digest('base64'), sha256: this.local.sha256.digest('hex') };
    if (this.body === 0) {
      const md5 = createHash('md5');
      const sha256 = createHash('sha256');
      for (const p of this.held) {
        md5.update(p);
        sha256.update(p);
      }
      this.held = [];
      return { md5: md5.digest('base64'), sha256: sha256.digest('hex') };
    }
    this.send(true);
    let last: DigestReply | undefined;
    while (this.inFlight.length > 0) last = await this.settleOldest();
    if (!last?.digests) throw new Error('the body worker answered a body\'s last block without its digests');
    return last.digests;
  }

  /** The body ends here unfinished (refused, failed): the worker forgets it. Nothing to wait for. */
  abandon(): void {
    if (this.finished) return;
    this.finished = true;
    this.held = [];
    if (this.body === 0 || this.local) return;
    this.send(true);
    this.inFlight.length = 0; // their answers are dropped (each already has a catch)
  }

  private async copy(piece: Uint8Array): Promise<void> {
    for (let at = 0; at < piece.length; ) {
      if (!this.block) {
        this.block = new Uint8Array(spare.pop() ?? new ArrayBuffer(DIGEST_BLOCK_BYTES));
        this.blockLength = 0;
      }
      const n = Math.min(DIGEST_BLOCK_BYTES - this.blockLength, piece.length - at);
      this.block.set(piece.subarray(at, at + n), this.blockLength);
      this.blockLength += n;
      at += n;
      if (this.blockLength === DIGEST_BLOCK_BYTES) {
        this.send(false);
        if (this.inFlight.length >= IN_FLIGHT) await this.settleOldest();
      }
    }
  }

  private send(end: boolean): void {
    const buffer = this.block ? this.block.buffer : new ArrayBuffer(0);
    const reply = this.worker.digest(this.body, buffer as ArrayBuffer, this.block ? this.blockLength : 0, this.sent++ === 0, end);
    reply.catch(() => undefined); // observed where it is awaited (or dropped by abandon): never unhandled
    this.inFlight.push(reply);
    this.block = null;
    this.blockLength = 0;
  }

  private async settleOldest(): Promise<DigestReply> {
    const reply = await this.inFlight.shift()!;
    if (reply.lost) throw new Error('the body worker restarted while it digested this body: its digests are lost');
    if (reply.buffer.byteLength === DIGEST_BLOCK_BYTES && spare.length < SPARE_MAX) spare.push(reply.buffer);
    return reply;
  }
}
