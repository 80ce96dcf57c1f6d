/**
 * Where a LOCK/UNLOCK costs the server CPU: starts `statelock serve` (data on real disk, or tmpfs with
 * `--tmpfs`), drives it with N keep-alive clients doing LOCK + UNLOCK on distinct keys (the bench's own
 * `cycles()`), and prints cycles/s and the server's CPU ms per cycle (from /proc/<pid>/stat), median of
 * the runs. `--prof DIR` starts the server under `--cpu-prof` (one profile per run of the whole script).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lock-cpu.js [--clients 64] [--seconds 3] [--runs 3] [--door http|dynamodb] [--tmpfs | --postgres] [--prof DIR [--prof-interval µs]]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TEST_KEY } from '../test/support/aws.js';
import { startPostgres } from '../test/support/postgres.js';
import { STATELOCK_BIN } from '../test/support/server-process.js';
import { AwsClient, createLockTable } from './lib/aws-client.js';
import { listeningUrl } from './lib/processes.js';
import { median } from './lib/stats.js';
import { cycles, type CycleRun } from './suites/lock-cycle.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    door: { type: 'string', default: 'http' },
    tmpfs: { type: 'boolean', default: false },
    postgres: { type: 'boolean', default: false },
    prof: { type: 'string' },
    'prof-interval': { type: 'string' },
  },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const runs = Number(values.runs);
const door = values.door === 'dynamodb' ? 'dynamodb' : 'http';

const dataDir = mkdtempSync(join(values.tmpfs ? '/dev/shm' : tmpdir(), 'statelock-lockcpu-'));
// --postgres: the PostgreSQL engine on a private throwaway cluster (test/support/postgres.ts, fsync on).
const pg = values.postgres ? await startPostgres() : null;
const nodeArgs = values.prof ? ['--cpu-prof', '--cpu-prof-dir', values.prof, ...(values['prof-interval'] ? ['--cpu-prof-interval', values['prof-interval']] : [])] : [];
const proc = spawn(
  process.execPath,
  [...nodeArgs, STATELOCK_BIN, 'serve', '--port', '0', '--data', dataDir, '--log-level', 'warn', '--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`, ...(pg ? ['--database', pg.url] : [])],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await listeningUrl(proc);
try {
  if (door === 'dynamodb') {
    const c = new AwsClient(url, TEST_KEY, 'dynamodb');
    await createLockTable(c);
    c.close();
  }
  const prefix = door === 'http' ? '/state/lockcpu' : 'lockcpu';
  await cycles(url, `${prefix}-warmup`, clients, 0.5, 1e9, proc.pid, door);
  const results: CycleRun[] = [];
  for (let r = 0; r < runs; r++) {
    const run = await cycles(url, `${prefix}-run${r}`, clients, seconds, 1e9, proc.pid, door);
    results.push(run);
    console.error(`run ${r}: ${run.cyclesPerSecond.toFixed(0)} cycles/s, server CPU ${run.serverCpuMsPerCycle.toFixed(3)} ms/cycle (event loop ${run.serverMainCpuMsPerCycle.toFixed(3)}), busy ${(run.serverCpuUtil * 100).toFixed(0)}%, p50 ${run.p50Ms.toFixed(2)} ms`);
  }
  const pick = (f: (r: CycleRun) => number) => median(results.map(f));
  console.log(
    JSON.stringify({ door, clients, engine: pg ? 'postgres' : 'sqlite', tmpfs: values.tmpfs, runs, seconds, cyclesPerSecond: Math.round(pick((r) => r.cyclesPerSecond)), serverCpuMsPerCycle: +pick((r) => r.serverCpuMsPerCycle).toFixed(3), eventLoopCpuMsPerCycle: +pick((r) => r.serverMainCpuMsPerCycle).toFixed(3), busy: +pick((r) => r.serverCpuUtil).toFixed(2), p50Ms: +pick((r) => r.p50Ms).toFixed(3) }),
  );
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
  await pg?.stop('fast');
}
