import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { TEST_KEY } from '../../test/support/aws.js';
import { lockBody } from '../../test/support/http.js';
import { startServer } from '../../test/support/server-process.js';
import { AwsClient, createLockTable, LOCK_TABLE } from '../lib/aws-client.js';
import { Client } from '../lib/client.js';
import { cpuBudget, describeBudget } from '../lib/cpu-budget.js';
import { fsyncProbe } from '../lib/disk.js';
import { describeFloor } from '../lib/latency-floor.js';
import { cpuMs, mainThreadCpuMs, packageVersion, startBaseline, startDynalite } from '../lib/processes.js';
import { figure, type Figure, type TargetCheck } from '../lib/report.js';
import { median, percentile, progress, roundRatios } from '../lib/stats.js';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { pgAvailable, startPostgres } from '../../test/support/postgres.js';

export interface CycleRun {
  cycles: number;
  seconds: number;
  cyclesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  lockP50Ms: number;
  unlockP50Ms: number;
  /** Server CPU (user + system) per cycle, and the server's CPU utilisation during the run (1 = one core). */
  serverCpuMsPerCycle: number;
  serverCpuUtil: number;
  /** The server's main thread alone (a Node server's event loop), per cycle. */
  serverMainCpuMsPerCycle: number;
  /** The bench process's own CPU utilisation (the load generator; 1 = one core): near 1 means it, not the server, was the limit. */
  clientCpuUtil: number;
  /** The load generator's CPU per cycle. */
  clientCpuMsPerCycle: number;
}

/** One client's way of taking and releasing its lock; each throws on anything but success. */
export interface Locker {
  lock(): Promise<void>;
  unlock(): Promise<void>;
  close(): void;
}

/** Client `i` of the http backend: LOCK then UNLOCK on `<prefix>/client-<i>`, a fresh lock-info body (new ID) per cycle. */
export function httpLocker(url: string, prefix: string, i: number): Locker {
  const c = new Client(url);
  const path = `${prefix}/client-${i}`;
  let body = '';
  return {
    async lock() {
      body = lockBody(randomUUID(), 'OperationTypeApply', `bench-${i}@127.0.0.1`, new Date().toISOString());
      const res = await c.send('LOCK', path, body);
      if (res.status !== 200) throw new Error(`LOCK ${path}: ${res.status} ${res.body.toString()}`);
    },
    async unlock() {
      const res = await c.send('UNLOCK', path, body);
      if (res.status !== 200) throw new Error(`UNLOCK ${path}: ${res.status} ${res.body.toString()}`);
    },
    close: () => c.close(),
  };
}

/**
 * Client `i` of a DynamoDB lock table, exactly as Terraform's S3 backend locks: PutItem
 * `{LockID, Info}` with `ConditionExpression: attribute_not_exists(LockID)`, then DeleteItem by LockID
 * (Terraform sends no condition on the delete). SigV4-signed with a real signature.
 */
export function dynamoLocker(url: string, prefix: string, i: number): Locker {
  const c = new AwsClient(url, TEST_KEY, 'dynamodb');
  const lockId = `${prefix}/client-${i}/terraform.tfstate`;
  const Key = { LockID: { S: lockId } };
  return {
    async lock() {
      const info = JSON.stringify({ ID: randomUUID(), Operation: 'OperationTypeApply', Info: '', Who: `bench-${i}@127.0.0.1`, Version: '1.15.0', Created: new Date().toISOString(), Path: lockId });
      const res = await c.dynamo('PutItem', { TableName: LOCK_TABLE, Item: { ...Key, Info: { S: info } }, ConditionExpression: 'attribute_not_exists(LockID)' });
      if (res.status !== 200) throw new Error(`PutItem ${lockId}: ${res.status} ${res.body.toString()}`);
    },
    async unlock() {
      const res = await c.dynamo('DeleteItem', { TableName: LOCK_TABLE, Key });
      if (res.status !== 200) throw new Error(`DeleteItem ${lockId}: ${res.status} ${res.body.toString()}`);
    },
    close: () => c.close(),
  };
}

type Door = 'http' | 'dynamodb';
const LOCKERS: Record<Door, (url: string, prefix: string, i: number) => Locker> = { http: httpLocker, dynamodb: dynamoLocker };

/**
 * `clients` clients, each on its own connection and its own key, each taking then releasing its lock
 * through `door`, until `seconds` pass or `maxCycles` cycles are done in all.
 */
