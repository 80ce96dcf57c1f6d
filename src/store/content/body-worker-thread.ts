/**
 * The inflate worker's thread (batch-inflater.ts starts it): inflates the deflate chunks of one read batch
 * at a time, each straight into its place in the batch's output, with one reused zlib context, and gives the
 * buffer back. Every chunk must decode to exactly its recorded size with all of its input consumed; the
 * first one that does not is reported (which one, and why), never passed on.
 */
import { parentPort } from 'node:worker_threads';
import { inflateInto } from './chunk-codec.js';
import type { InflateReply, InflateRequest } from './batch-inflater.js';

const port = parentPort;
if (!port) throw new Error('inflate-worker.js runs as a worker thread');

port.on('message', (m: InflateRequest) => {
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
  port.postMessage(reply, [m.buffer]);
});
