import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile } from './stats.js';

/**
 * The floor under every durable commit: append 4 KiB + fdatasync, `count` times, in the directory the
 * servers' data dirs live in (os.tmpdir()). Every acknowledged commit waits for an fdatasync of the WAL
 * (several concurrent ones may share it), so a lone LOCK or UNLOCK costs at least one of these.
 */
export function fsyncProbe(count = 200): { p50Ms: number; p99Ms: number } {
  const dir = mkdtempSync(join(tmpdir(), 'statelock-bench-fsync-'));
  const fd = openSync(join(dir, 'probe'), 'w');
  const page = Buffer.alloc(4096, 7);
  const lat: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      writeSync(fd, page);
      fdatasyncSync(fd);
      lat.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  return { p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99) };
}
