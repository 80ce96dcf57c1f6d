import { rmSync } from 'node:fs';
import { startServer, tempDir } from '../../test/support/server-process.js';
import { startBaseline } from '../lib/processes.js';
import { figure, type Figure } from '../lib/report.js';
import { progress } from '../lib/stats.js';

/** Spawn → "listening" line on stdout, on a fresh (empty) data directory; baseline and statelock alternate. */
export async function startupSuite(runs: number): Promise<{ figures: Figure[]; raw: unknown }> {
  progress(`startup: ${runs} spawns per target, fresh data dir each`);
  const statelock: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = tempDir('statelock-bench-');
    let t0 = performance.now();
    const s = await startServer({ dataDir: dir, logLevel: 'warn' });
    statelock.push(performance.now() - t0);
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
    t0 = performance.now();
    const b = await startBaseline();
    baseline.push(performance.now() - t0);
    await b.stop();
  }
  return {
    figures: [
      figure({
        benchmark: '5. startup',
        metric: 'spawn → listening, fresh data dir',
        unit: 'ms',
        better: 'lower',
        baselineName: 'minimal Node http server (spawn → listening)',
        runs: { statelock, baseline },
        note: 'statelock creates and migrates the SQLite file',
      }),
    ],
    raw: { statelock, baseline },
  };
}
