/**
 * statelock benchmarks — `npm run bench` (or `node dist/bench/run.js` after `npx tsc`).
 *
 * Every figure is the median of several runs and is set against a baseline measured in the same run
 * on this machine; the table quotes statelock ÷ baseline. Traffic goes to 127.0.0.1 only; every loop is
 * bounded in count and in time. Writes bench/results/<YYYY-MM-DD>.json and .md and prints the table.
 * `--quick` runs a much shorter smoke version and writes to bench/results/tmp/ instead.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fsyncProbe } from './lib/disk.js';
import { packageVersion } from './lib/processes.js';
import { markdownTable, targetsTable, type Figure, type TargetCheck } from './lib/report.js';
import { progress } from './lib/stats.js';
import { contentionSuite, BACKOFF } from './suites/contention.js';
import { lockCycleSuite } from './suites/lock-cycle.js';
import { startupSuite } from './suites/startup.js';
import { scaleSuite } from './suites/scale.js';
import { storageSuite } from './suites/storage.js';
import { transferSuite } from './suites/transfer.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const quick = process.argv.includes('--quick');

const PLAN = quick
  ? {
      cycle: { runs: 3, seconds: 0.2, warmupSeconds: 0.1 },
      contention: { clients: 32, perClient: 2, runs: 3, capSeconds: 10 },
      transferSizes: [1, 10] as const,
      transfer: (_mib: number) => ({ runs: 1, repeats: 1 }),
      startupRuns: 3,
      storage: { runs: 3, versions: 10, targetKiB: 200 },
      scale: { keys: 10_000, versionsPerKey: 2, locked: 100, baselineKeys: 1_000, runs: 3, requestsPerRun: 20 },
    }
  : {
      cycle: { runs: 5, seconds: 2.0, warmupSeconds: 0.3 },
      contention: { clients: 32, perClient: 10, runs: 3, capSeconds: 20 },
      transferSizes: [1, 10, 100] as const,
      transfer: (mib: number) => (mib >= 100 ? { runs: 3, repeats: 1 } : { runs: 3, repeats: 3 }),
      startupRuns: 10,
      storage: { runs: 3, versions: 50, targetKiB: 200 },
      scale: { keys: 100_000, versionsPerKey: 10, locked: 1_000, baselineKeys: 1_000, runs: 3, requestsPerRun: 100 },
    };

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** What the server's SQLite store sets, read from its source (the bench changes nothing in src/). */
function storeSettings(): Record<string, string> {
  const src = readFileSync(join(ROOT, 'src/store/sqlite/sqlite-store.ts'), 'utf8');
  const pragma = (name: string) => new RegExp(`pragma\\('${name}\\s*=\\s*(\\w+)'\\)`).exec(src)?.[1] ?? 'unknown';
  // Group commits run with NORMAL and are answered after their own fdatasync of the WAL (wal-sync.ts).
  const walSync = /new WalSync\(/.test(src) ? 'group commits: WAL fdatasynced before the answer' : 'none';
  return { engine: 'sqlite (better-sqlite3)', journal_mode: pragma('journal_mode'), synchronous: pragma('synchronous'), walSync };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const cpu = cpus();
  const machine = {
    node: process.version,
    platform: `${process.platform} ${release()}`,
    arch: process.arch,
    cpuModel: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    totalMemMiB: Math.round(totalmem() / 1024 / 1024),
    loadAvgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
  const store = storeSettings();
  const versions = { dynalite: packageVersion('dynalite'), s3rver: packageVersion('s3rver') };
  progress(`statelock bench${quick ? ' (--quick)' : ''}: node ${machine.node}, ${machine.cpuModel}, ${machine.cores} cores, store ${store.journal_mode}/synchronous=${store.synchronous}; peers dynalite ${versions.dynalite}, s3rver ${versions.s3rver}`);

  const fsyncBefore = fsyncProbe();
  progress(`disk: 4 KiB append + fdatasync p50 ${fsyncBefore.p50Ms.toFixed(3)} ms, p99 ${fsyncBefore.p99Ms.toFixed(3)} ms`);
  const figures: Figure[] = [];
  const targets: TargetCheck[] = [];
  const raw: Record<string, unknown> = {};
  const suiteSeconds: Record<string, number> = {};
  const t0 = performance.now();
  const suite = async (name: string, run: () => Promise<{ figures: Figure[]; targets?: TargetCheck[]; raw: unknown }>) => {
    const s = performance.now();
    const out = await run();
    figures.push(...out.figures);
    targets.push(...(out.targets ?? []));
    raw[name] = out.raw;
    suiteSeconds[name] = Math.round((performance.now() - s) / 100) / 10;
    progress(`${name} done in ${suiteSeconds[name]!.toFixed(1)} s`);
  };
  await suite('lockCycle', () => lockCycleSuite(PLAN.cycle));
  await suite('contention', () => contentionSuite(PLAN.contention));
  await suite('transfer', () => transferSuite(PLAN.transferSizes, PLAN.transfer));
  await suite('startup', () => startupSuite(PLAN.startupRuns));
  await suite('storage', () => storageSuite(PLAN.storage.runs, PLAN.storage.versions, PLAN.storage.targetKiB));
  if (!process.argv.includes('--skip-scale')) await suite('scale', () => scaleSuite(PLAN.scale));
  const fsyncAfter = fsyncProbe();
  const loadAvgAtEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const totalSeconds = (performance.now() - t0) / 1000;
  const fsyncText = (f: { p50Ms: number; p99Ms: number }) => `p50 ${f.p50Ms.toFixed(2)} / p99 ${f.p99Ms.toFixed(2)} ms`;

  const date = startedAt.toISOString().slice(0, 10);
  const dir = join(ROOT, 'bench/results', quick ? 'tmp' : '');
  mkdirSync(dir, { recursive: true });
  // The issue's durability condition on the lock target: every acknowledged commit fsynced.
  targets.splice(2, 0, {
    target: 'durable: every acknowledged commit fsynced (concurrent commits may share an fsync, none skips it)',
    measured: `journal_mode=${store.journal_mode}, synchronous=${store.synchronous}, ${store.walSync} (read from src/store/sqlite/sqlite-store.ts)`,
    met: store.synchronous.toUpperCase() === 'FULL' && store.walSync !== 'none',
    row: 'header',
  });
  const table = markdownTable(figures);
  const header = [
    `# statelock bench — ${date}${quick ? ' (quick smoke run, not a measurement)' : ''}`,
    '',
    `Node ${machine.node} · ${machine.cpuModel} · ${machine.cores} cores · ${machine.platform} · load avg ${machine.loadAvgAtStart[0]} at start, ${loadAvgAtEnd[0]} at end · commit ${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', 'src') ? ' (src/ has uncommitted changes)' : ''} · total ${totalSeconds.toFixed(0)} s`,
    '',
    `Disk (os.tmpdir(), where the data dirs live): 4 KiB append + fdatasync ${fsyncText(fsyncBefore)} before the run, ${fsyncText(fsyncAfter)} after — the floor under every durable commit.`,
    '',
    `statelock: SQLite ${store.journal_mode} with synchronous=${store.synchronous}; ${store.walSync} (every acknowledged LOCK/UNLOCK/write is durable), log level warn, one process. ` +
      `Clients: one keep-alive connection each (raw sockets, bench/lib/client.ts), from one Node process. Ratio = median(statelock runs) ÷ median(baseline runs); ↑ higher is better, ↓ lower is better. ` +
      `Contention backoff: retry after ${BACKOFF.firstMs} ms doubling to a ${BACKOFF.capMs} ms cap (Terraform's -lock-timeout 1 s→16 s, scaled down 1000×).`,
    '',
    `Peers, each its own process on a fresh temp dir on the same disk, sent the same SigV4-signed requests as statelock: dynalite ${versions.dynalite} (DynamoDB on LevelDB, no fsync), s3rver ${versions.s3rver} (S3, one file per object, no fsync). ` +
      'statelock verifies every signature (`serve --aws-credentials`); neither peer does. The http backend runs without a token (anonymous on loopback), as a fresh server does.',
    '',
    '## Targets (the issue\'s, same run)',
    '',
    targetsTable(targets),
    '',
    '## All figures',
    '',
    '',
  ].join('\n');
  const md = `${header}${table}\n`;
  const json = {
    date,
    startedAt: startedAt.toISOString(),
    quick,
    totalSeconds: Math.round(totalSeconds),
    machine: { ...machine, loadAvgAtEnd, fsync4KiB: { before: fsyncBefore, after: fsyncAfter } },
    commit: git('rev-parse', 'HEAD'),
    srcDirty: git('status', '--porcelain', '--', 'src') !== '',
    statelock: { ...store, logLevel: 'warn' },
    peers: versions,
    suiteSeconds,
    plan: { ...PLAN, transfer: Object.fromEntries(PLAN.transferSizes.map((m) => [`${m}MiB`, PLAN.transfer(m)])), backoff: BACKOFF },
    targets,
    figures,
    raw,
  };
  writeFileSync(join(dir, `${date}.json`), JSON.stringify(json, null, 2) + '\n');
  writeFileSync(join(dir, `${date}.md`), md);
  process.stdout.write(`\n${md}\n`);
  progress(`wrote ${join(dir, `${date}.json`)} and .md (${totalSeconds.toFixed(0)} s)`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
