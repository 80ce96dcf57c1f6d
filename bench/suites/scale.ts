import { rmSync } from 'node:fs';
import { startServer, tempDir, type RunningServer } from '../../test/support/server-process.js';
import { seedStates } from '../../test/support/seed-sqlite.js';
import { figure, type Figure } from '../lib/report.js';
import { median, percentile, progress } from '../lib/stats.js';

export interface ScalePlan {
  keys: number;
  versionsPerKey: number;
  locked: number;
  /** Keys of the small server measured in the same run (the baseline): the same requests, little data. */
  baselineKeys: number;
  runs: number;
  requestsPerRun: number;
}

/** The listings the dashboard and the CLI page through, as `[name, path]`. */
function requests(keys: number): Array<[string, string]> {
  const middle = `fleet/svc-${String(Math.floor(keys / 2)).padStart(6, '0')}/terraform.tfstate`;
  return [
    ['states, first page (100)', '/api/v1/states?limit=100'],
    ['states, a page in the middle (cursor)', `/api/v1/states?limit=100&after=${encodeURIComponent(middle)}`],
    ['states by prefix (≤100 keys) + count', `/api/v1/states?limit=100&count=true&prefix=${encodeURIComponent(middle.slice(0, 'fleet/svc-'.length + 4))}`],
    ['states, total of all (count=true)', '/api/v1/states?limit=1&count=true'],
    ['locks, every held lock (1 page of 1000)', '/api/v1/locks?limit=1000'],
    ["one key's versions", `/api/v1/versions/${middle}?limit=100`],
  ];
}

async function latencies(server: RunningServer, path: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(`${server.url}${path}`);
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`${path} → ${r.status}`);
    out.push(performance.now() - t);
  }
  return out;
}

/**
 * Listing latency at scale: a server on `keys` states with `versionsPerKey` versions each (1,000,000 versions at
 * the full plan) and `locked` held locks, against the same requests on a small server (the baseline, same run).
 * The data is seeded straight into the SQLite file; the measurement is through the real server process.
 */
export async function scaleSuite(plan: ScalePlan): Promise<{ figures: Figure[]; raw: unknown }> {
  const bigDir = tempDir('statelock-bench-scale-');
  const smallDir = tempDir('statelock-bench-scale-');
  const t = performance.now();
  await seedStates(bigDir, plan.keys, { versionsPerKey: plan.versionsPerKey, locked: plan.locked });
  const seedSeconds = (performance.now() - t) / 1000;
  progress(`scale: seeded ${plan.keys.toLocaleString('en')} keys × ${plan.versionsPerKey} versions, ${plan.locked} locks in ${seedSeconds.toFixed(1)} s`);
  await seedStates(smallDir, plan.baselineKeys, { versionsPerKey: 1, locked: Math.min(plan.locked, plan.baselineKeys) });
  const big = await startServer({ dataDir: bigDir });
  const small = await startServer({ dataDir: smallDir });
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = { seedSeconds };
  try {
    const bigRequests = requests(plan.keys);
    const smallRequests = requests(plan.baselineKeys);
    for (const [i, [name, path]] of bigRequests.entries()) {
      const runs = { statelock: [] as number[], baseline: [] as number[] };
      const p99 = { statelock: [] as number[], baseline: [] as number[] };
      await latencies(big, path, 20); // warm the page cache
      await latencies(small, smallRequests[i]![1], 20);
      for (let r = 0; r < plan.runs; r++) {
        const a = await latencies(big, path, plan.requestsPerRun);
        const b = await latencies(small, smallRequests[i]![1], plan.requestsPerRun);
        runs.statelock.push(median(a));
        runs.baseline.push(median(b));
        p99.statelock.push(percentile(a, 99));
        p99.baseline.push(percentile(b, 99));
      }
      raw[name] = { path, p50: runs, p99 };
      figures.push(
        figure({
          benchmark: '7. scale',
          metric: `${name}: p50 at ${plan.keys.toLocaleString('en')} keys / ${(plan.keys * plan.versionsPerKey).toLocaleString('en')} versions`,
          unit: 'ms',
          better: 'lower',
          baselineName: `the same request on ${plan.baselineKeys.toLocaleString('en')} keys / ${plan.baselineKeys.toLocaleString('en')} versions`,
          runs,
          note: `p99 ${median(p99.statelock).toFixed(2)} ms vs ${median(p99.baseline).toFixed(2)} ms`,
        }),
      );
    }
  } finally {
    await big.stop();
    await small.stop();
    rmSync(bigDir, { recursive: true, force: true });
    rmSync(smallDir, { recursive: true, force: true });
  }
  return { figures, raw };
}
