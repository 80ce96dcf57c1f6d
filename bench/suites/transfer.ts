import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { TEST_KEY } from '../../test/support/aws.js';
import { pgAvailable, startPostgres, type PgCluster } from '../../test/support/postgres.js';
import { startServer } from '../../test/support/server-process.js';
import { AwsClient, createBucket } from '../lib/aws-client.js';
import { Client } from '../lib/client.js';
import { cpuBudget, describeBudget } from '../lib/cpu-budget.js';
import { cpuMs, currentRss, mainThreadCpuMs, packageVersion, peakRss, S3RVER_CREDENTIALS, startBaseline, startS3rver } from '../lib/processes.js';
import { figure, type Figure, type TargetCheck } from '../lib/report.js';
import { median, progress } from '../lib/stats.js';
import { StateTemplate } from '../lib/state-gen.js';

const MiB = 1024 * 1024;
const BUCKET = 'bench';

/**
 * Who serves the transfer:
 * - `baseline`: the minimal Node http server (buffers POST bodies, answers GET with a pre-built buffer);
 * - `statelock`: statelock's http backend (POST/GET), SQLite;
 * - `s3`: statelock's S3 door (PutObject/GetObject, SigV4-verified), SQLite;
 * - `s3rver`: the S3 emulator, same signed requests (one file per object, no fsync);
 * - `postgres`: statelock's http backend on the PostgreSQL engine.
 */
export type Target = 'baseline' | 'statelock' | 's3' | 's3rver' | 'postgres';
const TARGETS: readonly Target[] = ['baseline', 'statelock', 's3', 's3rver', 'postgres'];

/** One version to write: the body and what a client computes before sending it (outside the timed part). */
export interface Write {
  body: Buffer;
  md5: string;
  sha256: string;
}

interface TransferRun {
  bytes: number;
  writeMiBps: number[];
  readMiBps: number[];
  idleRss: number;
  readIdleRss: number;
  writePeakRss: number;
  readPeakRss: number;
  /** Per measured write: the server's CPU (all threads), its main thread's (the event loop), the load generator's; ms. */
  writeCpuMs: { server: number; serverMain: number; client: number };
}

interface Served {
  url: string;
  pid: number;
  /** Handed to the read server, so it serves what the write server stored. */
  dataDir: string;
  stop(): Promise<void>;
}

/** A client of one served target: writes a version, reads the current one; statuses checked. */
export interface Transport {
  put(w: Write): Promise<void>;
  get(): Promise<number>;
  close(): void;
}

