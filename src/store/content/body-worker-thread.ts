/**
 * The body worker's thread (body-worker.ts starts it). Two kinds of message, answered in order:
 * - inflate: the deflate chunks of one read batch, each straight into its place in the batch's output, with
 *   one reused zlib context; every chunk must decode to exactly its recorded size with all of its input
 *   consumed, and the first one that does not is reported (which one, and why), never passed on;
 * - digest: the next block of a body's bytes into its running MD5 and SHA-256, kept here by body until its
 *   last block, whose answer carries the digests; a later block of a body this thread never began is
 *   answered `lost` (the thread that began it died).
 * Every buffer goes back with its answer.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { inflateInto } from './chunk-codec.js';
import type { DigestReply, DigestRequest, InflateReply, InflateRequest } from './body-worker.js';

const port = parentPort;
if (!port) throw new Error('body-worker-thread.js runs as a worker thread');

const bodies = new Map<number, { md5: Hash; sha256: Hash }>();

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
    const lost: DigestReply = { seq: m.seq, buffer: m.buffer, digests: null, lost: true };
    port!.postMessage(lost, [m.buffer]);
    return;
  }
  if (!h) bodies.set(m.body, (h = { md5: createHash('md5'), sha256: createHash('sha256') }));
  const block = new Uint8Array(m.buffer, 0, m.length);
  h.md5.update(block);
  h.sha256.update(block);
  let digests: DigestReply['digests'] = null;
  if (m.end) {
    bodies.delete(m.body);
    digests = { md5: h.md5.digest('base64'), sha256: h.sha256.digest('hex') };
  }
  const reply: DigestReply = { seq: m.seq, buffer: m.buffer, digests, lost: false };
  port!.postMessage(reply, [m.buffer]);
}
