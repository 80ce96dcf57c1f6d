/**
 * The body worker's thread (body-worker.ts starts it). Two kinds of message, answered in order:
 * - inflate: the deflate chunks of one read batch, each straight into its place in the batch's output, with
 *   one reused zlib context; every chunk must decode to exactly its recorded size with all of its input
 *   consumed, and the first one that does not is reported (which one, and why), never passed on;
 * - digest: the next block of a body's bytes into its running MD5 and SHA-256 (and its JSON scan, when the
 *   first block asked for one), kept here by body until its last block, whose answer carries the digests
 *   and the scan's report; a scan that fails answers its report with that block and scans no further; a
 *   later block of a body this thread never began is answered `lost` (the thread that began it died).
 * Every buffer goes back with its answer.
 *
 * Before its first message the thread runs the scanner over small synthetic states: cold, the scanner's
 * first few MiB run ~20 times slower (src/server/jit-warmup.ts says why).
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { inflateInto } from './chunk-codec.js';
import { JsonStreamScanner, type ScanReport } from '../../state/json-stream-scan.js';
import { STATE_SCAN } from '../../state/state-file.js';
import { syntheticStates } from '../../state/synthetic-states.js';
import type { DigestReply, DigestRequest, InflateReply, InflateRequest } from './body-worker.js';

const port = parentPort;
if (!port) throw new Error('body-worker-thread.js runs as a worker thread');

const bodies = new Map<number, { md5: Hash; sha256: Hash; scanner: JsonStreamScanner | null }>();

warmUpScanner();

port.on('message', (m: InflateRequest | DigestRequest) => {
  if (m.kind === 'digest') digest(m);
  else inflate(m);
});

function inflate(m: InflateRequest): void {
  const bytes = new Uint8Array(m.buffer);
  const jobs = m.jobs;
  let bad = -1;
  let why: string | null = null;
  for (let i = 0; i < jobs.length; i += 4) {
    why = inflateInto(bytes, jobs[i]!, jobs[i + 1]!, bytes, jobs[i + 2]!, jobs[i + 3]!);
    if (why !== null) {
      bad = i / 4;
      break;
    }
  }
  const reply: InflateReply = { seq: m.seq, buffer: m.buffer, bad, why };
  port!.postMessage(reply, [m.buffer]);
}

function digest(m: DigestRequest): void {
  let h = bodies.get(m.body);
  if (!h && !m.first) {
    // Its first blocks went to a thread that died: what they held is gone.
    const lost: DigestReply = { seq: m.seq, buffer: m.buffer, digests: null, scan: null, lost: true };
    port!.postMessage(lost, [m.buffer]);
    return;
  }
  if (!h) bodies.set(m.body, (h = { md5: createHash('md5'), sha256: createHash('sha256'), scanner: m.scan ? new JsonStreamScanner(m.scan) : null }));
  const block = new Uint8Array(m.buffer, 0, m.length);
  h.md5.update(block);
  h.sha256.update(block);
  let scan: ScanReport | null = null;
  if (h.scanner) {
    try {
      h.scanner.push(block);
      if (m.end) h.scanner.end();
    } catch {
      // Reported now, and never again: the body is refused.
      scan = h.scanner.report();
      h.scanner = null;
    }
    if (m.end && h.scanner) scan = h.scanner.report();
  }
  let digests: DigestReply['digests'] = null;
  if (m.end) {
    bodies.delete(m.body);
    digests = { md5: h.md5.digest('base64'), sha256: h.sha256.digest('hex') };
  }
  const reply: DigestReply = { seq: m.seq, buffer: m.buffer, digests, scan, lost: false };
  port!.postMessage(reply, [m.buffer]);
}

/** The scanner over the synthetic states in pieces of changing odd sizes, as the event loop's warm-up does. */
function warmUpScanner(): void {
  const samples = syntheticStates();
  for (let round = 0; round < 24; round++) {
    const sample = samples[round % samples.length]!;
    const size = 61 + round * 397;
    const scanner = new JsonStreamScanner(STATE_SCAN);
    for (let i = 0; i < sample.length; i += size) scanner.push(new Uint8Array(sample.buffer, sample.byteOffset + i, Math.min(size, sample.length - i)));
    scanner.end();
    scanner.report();
  }
}