async function serve(target: Target, bytes: number, pg: PgCluster | null, dataDir?: string): Promise<Served> {
  const dir = dataDir ? { dataDir } : {};
  switch (target) {
    case 'baseline': {
      const b = await startBaseline(bytes);
      return { url: b.url, pid: b.proc.pid!, dataDir: '', stop: b.stop };
    }
    case 's3rver': {
      const s = await startS3rver(dataDir);
      return { url: s.url, pid: s.proc.pid!, dataDir: s.dataDir, stop: s.stop };
    }
    case 'postgres':
    case 'statelock':
    case 's3': {
      const args = [
        ...(target === 's3' ? ['--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`] : []),
        ...(target === 'postgres' ? ['--database', pg!.url] : []),
      ];
      const s = await startServer({ logLevel: 'warn', args, ...dir });
      return { url: s.url, pid: s.proc.pid!, dataDir: s.dataDir, stop: async () => void (await s.stop()) };
    }
  }
}

export function transport(target: Target, url: string, key: string): Transport {
  if (target === 's3' || target === 's3rver') {
    const c = new AwsClient(url, target === 's3' ? TEST_KEY : S3RVER_CREDENTIALS, 's3');
    const path = `/${BUCKET}/${key}/terraform.tfstate`;
    return {
      async put(w) {
        const res = await c.s3('PUT', path, w.body, w.sha256, { 'content-type': 'application/json' });
        if (res.status !== 200) throw new Error(`${target} PutObject ${w.body.length} B: ${res.status} ${res.body.toString().slice(0, 300)}`);
      },
      async get() {
        const res = await c.s3('GET', path);
        if (res.status !== 200) throw new Error(`${target} GetObject: ${res.status} ${res.body.toString().slice(0, 300)}`);
        return res.bytes;
      },
      close: () => c.close(),
    };
  }
  const c = new Client(url);
  const path = `/state/${BUCKET}/${key}`;
  return {
    async put(w) {
      const res = await c.send('POST', path, w.body, { 'Content-Type': 'application/json', 'Content-MD5': w.md5 }); // Terraform sends Content-MD5
      if (res.status !== 200) throw new Error(`${target} POST ${w.body.length} B: ${res.status} ${res.body.toString().slice(0, 300)}`);
    },
    async get() {
      const res = await c.send('GET', path);
      if (res.status !== 200) throw new Error(`${target} GET: ${res.status} ${res.body.toString().slice(0, 300)}`);
      return res.bytes;
    },
    close: () => c.close(),
  };
}

/**
 * Unmeasured requests a fresh server gets first, in each direction: as many as make WARM_UP_BYTES, at least
 * one. The same for every target. Since 2026-11-27 (was one whatever the size): with one, a 1 MiB row timed
 * the JIT compiler's warm-up more than the transfer — statelock's writes 2–4 of a fresh process took ~13 ms
 * against ~6.4 ms after ten writes, s3rver's 7.8 against 7.5 (bench/README.md, "Warm-up requests").
 */
export const WARM_UP_BYTES = 10 * MiB;
export const warmUpCount = (bytes: number) => Math.max(1, Math.ceil(WARM_UP_BYTES / bytes));

/**
 * One run: a fresh server takes `warmUps` + `repeats` writes (serial increasing; its VmHWM is the write
 * peak); then a fresh server on the same data serves `warmUps` + `repeats` reads (its VmHWM is the read
 * peak, free of whatever the writes left allocated). Only the last `repeats` of each are measured. `key` is
 * new per run: PostgreSQL keeps its data between runs, the others start on an empty directory.
 */
async function transfer(target: Target, writes: readonly Write[], warmUps: number, key: string, pg: PgCluster | null): Promise<TransferRun> {
  const bytes = writes[0]!.body.length;
  let server = await serve(target, bytes, pg);
  const dataDir = server.dataDir;
  if (target === 's3' || target === 's3rver') {
    const c = new AwsClient(server.url, target === 's3' ? TEST_KEY : S3RVER_CREDENTIALS, 's3');
    await createBucket(c, BUCKET);
    c.close();
  }
  let client = transport(target, server.url, key);
  try {
    const idleRss = currentRss(server.pid);
    const writeMiBps: number[] = [];
    let cpu0 = { server: NaN, serverMain: NaN, client: process.cpuUsage() };
    for (let i = 0; i < writes.length; i++) {
      const w = writes[i]!;
      if (i === warmUps) cpu0 = { server: cpuMs(server.pid), serverMain: mainThreadCpuMs(server.pid), client: process.cpuUsage() };
      const t0 = performance.now();
      await client.put(w);
      const ms = performance.now() - t0;
      if (i >= warmUps) writeMiBps.push(w.body.length / MiB / (ms / 1000));
    }
    const measured = writes.length - warmUps;
    const clientCpu = process.cpuUsage(cpu0.client);
    const writeCpuMs = {
      server: (cpuMs(server.pid) - cpu0.server) / measured,
      serverMain: (mainThreadCpuMs(server.pid) - cpu0.serverMain) / measured,
      client: (clientCpu.user + clientCpu.system) / 1000 / measured,
    };
    const writePeakRss = peakRss(server.pid);
    client.close();
    await server.stop();
    server = await serve(target, bytes, pg, dataDir || undefined);
    client = transport(target, server.url, key);
    const readIdleRss = currentRss(server.pid);
    const readMiBps: number[] = [];
    for (let i = 0; i < writes.length; i++) {
      const t0 = performance.now();
      const got = await client.get();
      const ms = performance.now() - t0;
      if (Math.abs(got - bytes) > 64) throw new Error(`${target} read ${got} bytes, expected ${bytes}`);
      if (i >= warmUps) readMiBps.push(got / MiB / (ms / 1000));
    }
    const readPeakRss = peakRss(server.pid);
    return { bytes, writeMiBps, readMiBps, idleRss, readIdleRss, writePeakRss, readPeakRss, writeCpuMs };
  } finally {
    client.close();
    await server.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

const mibOf = (b: number) => (b / MiB).toFixed(0);
const x2 = (v: number) => `${v.toFixed(2)}×`;

/**
 * Per size: `runs` runs of {@link transfer} per target (fresh processes, so VmHWM belongs to that size
 * and to that direction), targets taking turns going first. A run's throughput is the median of its
 * measured requests; every figure is the median over runs.
 */
export async function transferSuite(
  sizesMiB: readonly number[],
  plan: (mib: number) => { runs: number; repeats: number },
  only?: readonly Target[],
): Promise<{ figures: Figure[]; targets: TargetCheck[]; raw: unknown }> {
  const figures: Figure[] = [];
  const raw: Record<string, { bytes: number } & Partial<Record<Target, TransferRun[]>>> = {};
  // `only` (a profiling script's choice) leaves targets out; the s3rver-relative figures need 's3rver'.
  const wanted = TARGETS.filter((t) => !only || only.includes(t));
  const pg = wanted.includes('postgres') && pgAvailable() ? await startPostgres() : null;
  const targets = wanted.filter((t) => t !== 'postgres' || pg);
  const s3rverName = `s3rver ${packageVersion('s3rver')} (one file per object, no fsync; same signed requests)`;
  /** Per size, for the targets table: ratios against s3rver, and peaks ÷ size. */
  const vsS3rver: Array<{ mib: number; httpWrite: number; httpRead: number; s3Write: number; s3Read: number }> = [];
  /** Per door, at the last size: what writing as fast as s3rver asks of this machine's CPU (bench/lib/cpu-budget.ts). */
  const writeNeeds: Partial<Record<'statelock' | 's3', string>> = {};
  const peaks: Record<string, { mib: number; write: number; read: number; writeGrowth: number; readGrowth: number }> = {};
  try {
    for (const mib of sizesMiB) {
      const template = StateTemplate.ofSize(mib * MiB);
      const { runs, repeats } = plan(mib);
      // The bodies and their MD5 / SHA-256, made once per size, outside every timed part.
      const first = template.body(1);
      const warmUps = warmUpCount(first.length);
      const writes: Write[] = Array.from({ length: warmUps + repeats }, (_, i) => {
        const body = i === 0 ? first : template.body(i + 1); // serial increases on every write
        return { body, md5: createHash('md5').update(body).digest('base64'), sha256: createHash('sha256').update(body).digest('hex') };
      });
      const bytes = writes[0]!.body.length;
      progress(`state transfer: ${mib} MiB (${bytes} B): ${runs} runs per target (${targets.join(', ')}); a fresh server for the writes and another for the reads, each ${warmUps} warm-up + ${repeats} measured`);
      const r: { bytes: number } & Record<Target, TransferRun[]> = (raw[`${mib}MiB`] = { bytes, baseline: [], statelock: [], s3: [], s3rver: [], postgres: [] });
      for (let run = 0; run < runs; run++) {
        const order = targets.map((_, i) => targets[(i + run) % targets.length]!);
        for (const t of order) r[t].push(await transfer(t, writes, warmUps, `transfer-${mib}m-r${run}`, pg));
      }
      const vs = (a: Target, b: Target) => (f: (t: TransferRun) => number) => ({ statelock: r[a].map(f), baseline: r[b].map(f) });
      const writeRate = (t: TransferRun) => median(t.writeMiBps);
      const readRate = (t: TransferRun) => median(t.readMiBps);
      const writePeak = (t: TransferRun) => t.writePeakRss / bytes;
      const readPeak = (t: TransferRun) => t.readPeakRss / bytes;
      const writeGrowth = (t: TransferRun) => (t.writePeakRss - t.idleRss) / bytes;
      const readGrowth = (t: TransferRun) => (t.readPeakRss - t.readIdleRss) / bytes;
      const med = (t: Target, f: (x: TransferRun) => number) => median(r[t].map(f));
      const peakNote = (a: Target, b: Target, dir: 'write' | 'read') => {
        const hwm = (t: TransferRun) => (dir === 'write' ? t.writePeakRss : t.readPeakRss);
        const idle = (t: TransferRun) => (dir === 'write' ? t.idleRss : t.readIdleRss);
        const growth = dir === 'write' ? writeGrowth : readGrowth;
        return `VmHWM ${mibOf(med(a, hwm))} vs ${mibOf(med(b, hwm))} MiB; idle ${mibOf(med(a, idle))} vs ${mibOf(med(b, idle))} MiB; (peak − idle) ÷ size ${med(a, growth).toFixed(2)} vs ${med(b, growth).toFixed(2)}${dir === 'read' ? ' (a fresh process on the written data)' : ''}`;
      };
      const rows = (benchmark: string, a: Target, b: Target, baselineName: string, verbs: [string, string], withPeaks: boolean, note = '') => {
        const p = vs(a, b);
        figures.push(figure({ benchmark, baselineName, metric: `write (${verbs[0]}) throughput`, unit: 'MiB/s', better: 'higher', runs: p(writeRate), ...(note ? { note } : {}) }));
        figures.push(figure({ benchmark, baselineName, metric: `read (${verbs[1]}) throughput`, unit: 'MiB/s', better: 'higher', runs: p(readRate) }));
        if (!withPeaks) return;
        figures.push(figure({ benchmark, baselineName, metric: 'server peak RSS ÷ state size, writes', unit: '×', better: 'lower', runs: p(writePeak), note: peakNote(a, b, 'write') }));
        figures.push(figure({ benchmark, baselineName, metric: 'server peak RSS ÷ state size, reads', unit: '×', better: 'lower', runs: p(readPeak), note: peakNote(a, b, 'read') }));
      };
      const title = `4. state transfer, ${mib} MiB`;
      rows(title, 'statelock', 'baseline', 'minimal Node http server (buffers body; GET answers a pre-built buffer)', ['POST', 'GET'], true);
      rows(`${title}, http backend vs s3rver`, 'statelock', 's3rver', s3rverName, ['POST vs PutObject', 'GET vs GetObject'], true, 'issue target: ≥ s3rver\'s MiB/s, peak RSS ≤ 1.5× the state size');
      rows(`${title}, S3 door vs s3rver`, 's3', 's3rver', s3rverName, ['PutObject', 'GetObject'], true, 'same signed requests (x-amz-content-sha256 = the body\'s SHA-256, computed once before the timed part); statelock verifies signature and hash, s3rver neither');
      if (r.postgres.length) {
        rows(
          `${title}, PostgreSQL engine`,
          'postgres',
          'statelock',
          'statelock on SQLite (same run)',
          ['POST', 'GET'],
          false,
          `http backend on both; PostgreSQL vs s3rver: write ${x2(med('postgres', writeRate) / med('s3rver', writeRate))}, read ${x2(med('postgres', readRate) / med('s3rver', readRate))}; statelock process peak RSS ÷ size ${med('postgres', writePeak).toFixed(2)} writes, ${med('postgres', readPeak).toFixed(2)} reads (PostgreSQL's own processes not counted)`,
        );
      }
      vsS3rver.push({
        mib,
        httpWrite: med('statelock', writeRate) / med('s3rver', writeRate),
        httpRead: med('statelock', readRate) / med('s3rver', readRate),
        s3Write: med('s3', writeRate) / med('s3rver', writeRate),
        s3Read: med('s3', readRate) / med('s3rver', readRate),
      });
      for (const t of ['statelock', 's3'] as const) {
        if (!r.s3rver.length || !r[t].length) continue;
        const writesPerSecond = med('s3rver', writeRate) / (bytes / MiB);
        const generator = med(t, (x) => x.writeCpuMs.client);
        if (!(writesPerSecond > 0) || !Number.isFinite(generator)) continue;
        const budget = cpuBudget(writesPerSecond, cpus().length, generator);
        const measured = { allThreadsMsPerOp: med(t, (x) => x.writeCpuMs.server), mainThreadMsPerOp: med(t, (x) => x.writeCpuMs.serverMain) };
        writeNeeds[t] = `at ${mib} MiB: ${describeBudget(budget, measured, { op: 'write', rate: `s3rver's ${med('s3rver', writeRate).toFixed(0)} MiB/s (${writesPerSecond >= 10 ? writesPerSecond.toFixed(0) : writesPerSecond.toFixed(2)} writes/s)` })}`;
      }
      for (const t of ['statelock', 's3', 's3rver'] as const) {
        peaks[t] = { mib, write: med(t, writePeak), read: med(t, readPeak), writeGrowth: med(t, writeGrowth), readGrowth: med(t, readGrowth) };
      }
      progress(
        `  write MiB/s: http ${med('statelock', writeRate).toFixed(0)}, S3 door ${med('s3', writeRate).toFixed(0)}, s3rver ${med('s3rver', writeRate).toFixed(0)}, Node ${med('baseline', writeRate).toFixed(0)}${r.postgres.length ? `, PostgreSQL ${med('postgres', writeRate).toFixed(0)}` : ''}; ` +
          `read: http ${med('statelock', readRate).toFixed(0)}, S3 door ${med('s3', readRate).toFixed(0)}, s3rver ${med('s3rver', readRate).toFixed(0)}, Node ${med('baseline', readRate).toFixed(0)}${r.postgres.length ? `, PostgreSQL ${med('postgres', readRate).toFixed(0)}` : ''}`,
      );
    }
  } finally {
    await pg?.stop('fast');
    if (pg) rmSync(pg.dataDir, { recursive: true, force: true });
  }
  const sizes = vsS3rver.map((v) => `${v.mib}`).join('/');
  const list = (f: (v: (typeof vsS3rver)[number]) => number) => vsS3rver.map((v) => x2(f(v))).join(' / ');
  const rateCheck = (door: string, write: (v: (typeof vsS3rver)[number]) => number, read: (v: (typeof vsS3rver)[number]) => number, row: string, needs: string | undefined): TargetCheck => ({
    target: `state transfer MiB/s ≥ s3rver's — ${door}`,
    measured: `write ${list(write)}, read ${list(read)} (${sizes} MiB)${needs ? `. Writes need, ${needs}` : ''}`,
    met: vsS3rver.every((v) => write(v) >= 1 && read(v) >= 1),
    row,
  });
  const largest = sizesMiB[sizesMiB.length - 1]!;
  const peakCheck = (door: string, t: 'statelock' | 's3', row: string): TargetCheck => {
    const p = peaks[t]!;
    const s = peaks.s3rver!;
    return {
      target: `server peak RSS ≤ 1.5× the state size — ${door} (judged at the largest state; at 1 MiB the idle process dominates)`,
      measured: `at ${p.mib} MiB: writes ${x2(p.write)}, reads ${x2(p.read)}; (peak − idle) ÷ size ${x2(p.writeGrowth)} / ${x2(p.readGrowth)}; s3rver ${x2(s.write)} / ${x2(s.read)}`,
      met: p.write <= 1.5 && p.read <= 1.5,
      row,
    };
  };
  const targets_: TargetCheck[] = [
    rateCheck('http backend', (v) => v.httpWrite, (v) => v.httpRead, '4. state transfer, N MiB, http backend vs s3rver · write/read throughput', writeNeeds.statelock),
    rateCheck('S3 door', (v) => v.s3Write, (v) => v.s3Read, '4. state transfer, N MiB, S3 door vs s3rver · write/read throughput', writeNeeds.s3),
    peakCheck('http backend', 'statelock', `4. state transfer, ${largest} MiB, http backend vs s3rver · server peak RSS ÷ state size`),
    peakCheck('S3 door', 's3', `4. state transfer, ${largest} MiB, S3 door vs s3rver · server peak RSS ÷ state size`),
  ];
  return { figures, targets: targets_, raw };
}
