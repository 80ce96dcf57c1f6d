import { randomUUID } from 'node:crypto';
import { lockBody } from '../../test/support/http.js';
import { startServer } from '../../test/support/server-process.js';
import { Client } from '../lib/client.js';
import { cpuMs, startBaseline } from '../lib/processes.js';
import { figure, type Figure } from '../lib/report.js';
import { median, percentile, progress } from '../lib/stats.js';
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
}

/**
 * `clients` clients, each on its own connection and its own key, each doing LOCK then UNLOCK with a
 * fresh lock-info body (new ID) per cycle, until `seconds` pass or `maxCycles` cycles are done in all.
 */
export async function cycles(url: string, prefix: string, clients: number, seconds: number, maxCycles: number, serverPid?: number): Promise<CycleRun> {
  const conns = Array.from({ length: clients }, () => new Client(url));
  const latencies: number[] = [];
  const lockLat: number[] = [];
  const unlockLat: number[] = [];
  let done = 0;
  const cpu0 = serverPid ? cpuMs(serverPid) : NaN;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    conns.map(async (c, i) => {
      const path = `${prefix}/client-${i}`;
      while (performance.now() < deadline && done < maxCycles) {
        const body = lockBody(randomUUID(), 'OperationTypeApply', `bench-${i}@127.0.0.1`, new Date().toISOString());
        const t0 = performance.now();
        const locked = await c.send('LOCK', path, body);
        const t1 = performance.now();
        if (locked.status !== 200) throw new Error(`LOCK ${path}: ${locked.status} ${locked.body.toString()}`);
        const unlocked = await c.send('UNLOCK', path, body);
        const t2 = performance.now();
        if (unlocked.status !== 200) throw new Error(`UNLOCK ${path}: ${unlocked.status} ${unlocked.body.toString()}`);
        latencies.push(t2 - t0);
        lockLat.push(t1 - t0);
        unlockLat.push(t2 - t1);
        done++;
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  const serverCpu = serverPid ? cpuMs(serverPid) - cpu0 : NaN;
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

type Target = 'statelock' | 'baseline' | 'tmpfs' | 'postgres';

export async function lockCycleSuite(opts: { runs: number; seconds: number; warmupSeconds: number }): Promise<{ figures: Figure[]; raw: unknown }> {
  const statelock = await startServer({ logLevel: 'warn' });
  const baseline = await startBaseline();
  // Diagnostic only: the same server with its data on tmpfs, where fsync costs nothing (NOT durable).
  const shm = tmpfsDir();
  const onTmpfs = shm ? await startServer({ logLevel: 'warn', dataDir: shm }) : null;
  // The PostgreSQL engine (a private cluster on this machine, fsync on), when PostgreSQL is installed.
  const pg = pgAvailable() ? await startPostgres() : null;
  const onPostgres = pg ? await startServer({ logLevel: 'warn', args: ['--database', pg.url] }) : null;
  const raw: Record<string, Record<Target, CycleRun[]>> = {};
  const figures: Figure[] = [];
  try {
    for (const n of CLIENT_COUNTS) {
      progress(`lock cycle: ${n} client(s), ${opts.runs} runs × ${opts.seconds}s per target`);
      const targets: Partial<Record<Target, { url: string; pid: number }>> = {
        statelock: { url: statelock.url, pid: statelock.proc.pid! },
        baseline: { url: baseline.url, pid: baseline.proc.pid! },
        ...(onTmpfs ? { tmpfs: { url: onTmpfs.url, pid: onTmpfs.proc.pid! } } : {}),
        ...(onPostgres ? { postgres: { url: onPostgres.url, pid: onPostgres.proc.pid! } } : {}),
      };
      const names = Object.keys(targets) as Target[];
      for (const t of names) await cycles(targets[t]!.url, `/state/bench/warmup-${n}`, n, opts.warmupSeconds, 1e6);
      const r: Record<Target, CycleRun[]> = (raw[n] = { statelock: [], baseline: [], tmpfs: [], postgres: [] });
      for (let run = 0; run < opts.runs; run++) {
        // Rotate which target goes first, so slow drift on this shared machine hits all alike.
        const order = names.map((_, i) => names[(i + run) % names.length]!);
        for (const t of order) r[t].push(await cycles(targets[t]!.url, `/state/bench/cycle-${n}`, n, opts.seconds, 1_000_000, targets[t]!.pid));
      }
      const pick = (k: keyof CycleRun) => ({ statelock: r.statelock.map((x) => x[k]), baseline: r.baseline.map((x) => x[k]) });
      const base = { benchmark: `1. lock cycle, ${n} client${n > 1 ? 's' : ''}`, baselineName: 'minimal Node http server (child process)' };
      const cpu = pick('serverCpuMsPerCycle');
      const util = pick('serverCpuUtil');
      const cpuNote = `server CPU per cycle ${median(cpu.statelock).toFixed(2)} vs ${median(cpu.baseline).toFixed(2)} ms; server busy ${(median(util.statelock) * 100).toFixed(0)}% vs ${(median(util.baseline) * 100).toFixed(0)}% of a core`;
      figures.push(figure({ ...base, metric: 'cycles/s', unit: '/s', better: 'higher', runs: pick('cyclesPerSecond'), note: cpuNote }));
      figures.push(figure({ ...base, metric: 'cycle p50', unit: 'ms', better: 'lower', runs: pick('p50Ms') }));
      figures.push(figure({ ...base, metric: 'cycle p99', unit: 'ms', better: 'lower', runs: pick('p99Ms') }));
      if (r.tmpfs.length) {
        figures.push(
          figure({
            ...base,
            metric: 'cycles/s, data on tmpfs (diagnostic)',
            unit: '/s',
            better: 'higher',
            runs: { statelock: r.tmpfs.map((x) => x.cyclesPerSecond), baseline: r.baseline.map((x) => x.cyclesPerSecond) },
            note: `NOT durable: fsync is free on tmpfs — shows what the disk costs. p50 ${median(r.tmpfs.map((x) => x.p50Ms)).toFixed(2)} ms, server CPU per cycle ${median(r.tmpfs.map((x) => x.serverCpuMsPerCycle)).toFixed(2)} ms`,
          }),
        );
      }
      if (r.postgres.length) {
        const vsSqlite = { benchmark: `1. lock cycle, ${n} client${n > 1 ? 's' : ''}, PostgreSQL engine`, baselineName: 'statelock on SQLite (same run)' };
        const pgPick = (k: keyof CycleRun) => ({ statelock: r.postgres.map((x) => x[k]), baseline: r.statelock.map((x) => x[k]) });
        figures.push(
          figure({
            ...vsSqlite,
            metric: 'cycles/s',
            unit: '/s',
            better: 'higher',
            runs: pgPick('cyclesPerSecond'),
            note: `durable on both (PostgreSQL fsync on, one local cluster); vs the bare Node baseline ${(median(r.postgres.map((x) => x.cyclesPerSecond)) / median(r.baseline.map((x) => x.cyclesPerSecond))).toFixed(2)}×; statelock server CPU per cycle ${median(r.postgres.map((x) => x.serverCpuMsPerCycle)).toFixed(2)} ms`,
          }),
        );
        figures.push(figure({ ...vsSqlite, metric: 'cycle p50', unit: 'ms', better: 'lower', runs: pgPick('p50Ms') }));
        figures.push(figure({ ...vsSqlite, metric: 'cycle p99', unit: 'ms', better: 'lower', runs: pgPick('p99Ms') }));
      }
      progress(
        `  statelock ${median(pick('cyclesPerSecond').statelock).toFixed(0)} cycles/s, baseline ${median(pick('cyclesPerSecond').baseline).toFixed(0)} cycles/s${r.tmpfs.length ? `, statelock on tmpfs ${median(r.tmpfs.map((x) => x.cyclesPerSecond)).toFixed(0)} cycles/s` : ''}`,
      );
    }
    const one = raw[1]!;
    const single = { statelock: one.statelock.map((x) => x.p50Ms), baseline: one.baseline.map((x) => x.p50Ms) };
    const lockP50 = median(one.statelock.map((x) => x.lockP50Ms));
    const unlockP50 = median(one.statelock.map((x) => x.unlockP50Ms));
    figures.push(
      figure({
        benchmark: '2. single-client cycle latency',
        metric: 'LOCK+UNLOCK p50',
        unit: 'ms',
        better: 'lower',
        baselineName: 'minimal Node http server (child process)',
        runs: single,
        note: `issue target ≤ 1 ms: ${median(single.statelock) <= 1 ? 'met' : 'NOT met'} (LOCK p50 ${lockP50.toFixed(3)} ms, UNLOCK p50 ${unlockP50.toFixed(3)} ms)`,
      }),
    );
  } finally {
    await statelock.stop();
    await baseline.stop();
    await onTmpfs?.stop();
    await onPostgres?.stop();
    await pg?.stop('fast');
    rmSync(statelock.dataDir, { recursive: true, force: true });
    if (shm) rmSync(shm, { recursive: true, force: true });
  }
  return { figures, raw };
}
