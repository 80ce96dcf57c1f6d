/**
 * What ceiling this machine and this stack put on durable lock cycles: statelock against the least a
 * durable Node + SQLite lock server can be (bench/ceiling-server.ts), with one thread and with the database
 * on a thread of its own, and against dynalite, all in the same run, rounds interleaved. 64 clients on
 * distinct keys doing LOCK + UNLOCK over the http backend (PutItem + DeleteItem for dynalite), as
 * `npm run bench` does. Prints each target's median cycles/s, its ratio to dynalite, and its server CPU
 * per cycle.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lock-ceiling.js [--rounds 5] [--clients 64] [--seconds 3]
 *
 * Not part of `npm run bench`: it answers one question (is 3× dynalite within reach of a Node server
 * here at all?), it does not measure a product.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TEST_KEY } from '../test/support/aws.js';
import { startServer } from '../test/support/server-process.js';
import { AwsClient, createLockTable } from './lib/aws-client.js';
import { startCeiling, startDynalite } from './lib/processes.js';
import { median } from './lib/stats.js';
import { cycles, type CycleRun } from './suites/lock-cycle.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    clients: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '3' },
  },
});
const rounds = Number(values.rounds);
const clients = Number(values.clients);
const seconds = Number(values.seconds);

interface Target {
  name: string;
  url: string;
  pid: number;
  door: 'http' | 'dynamodb';
  stop: () => void;
}

const dirs: string[] = [];
const freshDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'bench-ceiling-'));
  dirs.push(d);
  return d;
};

async function ceiling(mode: 'one-thread' | 'db-thread'): Promise<Target> {
  const c = await startCeiling(mode, freshDir());
  return { name: `ceiling, ${mode}`, url: c.url, pid: c.proc.pid!, door: 'http', stop: () => void c.stop() };
}

async function statelock(): Promise<Target> {
  const s = await startServer({ logLevel: 'warn', dataDir: freshDir() });
  return { name: 'statelock', url: s.url, pid: s.proc.pid!, door: 'http', stop: () => void s.stop() };
}

async function dynalite(): Promise<Target> {
  const d = await startDynalite(freshDir());
  const c = new AwsClient(d.url, TEST_KEY, 'dynamodb');
  await createLockTable(c);
  c.close();
  return { name: 'dynalite', url: d.url, pid: d.proc.pid!, door: 'dynamodb', stop: () => void d.stop() };
}

const targets = [await dynalite(), await statelock(), await ceiling('one-thread'), await ceiling('db-thread')];
const runs = new Map<string, CycleRun[]>(targets.map((t) => [t.name, []]));
try {
  for (const t of targets) await cycles(t.url, t.door === 'http' ? '/state/warm' : 'warm', clients, 0.5, 1e9, t.pid, t.door);
  for (let r = 0; r < rounds; r++) {
    // Interleaved, and the order turns each round: drift in the machine's speed falls on every target alike.
    const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
    for (const t of order) {
      const run = await cycles(t.url, t.door === 'http' ? `/state/r${r}` : `r${r}`, clients, seconds, 1e9, t.pid, t.door);
      runs.get(t.name)!.push(run);
      console.error(`round ${r} ${t.name}: ${run.cyclesPerSecond.toFixed(0)} cycles/s, server CPU ${run.serverCpuMsPerCycle.toFixed(3)} ms/cycle, busy ${(run.serverCpuUtil * 100).toFixed(0)}%, load generator ${(run.clientCpuUtil * 100).toFixed(0)}%`);
    }
  }
} finally {
  for (const t of targets) t.stop();
}
const base = median(runs.get('dynalite')!.map((x) => x.cyclesPerSecond));
console.log(`| target (${clients} clients, ${rounds} rounds × ${seconds} s) | cycles/s | ÷ dynalite | server CPU ms/cycle | server busy | load generator busy |`);
console.log('|---|---:|---:|---:|---:|---:|');
for (const t of targets) {
  const rs = runs.get(t.name)!;
  const cps = median(rs.map((x) => x.cyclesPerSecond));
  console.log(
    `| ${t.name} | ${cps.toFixed(0)} | ${(cps / base).toFixed(2)}× | ${median(rs.map((x) => x.serverCpuMsPerCycle)).toFixed(3)} | ${(median(rs.map((x) => x.serverCpuUtil)) * 100).toFixed(0)}% | ${(median(rs.map((x) => x.clientCpuUtil)) * 100).toFixed(0)}% |`,
  );
}
await new Promise((r) => setTimeout(r, 300));
for (const d of dirs) rmSync(d, { recursive: true, force: true });
