import { StateHeaderReader } from '../state/state-file.js';
import { deflateRawSync } from 'node:zlib';
import { Chunker } from '../store/content/chunker.js';
import { decodeChunk } from '../store/content/chunk-codec.js';
import type { StoredChunk } from '../store/store.js';
import { syntheticStates } from '../state/synthetic-states.js';

/**
 * Runs the per-byte code of a state write (the JSON scanner behind StateHeaderReader, the chunker) and of
 * a read (decodeChunk) over a small synthetic state at start-up, so V8 compiles them with complete type
 * feedback before the first real body arrives.
 *
 * Why: both are hot loops with many rarely taken branches (a literal as a top-level value, an escape split
 * between two pieces …). Run cold, V8 optimizes them once they are hot, then meets a branch it has no
 * feedback for, throws the optimized code away and interprets again until it re-optimizes: measured on the
 * bench's 1 MiB state in a fresh process, the scan ran at ~25 ms/MiB for its first 3 MiB and at ~1.3 ms/MiB
 * afterwards. That was most of the first few writes' time after every restart (bench/README.md). This costs
 * ~30 ms of CPU once, after the server listens, in slices that yield to requests in between.
 */
export function warmUpBodyPaths(): Promise<{ rounds: number; completed: number }> {
  const samples = syntheticStates();
  const rounds = 24;
  let completed = 0;
  return new Promise((resolve) => {
    let round = 0;
    let stored: StoredChunk[] = [];
    const step = () => {
      const sample = samples[round % samples.length]!;
      try {
        // Pieces of changing odd sizes: values, escapes and UTF-8 sequences split at every kind of place.
        const size = 61 + round * 397;
        const reader = new StateHeaderReader();
        for (let i = 0; i < sample.length; i += size) reader.push(sample.subarray(i, i + size));
        reader.end();
        const chunker = new Chunker({ min: 256, avg: 1024, max: 4096 });
        const chunks: Buffer[] = [];
        for (let i = 0; i < sample.length; i += size) chunks.push(...chunker.push(sample.subarray(i, i + size)));
        chunks.push(...chunker.end());
        if (round < samples.length) stored.push(...chunks.map((c, n) => ({ id: `warm-up-${n}`, size: c.length, codec: 'deflate' as const, data: deflateRawSync(c) })));
        for (const c of stored) decodeChunk(c);
        completed++;
      } catch {
        // A warm-up never fails the server (a test checks that every round completes).
      }
      if (++round < rounds) setImmediate(step);
      else {
        stored = [];
        resolve({ rounds, completed });
      }
    };
    setImmediate(step);
  });
}
