import { rmSync } from 'node:fs';
import pg from 'pg';
import { pgAvailable, startPostgres, type PgCluster } from '../../test/support/postgres.js';
import { startServer, tempDir, type RunningServer } from '../../test/support/server-process.js';
import { seedStatesPostgres } from '../../test/support/seed-postgres.js';
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

/** A big and a small server on one engine: seeded, started, and how to stop them and drop their data. */
interface EnginePair {
  big: RunningServer;
  small: RunningServer;
  seedSeconds: number;
  stop(): Promise<void>;
}

/** One side of a pair: its server's data directory, how to seed its data, and the server's extra arguments. */
interface Side {
  dataDir: string;
  seed(keys: number, opts: { versionsPerKey: number; locked: number }): Promise<unknown>;
  args: string[];
}

/** Seeds the big side (timed) and the small one, then starts a server on each. */
async function seededPair(plan: ScalePlan, big: Side, small: Side): Promise<EnginePair> {
  const t = performance.now();
  await big.seed(plan.keys, { versionsPerKey: plan.versionsPerKey, locked: plan.locked });
  const seedSeconds = (performance.now() - t) / 1000;
  await small.seed(plan.baselineKeys, { versionsPerKey: 1, locked: Math.min(plan.locked, plan.baselineKeys) });
  const servers = { big: await startServer({ dataDir: big.dataDir, args: big.args }), small: await startServer({ dataDir: small.dataDir, args: small.args }) };
  return {
    ...servers,
    seedSeconds,
    async stop() {
      await servers.big.stop();
      await servers.small.stop();
      for (const side of [big, small]) rmSync(side.dataDir, { recursive: true, force: true });
    },
  };
}

/** Both data directories seeded straight into their SQLite files (seed-sqlite.ts), then served. */
function sqlitePair(plan: ScalePlan): Promise<EnginePair> {
  const side = (): Side => {
    const dataDir = tempDir('statelock-bench-scale-');
    return { dataDir, seed: (keys, opts) => seedStates(dataDir, keys, opts), args: [] };
  };
  return seededPair(plan, side(), side());
}

/** `url` with its database name replaced. */
function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/**
 * The same rows in two databases of one private cluster (seed-postgres.ts builds them inside PostgreSQL),
 * each served by its own statelock process with `--database`.
 */
async function postgresPair(plan: ScalePlan, cluster: PgCluster): Promise<EnginePair> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  try {
    for (const db of ['bench_scale_big', 'bench_scale_small']) await admin.query(`CREATE DATABASE ${db}`);
  } finally {
    await admin.end();
  }
  const side = (db: string): Side => {
    const url = withDatabase(cluster.url, db);
    return { dataDir: tempDir('statelock-bench-scale-pg-'), seed: (keys, opts) => seedStatesPostgres(url, keys, opts), args: ['--database', url] };
  };
  return seededPair(plan, side('bench_scale_big'), side('bench_scale_small'));
}

/** Each request on the big server against the same on the small one, `plan.runs` interleaved runs each. */
async function measure(pair: EnginePair, plan: ScalePlan, benchmark: string): Promise<{ figures: Figure[]; raw: Record<string, unknown>; p50: Map<string, number> }> {
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = {};
  const p50 = new Map<string, number>();
  const bigRequests = requests(plan.keys);
  const smallRequests = requests(plan.baselineKeys);
  for (const [i, [name, path]] of bigRequests.entries()) {
    const runs = { statelock: [] as number[], baseline: [] as number[] };
    const p99 = { statelock: [] as number[], baseline: [] as number[] };
    await latencies(pair.big, path, 20); // warm the page cache
    await latencies(pair.small, smallRequests[i]![1], 20);
    for (let r = 0; r < plan.runs; r++) {
      const a = await latencies(pair.big, path, plan.requestsPerRun);
      const b = await latencies(pair.small, smallRequests[i]![1], plan.requestsPerRun);
      runs.statelock.push(median(a));
      runs.baseline.push(median(b));
      p99.statelock.push(percentile(a, 99));
      p99.baseline.push(percentile(b, 99));
    }
    raw[name] = { path, p50: runs, p99 };
    p50.set(name, median(runs.statelock));
    figures.push(
      figure({
        benchmark,
        metric: `${name}: p50 at ${plan.keys.toLocaleString('en')} keys / ${(plan.keys * plan.versionsPerKey).toLocaleString('en')} versions`,
        unit: 'ms',
        better: 'lower',
        baselineName: `the same request on ${plan.baselineKeys.toLocaleString('en')} keys / ${plan.baselineKeys.toLocaleString('en')} versions`,
        runs,
        note: `p99 ${median(p99.statelock).toFixed(2)} ms vs ${median(p99.baseline).toFixed(2)} ms`,
      }),
    );
  }
  return { figures, raw, p50 };
}

/**
 * Listing latency at scale: a server on `keys` states with `versionsPerKey` versions each (1,000,000 versions at
 * the full plan) and `locked` held locks, against the same requests on a small server (the baseline, same run) —
 * on the SQLite engine, then on the PostgreSQL engine (a private cluster; skipped where PostgreSQL is not
 * installed). The data is seeded straight into the engine; the measurement is through the real server process.
 */
export async function scaleSuite(plan: ScalePlan): Promise<{ figures: Figure[]; raw: unknown }> {
  const versions = (plan.keys * plan.versionsPerKey).toLocaleString('en');
  const sqlite = await sqlitePair(plan);
  progress(`scale: seeded ${plan.keys.toLocaleString('en')} keys × ${plan.versionsPerKey} versions, ${plan.locked} locks into SQLite in ${sqlite.seedSeconds.toFixed(1)} s`);
  let onSqlite: Awaited<ReturnType<typeof measure>>;
  try {
    onSqlite = await measure(sqlite, plan, '7. scale');
  } finally {
    await sqlite.stop();
  }
  const figures = [...onSqlite.figures];
  const raw: Record<string, unknown> = { seedSeconds: sqlite.seedSeconds, ...onSqlite.raw };
  if (!pgAvailable()) {
    progress('scale: PostgreSQL not installed, its rows left out');
    return { figures, raw };
  }
  const cluster = await startPostgres();
  try {
    const pair = await postgresPair(plan, cluster);
    progress(`scale: seeded the same ${versions} versions into PostgreSQL in ${pair.seedSeconds.toFixed(1)} s`);
    try {
      const onPg = await measure(pair, plan, '7. scale, PostgreSQL engine');
      // The note also sets each PostgreSQL p50 against SQLite's at the same scale, same run.
      for (const f of onPg.figures) {
        const name = f.metric.slice(0, f.metric.indexOf(': p50 at'));
        const onSqliteMs = onSqlite.p50.get(name);
        if (onSqliteMs) f.note = `${f.note}; ÷ SQLite at the same scale ${(onPg.p50.get(name)! / onSqliteMs).toFixed(2)}×`;
      }
      figures.push(...onPg.figures);
      raw.postgres = { seedSeconds: pair.seedSeconds, ...onPg.raw };
    } finally {
      await pair.stop();
    }
  } finally {
    await cluster.stop('fast');
    rmSync(cluster.dataDir, { recursive: true, force: true });
  }
  return { figures, raw };
}
