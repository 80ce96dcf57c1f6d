import { createHash, type Hash } from 'node:crypto';
import { JsonStreamScanner, ScanFailedError, type ScanOptions, type ScanReport } from '../../state/json-stream-scan.js';
import { bodyWorker, type BodyWorker, type DigestReply } from './body-worker.js';

/** Bytes per message to the body worker. A body shorter than this is checked on the event loop, in one go. */
export const DIGEST_BLOCK_BYTES = 256 * 1024;

/** Blocks of one body on the worker at once: the next block waits for the oldest (backpressure). */
const IN_FLIGHT = 4;

/** Block buffers back from the worker, kept for the next blocks (process-wide, at most this many). */
const SPARE_MAX = 4;
const spare: ArrayBuffer[] = [];

export interface BodyCheckValues {
  /** base64, as Content-MD5 */
  md5: string;
  /** hex, as x-amz-content-sha256 */
  sha256: string;
  /** The JSON scan's report when one was asked for (an error in it found only at the end: the body stopped short), else null. */
  scan: ScanReport | null;
}

/**
 * The per-byte checks of a body pushed piece by piece — its MD5 and SHA-256, and, when asked, a JSON scan
 * (json-stream-scan.ts: the state header reader's) — run on the body worker's thread (body-worker.ts) once
 * the body passes DIGEST_BLOCK_BYTES: the pieces are copied into 256 KiB blocks that go there, at most
 * IN_FLIGHT at a time, while the event loop chunks and stores the same bytes. On this machine the two
 * hashes cost about 2.1 ms per MiB and the scan 1.1–1.5, most of a write's CPU besides the chunker
 * (bench/README.md).
 *
 * A smaller body (most Terraform states) is checked on the event loop at the end, from the pieces it was
 * given (held, not copied): a message each way would cost more than the work. Where worker threads cannot
 * start, everything is checked on the event loop as it arrives.
 *
 * A scan that fails while the body is still arriving makes the next `update` (or `values`) throw a
 * ScanFailedError with the scan's report, so the caller stops reading: at once on the event loop, within
 * about IN_FLIGHT blocks on the worker (or 256 KiB for a small body).
 *
 * Call `values()` once after the last piece, or `abandon()` when the body is refused before its end.
 */
export class BodyChecks {
  /** Pieces not yet checked nor copied, until the first block (the worker's name for the body: `body`) starts. */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private body = 0;
  private local: { md5: Hash; sha256: Hash; scanner: JsonStreamScanner | null } | null = null;
  private block: Uint8Array | null = null;
  private blockLength = 0;
  private readonly inFlight: Array<Promise<DigestReply>> = [];
  private sent = 0;
  private finished = false;
  /** A failed scan's report from the worker, as soon as its answer arrives. */
  private failure: ScanReport | null = null;

  constructor(
    private readonly scan: ScanOptions | null = null,
    private readonly worker: BodyWorker = bodyWorker,
  ) {}

  /** The next piece of the body; the promise settles when the worker is ready for more. @throws ScanFailedError */
  async update(piece: Uint8Array): Promise<void> {
    if (this.failure) throw new ScanFailedError(this.failure);
    if (this.local) return this.checkHere(piece);
    if (this.body !== 0) return this.copy(piece);
    this.held.push(piece);
    this.heldBytes += piece.length;
    if (this.heldBytes < DIGEST_BLOCK_BYTES) return;
    const held = this.takeHeld();
    if (!this.worker.available) {
      this.startHere();
      for (const p of held) this.checkHere(p);
      return;
    }
    this.body = this.worker.newBody();
    for (const p of held) await this.copy(p);
  }

  /** The digests of every byte given to `update`, and the scan's report. @throws ScanFailedError */
  async values(): Promise<BodyCheckValues> {
    this.finished = true;
    if (this.body === 0) {
      if (!this.local) {
        this.startHere();
        for (const p of this.takeHeld()) this.checkHere(p);
      }
      const { md5, sha256, scanner } = this.local!;
      if (scanner) {
        try {
          scanner.end();
        } catch {
          // An error at the end goes in the report; the caller decides after its other checks.
        }
      }
      return { md5: md5.digest('base64'), sha256: sha256.digest('hex'), scan: scanner ? scanner.report() : null };
    }
    this.send(true);
    let last: DigestReply | undefined;
    while (this.inFlight.length > 0) last = await this.settleOldest();
    if (this.failure) throw new ScanFailedError(this.failure);
    if (!last?.digests) throw new Error("the body worker answered a body's last block without its digests");
    if (this.scan && !last.scan) throw new Error("the body worker answered a body's last block without its scan");
    return { ...last.digests, scan: last.scan };
  }

  /** The body ends here unfinished (refused, failed): the worker forgets it. Nothing to wait for. */
  abandon(): void {
    if (this.finished) return;
    this.finished = true;
    this.held = [];
    if (this.body === 0) return;
    this.send(true);
    this.inFlight.length = 0; // their answers are dropped (each already has a catch)
  }

  private takeHeld(): Uint8Array[] {
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    return held;
  }

  private startHere(): void {
    this.local = { md5: createHash('md5'), sha256: createHash('sha256'), scanner: this.scan ? new JsonStreamScanner(this.scan) : null };
  }

  private checkHere(piece: Uint8Array): void {
    const { md5, sha256, scanner } = this.local!;
    if (scanner) {
      try {
        scanner.push(piece);
      } catch {
        throw new ScanFailedError(scanner.report());
      }
    }
    md5.update(piece);
    sha256.update(piece);
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
        if (this.failure) throw new ScanFailedError(this.failure);
      }
    }
  }

  private send(end: boolean): void {
    const buffer = this.block ? this.block.buffer : new ArrayBuffer(0);
    const first = this.sent++ === 0;
    const reply = this.worker.digest(this.body, buffer as ArrayBuffer, this.block ? this.blockLength : 0, first, end, first ? this.scan : null);
    // A scan failure is noted as soon as it arrives (the next update throws); the reply itself is observed
    // where it is awaited (or dropped by abandon): never an unhandled rejection.
    reply.then(
      (r) => {
        if (r.scan?.error && !r.scan.error.atEnd) this.failure ??= r.scan;
      },
      () => undefined,
    );
    this.inFlight.push(reply);
    this.block = null;
    this.blockLength = 0;
  }

  private async settleOldest(): Promise<DigestReply> {
    const reply = await this.inFlight.shift()!;
    if (reply.lost) throw new Error('the body worker restarted while it checked this body: its digests are lost');
    if (reply.buffer.byteLength === DIGEST_BLOCK_BYTES && spare.length < SPARE_MAX) spare.push(reply.buffer);
    return reply;
  }
}