export async function cycles(url: string, prefix: string, clients: number, seconds: number, maxCycles: number, serverPid?: number, door: Door = 'http'): Promise<CycleRun> {
  const conns = Array.from({ length: clients }, (_, i) => LOCKERS[door](url, prefix, i));
  const latencies: number[] = [];
  const lockLat: number[] = [];
  const unlockLat: number[] = [];
  let done = 0;
  const cpu0 = serverPid ? cpuMs(serverPid) : NaN;
  const main0 = serverPid ? mainThreadCpuMs(serverPid) : NaN;
  const client0 = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    conns.map(async (c) => {
      while (performance.now() < deadline && done < maxCycles) {
        const t0 = performance.now();
        await c.lock();
        const t1 = performance.now();
        await c.unlock();
        const t2 = performance.now();
        latencies.push(t2 - t0);
        lockLat.push(t1 - t0);
        unlockLat.push(t2 - t1);
        done++;
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  const serverCpu = serverPid ? cpuMs(serverPid) - cpu0 : NaN;
  const serverMainCpu = serverPid ? mainThreadCpuMs(serverPid) - main0 : NaN;
  const client = process.cpuUsage(client0);
  conns.forEach((c) => c.close());
  return {
    cycles: done,
    seconds: secs,
    cyclesPerSecond: done / secs,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    lockP50Ms: percentile(lockLat, 50),
    unlockP50Ms: percentile(unlockLat, 50),
    serverCpuMsPerCycle: serverCpu / done,
    serverCpuUtil: serverCpu / 1000 / secs,
    serverMainCpuMsPerCycle: serverMainCpu / done,
    clientCpuUtil: (client.user + client.system) / 1e6 / secs,
    clientCpuMsPerCycle: (client.user + client.system) / 1000 / done,
  };
}

export const CLIENT_COUNTS = [1, 16, 64] as const;

/** A tmpfs to put a diagnostic statelock's data on (fsync is a no-op there), or null. */
function tmpfsDir(): string | null {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return mkdtempSync('/dev/shm/statelock-bench-');
  } catch {
    return null;
  }
}

type Target = 'statelock' | 'baseline' | 'tmpfs' | 'postgres' | 'dynamodb' | 'pgDynamodb' | 'dynalite';

const plural = (n: number) => `${n} client${n > 1 ? 's' : ''}`;
const NODE_BASELINE = 'minimal Node http server (child process)';

/** The issue's throughput target: statelock's durable lock cycles/s at 64 clients ≥ 3× dynalite's. */
export const DYNALITE_TARGET = 3;

export async function lockCycleSuite(opts: { runs: number; seconds: number; warmupSeconds: number }): Promise<{ figures: Figure[]; targets: TargetCheck[]; raw: unknown }> {
  // One statelock serves both the http backend and the DynamoDB door; --aws-credentials makes it verify
  // every SigV4 signature (the http backend stays anonymous on loopback: no token exists).
  const statelock = await startServer({ logLevel: 'warn', args: ['--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`] });
  const baseline = await startBaseline();
  // The peer: dynalite on LevelDB in a fresh temp dir on the same disk as statelock's data.
  const dynalite = await startDynalite();
  const dynaliteName = `dynalite ${packageVersion('dynalite')} (LevelDB on disk, no fsync; same signed requests)`;
  // Diagnostic only: the same server with its data on tmpfs, where fsync costs nothing (NOT durable).
  const shm = tmpfsDir();
  const onTmpfs = shm ? await startServer({ logLevel: 'warn', dataDir: shm }) : null;
  // The PostgreSQL engine (a private cluster on this machine, fsync on), when PostgreSQL is installed.
  const pg = pgAvailable() ? await startPostgres() : null;
  // It serves both doors too, verifying signatures as the SQLite one does.
  const onPostgres = pg ? await startServer({ logLevel: 'warn', args: ['--database', pg.url, '--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`] }) : null;
  for (const url of [statelock.url, dynalite.url, ...(onPostgres ? [onPostgres.url] : [])]) {
    const c = new AwsClient(url, TEST_KEY, 'dynamodb');
    await createLockTable(c);
    c.close();
  }
  const raw: Record<string, Record<Target, CycleRun[]>> = {};
  const fsyncAroundOne: Array<{ p50Ms: number; p99Ms: number }> = [];
  const figures: Figure[] = [];
  const targets: TargetCheck[] = [];
  try {
    for (const n of CLIENT_COUNTS) {
      const targetsOf: Partial<Record<Target, { url: string; pid: number; door: Door; prefix: string }>> = {
        statelock: { url: statelock.url, pid: statelock.proc.pid!, door: 'http', prefix: `/state/bench/cycle-${n}` },
        baseline: { url: baseline.url, pid: baseline.proc.pid!, door: 'http', prefix: `/state/bench/cycle-${n}` },
        ...(onTmpfs ? { tmpfs: { url: onTmpfs.url, pid: onTmpfs.proc.pid!, door: 'http' as const, prefix: `/state/bench/cycle-${n}` } } : {}),
        ...(onPostgres ? { postgres: { url: onPostgres.url, pid: onPostgres.proc.pid!, door: 'http' as const, prefix: `/state/bench/cycle-${n}` } } : {}),
        dynamodb: { url: statelock.url, pid: statelock.proc.pid!, door: 'dynamodb', prefix: `bench/ddb-cycle-${n}` },
        ...(onPostgres ? { pgDynamodb: { url: onPostgres.url, pid: onPostgres.proc.pid!, door: 'dynamodb' as const, prefix: `bench/ddb-cycle-${n}` } } : {}),
        dynalite: { url: dynalite.url, pid: dynalite.proc.pid!, door: 'dynamodb', prefix: `bench/ddb-cycle-${n}` },
      };
      const names = Object.keys(targetsOf) as Target[];
      progress(`lock cycle: ${plural(n)}, ${opts.runs} runs × ${opts.seconds}s per target (${names.join(', ')})`);
      for (const t of names) {
        const x = targetsOf[t]!;
        await cycles(x.url, `${x.prefix}-warmup`, n, opts.warmupSeconds, 1e6, undefined, x.door);
      }
      const r: Record<Target, CycleRun[]> = (raw[n] = { statelock: [], baseline: [], tmpfs: [], postgres: [], dynamodb: [], pgDynamodb: [], dynalite: [] });
      // The single-client target's floor rests on the disk as it is during those runs: probed before and after them.
      if (n === 1) fsyncAroundOne.push(fsyncProbe());
      for (let run = 0; run < opts.runs; run++) {
        // Rotate which target goes first, so slow drift on this shared machine hits all alike.
        const order = names.map((_, i) => names[(i + run) % names.length]!);
        for (const t of order) {
          const x = targetsOf[t]!;
          r[t].push(await cycles(x.url, x.prefix, n, opts.seconds, 1_000_000, x.pid, x.door));
        }
      }
      if (n === 1) fsyncAroundOne.push(fsyncProbe());
      const vs = (a: Target, b: Target) => (k: keyof CycleRun) => ({ statelock: r[a].map((x) => x[k]), baseline: r[b].map((x) => x[k]) });
      const pick = vs('statelock', 'baseline');
      const cpuNote = (a: Target, b: Target, names: [string, string] = ['statelock', 'baseline']) => {
        const cpu = vs(a, b)('serverCpuMsPerCycle');
        const util = vs(a, b)('serverCpuUtil');
        const client = vs(a, b)('clientCpuUtil');
        return `server CPU per cycle ${median(cpu.statelock).toFixed(2)} vs ${median(cpu.baseline).toFixed(2)} ms; server busy ${(median(util.statelock) * 100).toFixed(0)}% vs ${(median(util.baseline) * 100).toFixed(0)}% of a core (${names[0]} vs ${names[1]}); load generator busy ${(median(client.statelock) * 100).toFixed(0)}% vs ${(median(client.baseline) * 100).toFixed(0)}%`;
      };
      const base = { benchmark: `1. lock cycle, ${plural(n)}`, baselineName: NODE_BASELINE };
      figures.push(figure({ ...base, metric: 'cycles/s', unit: '/s', better: 'higher', runs: pick('cyclesPerSecond'), note: cpuNote('statelock', 'baseline') }));
      figures.push(figure({ ...base, metric: 'cycle p50', unit: 'ms', better: 'lower', runs: pick('p50Ms') }));
      figures.push(figure({ ...base, metric: 'cycle p99', unit: 'ms', better: 'lower', runs: pick('p99Ms') }));
      if (r.tmpfs.length) {
        figures.push(
          figure({
            ...base,
            metric: 'cycles/s, data on tmpfs (diagnostic)',
            unit: '/s',
            better: 'higher',
            runs: vs('tmpfs', 'baseline')('cyclesPerSecond'),
            note: `NOT durable: fsync is free on tmpfs — shows what the disk costs. p50 ${median(r.tmpfs.map((x) => x.p50Ms)).toFixed(2)} ms, server CPU per cycle ${median(r.tmpfs.map((x) => x.serverCpuMsPerCycle)).toFixed(2)} ms`,
          }),
        );
      }
      const rate = (t: Target) => median(r[t].map((x) => x.cyclesPerSecond));
      /** A door on PostgreSQL against the same door on SQLite: cycles/s (its note set against `peers` too), p50, p99. */
      const onPostgresRows = (t: Target, onSqlite: Target, benchmark: string, baselineName: string, peers: Array<[string, Target]>) => {
        const rows = { benchmark, baselineName };
        const pgPick = vs(t, onSqlite);
        const against = peers.map(([name, p]) => `vs ${name} ${(rate(t) / rate(p)).toFixed(2)}×; `).join('');
        figures.push(
          figure({
            ...rows,
            metric: 'cycles/s',
            unit: '/s',
            better: 'higher',
            runs: pgPick('cyclesPerSecond'),
            note: `durable on both (PostgreSQL fsync on, one local cluster); ${against}statelock server CPU per cycle ${median(r[t].map((x) => x.serverCpuMsPerCycle)).toFixed(2)} ms`,
          }),
        );
        figures.push(figure({ ...rows, metric: 'cycle p50', unit: 'ms', better: 'lower', runs: pgPick('p50Ms') }));
        figures.push(figure({ ...rows, metric: 'cycle p99', unit: 'ms', better: 'lower', runs: pgPick('p99Ms') }));
      };
      if (r.postgres.length) {
        onPostgresRows('postgres', 'statelock', `1. lock cycle, ${plural(n)}, PostgreSQL engine`, 'statelock on SQLite (same run)', [
          ['the bare Node baseline', 'baseline'],
          ['dynalite', 'dynalite'],
        ]);
      }
      // The peer: the DynamoDB door against dynalite (same requests), and the http backend against dynalite.
      const ddb = { benchmark: `1. lock cycle, ${plural(n)}, DynamoDB door (PutItem + DeleteItem)`, baselineName: dynaliteName };
      const ddbPick = vs('dynamodb', 'dynalite');
      const ddbRate = figure({ ...ddb, metric: 'cycles/s', unit: '/s', better: 'higher', runs: ddbPick('cyclesPerSecond'), note: `statelock durable (every answer after its fdatasync), dynalite not; ${cpuNote('dynamodb', 'dynalite', ['statelock', 'dynalite'])}` });
      figures.push(ddbRate);
      figures.push(figure({ ...ddb, metric: 'cycle p50', unit: 'ms', better: 'lower', runs: ddbPick('p50Ms') }));
      figures.push(figure({ ...ddb, metric: 'cycle p99', unit: 'ms', better: 'lower', runs: ddbPick('p99Ms') }));
      if (r.pgDynamodb.length) {
        onPostgresRows('pgDynamodb', 'dynamodb', `1. lock cycle, ${plural(n)}, DynamoDB door, PostgreSQL engine`, "statelock's DynamoDB door on SQLite (same run)", [['dynalite', 'dynalite']]);
      }
      const httpVsDynalite = figure({
        benchmark: `1. lock cycle, ${plural(n)}, http backend vs dynalite`,
        metric: 'cycles/s',
        unit: '/s',
        better: 'higher',
        baselineName: dynaliteName,
        runs: vs('statelock', 'dynalite')('cyclesPerSecond'),
        note: `statelock: LOCK + UNLOCK over the http backend (durable); dynalite: PutItem + DeleteItem. p50 ${median(r.statelock.map((x) => x.p50Ms)).toFixed(2)} vs ${median(r.dynalite.map((x) => x.p50Ms)).toFixed(2)} ms`,
      });
      figures.push(httpVsDynalite);
      if (n === 64) {
        // What the target asks of this machine's CPU, from this run's own figures (bench/lib/cpu-budget.ts).
        const needs = (t: Target) => {
          const rate = DYNALITE_TARGET * median(r.dynalite.map((x) => x.cyclesPerSecond));
          const generator = median(r[t].map((x) => x.clientCpuMsPerCycle));
          if (!(rate > 0) || !Number.isFinite(generator)) return 'not computable from this run (no cycles measured)';
          const budget = cpuBudget(rate, cpus().length, generator);
          const measured = { allThreadsMsPerOp: median(r[t].map((x) => x.serverCpuMsPerCycle)), mainThreadMsPerOp: median(r[t].map((x) => x.serverMainCpuMsPerCycle)) };
          return describeBudget(budget, measured, { op: 'cycle', rate: `${DYNALITE_TARGET}× dynalite (${Math.round(rate)} cycles/s)` });
        };
        // The machine's speed drifts between rounds; a ratio within one round is the steadier sight of it.
        const perRound = (f: Figure) => {
          const r = roundRatios(f.runs.statelock, f.runs.baseline, DYNALITE_TARGET);
          return r ? `; per round ${r.min.toFixed(2)}–${r.max.toFixed(2)}×, ${DYNALITE_TARGET}× or more in ${r.reached} of ${r.rounds}` : '';
        };
        const check = (f: Figure, door: string, t: Target): TargetCheck => ({
          target: `lock cycles/s at 64 clients ≥ ${DYNALITE_TARGET}× dynalite, durable — ${door}`,
          measured: `${f.ratio.toFixed(2)}× (${Math.round(f.statelock)} vs ${Math.round(f.baseline)} cycles/s${perRound(f)}). Needs: ${needs(t)}`,
          met: f.ratio >= DYNALITE_TARGET,
          row: `${f.benchmark} · ${f.metric}`,
        });
        targets.push(check(httpVsDynalite, 'http backend', 'statelock'), check(ddbRate, 'DynamoDB door', 'dynamodb'));
      }
      progress(
        `  statelock ${median(pick('cyclesPerSecond').statelock).toFixed(0)} cycles/s, baseline ${median(pick('cyclesPerSecond').baseline).toFixed(0)}, DynamoDB door ${median(r.dynamodb.map((x) => x.cyclesPerSecond)).toFixed(0)}, dynalite ${median(r.dynalite.map((x) => x.cyclesPerSecond)).toFixed(0)}${r.tmpfs.length ? `, on tmpfs ${median(r.tmpfs.map((x) => x.cyclesPerSecond)).toFixed(0)}` : ''}${r.postgres.length ? `, PostgreSQL ${median(r.postgres.map((x) => x.cyclesPerSecond)).toFixed(0)}` : ''}${r.pgDynamodb.length ? `, DynamoDB door on PostgreSQL ${median(r.pgDynamodb.map((x) => x.cyclesPerSecond)).toFixed(0)}` : ''}`,
      );
    }
    const one = raw[1]!;
    const single = { statelock: one.statelock.map((x) => x.p50Ms), baseline: one.baseline.map((x) => x.p50Ms) };
    const lockP50 = median(one.statelock.map((x) => x.lockP50Ms));
    const unlockP50 = median(one.statelock.map((x) => x.unlockP50Ms));
    const singleFigure = figure({
      benchmark: '2. single-client cycle latency',
      metric: 'LOCK+UNLOCK p50',
      unit: 'ms',
      better: 'lower',
      baselineName: NODE_BASELINE,
      runs: single,
      note: `issue target ≤ 1 ms: ${median(single.statelock) <= 1 ? 'met' : 'NOT met'} (LOCK p50 ${lockP50.toFixed(3)} ms, UNLOCK p50 ${unlockP50.toFixed(3)} ms; DynamoDB door PutItem + DeleteItem p50 ${median(one.dynamodb.map((x) => x.p50Ms)).toFixed(3)} ms)`,
    });
    figures.push(singleFigure);
    // The kinder of the two probes: a floor that says "cannot" must not rest on a slow moment of the disk.
    const fsyncP50 = Math.min(...fsyncAroundOne.map((f) => f.p50Ms));
    targets.push({
      target: 'single-client lock cycle p50 ≤ 1 ms (http backend, durable)',
      measured: `${singleFigure.statelock.toFixed(3)} ms (Node http baseline ${singleFigure.baseline.toFixed(3)} ms). ${describeFloor(1, fsyncP50, singleFigure.baseline, singleFigure.statelock)}`,
      met: singleFigure.statelock <= 1,
      row: `${singleFigure.benchmark} · ${singleFigure.metric}`,
    });
  } finally {
    await statelock.stop();
    await baseline.stop();
    await dynalite.stopAndRemove();
    await onTmpfs?.stop();
    await onPostgres?.stop();
    await pg?.stop('fast');
    if (pg) rmSync(pg.dataDir, { recursive: true, force: true });
    rmSync(statelock.dataDir, { recursive: true, force: true });
    if (shm) rmSync(shm, { recursive: true, force: true });
  }
  return { figures, targets, raw };
}
