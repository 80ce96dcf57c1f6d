import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { startServer } from '../../test/support/server-process.js';
import { Client } from '../lib/client.js';
import { figure, type Figure } from '../lib/report.js';
import { progress } from '../lib/stats.js';
import { versionSeries } from '../lib/state-gen.js';

const KiB = 1024;

interface StorageRun {
  rawBytes: number;
  dbBytes: number;
  walBytes: number;
  ratio: number;
}

async function storageRun(bodies: Buffer[]): Promise<StorageRun> {
  const server = await startServer({ logLevel: 'warn' });
  const client = new Client(server.url);
  let rawBytes = 0;
  try {
    for (const body of bodies) {
      const res = await client.send('POST', '/state/bench/storage', body, { 'Content-Type': 'application/json' });
      if (res.status !== 200 || !res.body.toString().includes('"stored"')) throw new Error(`storage POST: ${res.status} ${res.body.toString().slice(0, 300)}`);
      rawBytes += body.length;
    }
  } finally {
    client.close();
    await server.stop(); // SIGTERM: the store closes, SQLite checkpoints the WAL into the .db
  }
  const size = (f: string) => (existsSync(join(server.dataDir, f)) ? statSync(join(server.dataDir, f)).size : 0);
  const dbBytes = size('statelock.db');
  const walBytes = size('statelock.db-wal');
  rmSync(server.dataDir, { recursive: true, force: true });
  return { rawBytes, dbBytes, walBytes, ratio: (dbBytes + walBytes) / rawBytes };
}

/**
 * 50 versions of a ~200 KiB state (same lineage, serial+1, 3 resources changing per version), written
 * unlocked; on-disk bytes after a clean stop ÷ raw bytes written. The same-run reference points are
 * computed on the very same bodies: gzip of each version alone, and brotli over all versions with a
 * 16 MiB window (compression + cross-version dedup).
 */
export async function storageSuite(runs: number, versions: number, targetKiB: number): Promise<{ figures: Figure[]; raw: unknown }> {
  const bodies = versionSeries(targetKiB * KiB, versions, 3);
  const rawBytes = bodies.reduce((n, b) => n + b.length, 0);
  progress(`storage: ${versions} versions of ${(bodies[0]!.length / KiB).toFixed(0)} KiB (${(rawBytes / KiB / KiB).toFixed(1)} MiB raw), ${runs} runs, fresh server each`);
  const results: StorageRun[] = [];
  for (let i = 0; i < runs; i++) results.push(await storageRun(bodies));
  const gzipBytes = bodies.reduce((n, b) => n + gzipSync(b, { level: 6 }).length, 0);
  const brotliBytes = brotliCompressSync(Buffer.concat(bodies), {
    params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_LGWIN]: 24, [constants.BROTLI_PARAM_SIZE_HINT]: rawBytes },
  }).length;
  const gzipRatio = gzipBytes / rawBytes;
  const brotliRatio = brotliBytes / rawBytes;
  return {
    figures: [
      figure({
        benchmark: `6. storage per version (${versions} × ${(bodies[0]!.length / KiB).toFixed(0)} KiB)`,
        metric: 'on-disk bytes ÷ raw bytes written',
        unit: '',
        better: 'lower',
        baselineName: 'the raw bytes written (1.00)',
        runs: { statelock: results.map((r) => r.ratio), baseline: results.map(() => 1) },
        note: `issue target ≤ 0.15: ${results.every((r) => r.ratio <= 0.15) ? 'met' : 'NOT met'} (no compression/dedup yet). Same bodies: gzip per version ${gzipRatio.toFixed(3)}, brotli across versions ${brotliRatio.toFixed(3)}`,
      }),
    ],
    raw: { versions, bodyBytes: bodies.map((b) => b.length), rawBytes, runs: results, gzipPerVersionBytes: gzipBytes, brotliAllVersionsBytes: brotliBytes, gzipRatio, brotliRatio },
  };
}
