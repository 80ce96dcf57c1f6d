/**
 * A transfer progress bar for large state uploads and downloads, drawn on stderr:
 *
 *   pushing  3.2 MiB / 6.0 MiB   53% [##########---------]  41.7 MiB/s
 *
 * Only on a TTY (a pipe or a file gets nothing) and only above {@link PROGRESS_THRESHOLD_BYTES};
 * redrawn in place with `\r` at most every {@link REDRAW_MS} ms, then drawn once at its final value and
 * erased, so that whatever the command prints next starts on a clean line.
 */

/** States larger than this show a bar (5 MiB). */
export const PROGRESS_THRESHOLD_BYTES = 5 * 1024 * 1024;
/** At most ~10 redraws a second. */
export const REDRAW_MS = 100;

export interface Progress {
  /** Whether a bar is drawn (stderr is a TTY and the transfer is large). */
  readonly active: boolean;
  /** `n` more bytes went through. */
  add(n: number): void;
  /** Draws the final frame and erases the bar. Idempotent. */
  done(): void;
}

const NO_PROGRESS: Progress = { active: false, add: () => undefined, done: () => undefined };

/** 512 B, 1.5 KiB, 6.0 MiB, 1.2 GiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** One frame of the bar, `columns` wide at most. Pure: the tests and {@link createProgress} share it. */
export function renderProgress(label: string, done: number, total: number, elapsedMs: number, columns = 80): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  const rate = elapsedMs > 0 ? `${(done / 1024 / 1024 / (elapsedMs / 1000)).toFixed(1)} MiB/s` : '-- MiB/s';
  const counts = `${formatBytes(done)} / ${formatBytes(total)}`;
  const fixed = `${label}  ${counts}  ${percent} []  ${rate}`;
  const barWidth = Math.max(10, Math.min(40, columns - 1 - fixed.length));
  const filled = Math.round(fraction * barWidth);
  return `${label}  ${counts}  ${percent} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]  ${rate}`;
}

/**
 * A bar for a transfer of `total` bytes on `stream`, or a no-op when `stream` is not a TTY or the
 * transfer is small. `now` is injectable for tests.
 */
export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr, now: () => number = () => Date.now()): Progress {
  if (!stream.isTTY || total <= PROGRESS_THRESHOLD_BYTES) return NO_PROGRESS;
  const started = now();
  let bytes = 0;
  let lastDraw = -Infinity;
  let finished = false;
  const draw = () => {
    lastDraw = now();
    stream.write(`\r${renderProgress(label, bytes, total, lastDraw - started, stream.columns || 80)}\u001b[K`);
  };
  return {
    active: true,
    add(n) {
      if (finished) return;
      bytes += n;
      if (now() - lastDraw >= REDRAW_MS) draw();
    },
    done() {
      if (finished) return;
      draw();
      finished = true;
      stream.write('\r\u001b[K');
    },
  };
}

/** Hands `bytes` to a reader (fetch uploading a request body) in chunks, reporting each chunk as it is pulled. */
export function countingStream(bytes: Uint8Array, onChunk: (n: number) => void, chunkSize = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (offset >= bytes.length) {
          controller.close();
          return;
        }
        const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + chunkSize));
        offset += chunk.length;
        controller.enqueue(chunk);
        onChunk(chunk.length);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Reads a response body to the end, reporting each chunk as it arrives. */
export async function readCounted(body: ReadableStream<Uint8Array> | null, onChunk: (n: number) => void): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    onChunk(value.length);
  }
  return Buffer.concat(chunks, size);
}
