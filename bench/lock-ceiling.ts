/**
 * What ceiling this machine and this stack put on durable lock cycles: statelock — its http backend and its
 * DynamoDB door — against the least a durable Node + SQLite lock server can be (bench/ceiling-server.ts), with
 * one thread and with the database on a thread of its own, and against dynalite, all in the same run, rounds
 * interleaved. 64 clients on distinct keys doing LOCK + UNLOCK over the http backend (PutItem + DeleteItem,
 * SigV4-signed, for the DynamoDB door and dynalite), as `npm run bench` does. Prints each target's median
 * cycles/s, its ratio to dynalite, its server CPU per cycle (all threads, and the event loop alone), and the
 * most event-loop CPU per cycle that 3× dynalite leaves a server whose requests all run on one event loop.
 *
 * More statelock builds may be named, each `<door>:<name>=<dir>[@VAR=value…]` (door `http` or `dynamodb`, the
 * build as lib/ab-builds.ts reads it): a copy patched to answer at some point of the request path shows what
 * the path costs up to there (bench/README.md, "The DynamoDB door against the event loop's bound").
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lock-ceiling.js [--rounds 5] [--clients 64] [--seconds 3] [<door>:<name>=<dir>[@VAR=value…] …]
 *
 * Not part of `npm run bench`: it answers one question (is 3× dynalite within reach of a Node server
 * here at all?), it does not measure a product.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TEST_KEY } from '../test/support/aws.js';
import { startServer } from '../test/support/server-process.js';
import { parseBuilds, startBuild, stopBuild } from './lib/ab-builds.js';
import { AwsClient, createLockTable } from './lib/aws-client.js';
import { cpuBudget } from './lib/cpu-budget.js';
import { startCeiling, startDynalite } from './lib/processes.js';
import { median } from './lib/stats.js';
import { cycles, DYNALITE_TARGET, type CycleRun } from './suites/lock-cycle.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '5' },
    clients: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '3' },
  },
});
const rounds = Number(values.rounds);
const clients = Number(values.clients);
const seconds = Number(values.seconds);

type Door = 'http' | 'dynamodb';

interface Target {
  name: string;
  url: string;
  pid: number;
  door: Door;
  stop: () => void;
}

/** statelock verifies every SigV4 signature with this key (the http backend stays anonymous on loopback). */
const AWS_CREDENTIALS = ['--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`];

const dirs: string[] = [];
const freshDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'bench-ceiling-'));
  dirs.push(d);
  return d;
};

async function withLockTable<T extends Target>(t: T): Promise<T> {
  if (t.door !== 'dynamodb') return t;
  const c = new AwsClient(t.url, TEST_KEY, 'dynamodb');
  await createLockTable(c);
  c.close();
  return t;
}

async function ceiling(mode: 'one-thread' | 'db-thread'): Promise<Target> {
  const c = await startCeiling(mode, freshDir());
  return { name: `ceiling, ${mode}`, url: c.url, pid: c.proc.pid!, door: 'http', stop: () => void c.stop() };
}

/** One statelock, measured through both doors (each door's runs are its own, so the CPU figures are too). */
async function statelock(): Promise<Target[]> {
  const s = await startServer({ logLevel: 'warn', dataDir: freshDir(), args: AWS_CREDENTIALS });
  const target = (door: Door, name: string, stop: () => void): Target => ({ name, url: s.url, pid: s.proc.pid!, door, stop });
  // One process: the http backend's target stops it.
  return [target('http', 'statelock, http backend', () => void s.stop()), await withLockTable(target('dynamodb', 'statelock, DynamoDB door', () => undefined))];
}

/** `<door>:<name>=<dir>[@VAR=value…]` */
async function build(spec: string): Promise<Target> {
  const colon = spec.indexOf(':');
  const door = spec.slice(0, colon);
  if (door !== 'http' && door !== 'dynamodb') throw new Error(`a build is <door>:<name>=<dir>[@VAR=value…] with door http or dynamodb, got ${spec}`);
  const [b] = parseBuilds([spec.slice(colon + 1)]);
  const s = await startBuild(b!, undefined, AWS_CREDENTIALS);
  return withLockTable({ name: b!.name, url: s.url, pid: s.proc.pid!, door, stop: () => void stopBuild(s) });
}

async function dynalite(): Promise<Target> {
  const d = await startDynalite(freshDir());
  return withLockTable({ name: 'dynalite', url: d.url, pid: d.proc.pid!, door: 'dynamodb', stop: () => void d.stop() });
}

const targets = [await dynalite(), ...(await statelock()), await ceiling('one-thread'), await ceiling('db-thread')];
for (const spec of positionals) targets.push(await build(spec));
const runs = new Map<string, CycleRun[]>(targets.map((t) => [t.name, []]));
const prefix = (t: Target, run: string) => (t.door === 'http' ? `/state/${run}` : run);
try {
  for (const t of targets) await cycles(t.url, prefix(t, 'warm'), clients, 0.5, 1e9, t.pid, t.door);
  for (let r = 0; r < rounds; r++) {
    // Interleaved, and the order turns each round: drift in the machine's speed falls on every target alike.
    const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
    for (const t of order) {
      const run = await cycles(t.url, prefix(t, `r${r}`), clients, seconds, 1e9, t.pid, t.door);
      runs.get(t.name)!.push(run);
      console.error(
        `round ${r} ${t.name}: ${run.cyclesPerSecond.toFixed(0)} cycles/s, server CPU ${run.serverCpuMsPerCycle.toFixed(3)} ms/cycle (event loop ${run.serverMainCpuMsPerCycle.toFixed(3)}), busy ${(run.serverCpuUtil * 100).toFixed(0)}%, load generator ${(run.clientCpuUtil * 100).toFixed(0)}%`,
      );
    }
  }
} finally {
  for (const t of targets) t.stop();
}
const base = median(runs.get('dynalite')!.map((x) => x.cyclesPerSecond));
console.log(`| target (${clients} clients, ${rounds} rounds × ${seconds} s) | cycles/s | ÷ dynalite | server CPU ms/cycle | of it the event loop | server busy | load generator busy |`);
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const t of targets) {
  const rs = runs.get(t.name)!;
  const m = (k: keyof CycleRun) => median(rs.map((x) => x[k]));
  const cps = m('cyclesPerSecond');
  console.log(
    `| ${t.name} | ${cps.toFixed(0)} | ${(cps / base).toFixed(2)}× | ${m('serverCpuMsPerCycle').toFixed(3)} | ${m('serverMainCpuMsPerCycle').toFixed(3)} | ${(m('serverCpuUtil') * 100).toFixed(0)}% | ${(m('clientCpuUtil') * 100).toFixed(0)}% |`,
  );
}
const bound = cpuBudget(DYNALITE_TARGET * base, cpus().length, 0).oneThreadMsPerOp;
console.log(`\n${DYNALITE_TARGET}× dynalite is ${(DYNALITE_TARGET * base).toFixed(0)} cycles/s: a server whose requests all run on one event loop may spend at most ${bound.toFixed(3)} ms of it per cycle.`);
await new Promise((r) => setTimeout(r, 300));
for (const d of dirs) rmSync(d, { recursive: true, force: true });
