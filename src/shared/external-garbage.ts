import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Bytes of short-lived buffers outside V8's heap (request pieces, chunks fetched from SQLite, deflate
 * output) after which a young-generation collection is asked for.
 */
export const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

type Collect = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let collect: Collect | null | undefined;
let since = 0;

/**
 * Records `bytes` of buffers that are garbage as soon as a body's batch has been handled, and every
 * COLLECT_EVERY_BYTES asks V8 for a young-generation collection (a scavenge: ~1 ms), which frees them.
 *
 * Why: such buffers cost V8 a few dozen bytes of heap each, so nothing makes it collect them until their
 * outside-the-heap bytes pass its external-memory limit (64 MiB over the last collection). A 100 MiB read
 * or write left up to 64 MiB of dead buffers resident at its peak, most of the growth of the process (the
 * bench's VmHWM; bench/README.md). The collector is V8's `gc`, exposed at run time (`--expose-gc` given to
 * v8.setFlagsFromString, then taken from a fresh context); if that is refused, nothing is asked and memory
 * behaves as before.
 */
export function noteGarbage(bytes: number): void {
  since += bytes;
  if (since < COLLECT_EVERY_BYTES) return;
  since = 0;
  collector()?.({ type: 'minor' });
}

function collector(): Collect | null {
  if (collect !== undefined) return collect;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    collect = typeof gc === 'function' ? (gc as Collect) : null;
  } catch {
    collect = null;
  }
  return collect;
}
