import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { startServer } from '../../test/support/server-process.js';
import { Client } from '../lib/client.js';
import { currentRss, peakRss, startBaseline } from '../lib/processes.js';
import { figure, type Figure } from '../lib/report.js';
import { median, progress } from '../lib/stats.js';
import { StateTemplate } from '../lib/state-gen.js';

const MiB = 1024 * 1024;

interface TransferRun {
  bytes: number;
  writeMiBps: number[];
  readMiBps: number[];
  idleRss: number;
  readIdleRss: number;
  writePeakRss: number;
  readPeakRss: number;
}

interface Served {
  url: string;
  pid: number;
  dataDir: string | null;
  stop(): Promise<void>;
}

async function serve(target: 'statelock' | 'baseline', bytes: number, dataDir?: string): Promise<Served> {
  if (target === 'statelock') {
    const s = await startServer({ logLevel: 'warn', ...(dataDir ? { dataDir } : {}) });
    return { url: s.url, pid: s.proc.pid!, dataDir: s.dataDir, stop: async () => void (await s.stop()) };
  }
  const b = await startBaseline(bytes);
  return { url: b.url, pid: b.proc.pid!, dataDir: null, stop: b.stop };
}

/**
 * One run: a fresh server takes 1 warm-up + `repeats` writes (its VmHWM is the write peak); then a
 * fresh server on the same data directory serves 1 warm-up + `repeats` reads (its VmHWM is the read
 * peak, free of whatever the writes left allocated).
 */
async function transfer(target: 'statelock' | 'baseline', template: StateTemplate, bytes: number, repeats: number): Promise<TransferRun> {
  const path = '/state/bench/transfer';
  let server = await serve(target, bytes);
  let client = new Client(server.url);
  const dataDir = server.dataDir;
  try {
    const idleRss = currentRss(server.pid);
    const writeMiBps: number[] = [];
    for (let i = 0; i <= repeats; i++) {
      const body = template.body(i + 1); // serial increases on every write
      const md5 = createHash('md5').update(body).digest('base64'); // Terraform sends Content-MD5
      const t0 = performance.now();
      const res = await client.send('POST', path, body, { 'Content-Type': 'application/json', 'Content-MD5': md5 });
      const ms = performance.now() - t0;
      if (res.status !== 200) throw new Error(`${target} POST ${bytes} B: ${res.status} ${res.body.toString().slice(0, 300)}`);
      if (i > 0) writeMiBps.push(body.length / MiB / (ms / 1000));
    }
    const writePeakRss = peakRss(server.pid);
    client.close();
    await server.stop();
    server = await serve(target, bytes, dataDir ?? undefined);
    client = new Client(server.url);
    const readIdleRss = currentRss(server.pid);
    const readMiBps: number[] = [];
    for (let i = 0; i <= repeats; i++) {
      const t0 = performance.now();
      const res = await client.send('GET', path);
      const ms = performance.now() - t0;
      if (res.status !== 200 || Math.abs(res.bytes - bytes) > 64) throw new Error(`${target} GET: ${res.status}, ${res.bytes} bytes, expected ${bytes}`);
      if (i > 0) readMiBps.push(res.bytes / MiB / (ms / 1000));
    }
    const readPeakRss = peakRss(server.pid);
    return { bytes, writeMiBps, readMiBps, idleRss, readIdleRss, writePeakRss, readPeakRss };
  } finally {
    client.close();
    await server.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

const mibOf = (b: number) => (b / MiB).toFixed(0);

/**
 * Per size: `runs` runs of {@link transfer} per target (fresh processes, so VmHWM belongs to that size
 * and to that direction).
 * A run's throughput is the median of its measured requests; every figure is the median over runs.
 */
export async function transferSuite(sizesMiB: readonly number[], plan: (mib: number) => { runs: number; repeats: number }): Promise<{ figures: Figure[]; raw: unknown }> {
  const figures: Figure[] = [];
  const raw: Record<string, { bytes: number; statelock: TransferRun[]; baseline: TransferRun[] }> = {};
  for (const mib of sizesMiB) {
    const template = StateTemplate.ofSize(mib * MiB);
    const bytes = template.body(1).length;
    const { runs, repeats } = plan(mib);
    progress(`state transfer: ${mib} MiB (${bytes} B): ${runs} runs per target; a fresh server for the writes and another for the reads, each 1 warm-up + ${repeats} measured`);
    const r = (raw[`${mib}MiB`] = { bytes, statelock: [] as TransferRun[], baseline: [] as TransferRun[] });
    for (let run = 0; run < runs; run++) {
      const order = run % 2 === 0 ? (['baseline', 'statelock'] as const) : (['statelock', 'baseline'] as const);
      for (const t of order) r[t].push(await transfer(t, template, bytes, repeats));
    }
    const per = (f: (t: TransferRun) => number) => ({ statelock: r.statelock.map(f), baseline: r.baseline.map(f) });
    const base = { benchmark: `4. state transfer, ${mib} MiB`, baselineName: 'minimal Node http server (buffers body; GET answers a pre-built buffer)' };
    const write = per((t) => median(t.writeMiBps));
    const read = per((t) => median(t.readMiBps));
    const writePeak = per((t) => t.writePeakRss);
    const readPeak = per((t) => t.readPeakRss);
    const idle = per((t) => t.idleRss);
    const writeGrowth = per((t) => (t.writePeakRss - t.idleRss) / bytes);
    const readGrowth = per((t) => (t.readPeakRss - t.readIdleRss) / bytes);
    const growth = (g: { statelock: number[]; baseline: number[] }) => `(peak − idle) ÷ size ${median(g.statelock).toFixed(2)} vs ${median(g.baseline).toFixed(2)}`;
    figures.push(figure({ ...base, metric: 'write (POST) throughput', unit: 'MiB/s', better: 'higher', runs: write }));
    figures.push(figure({ ...base, metric: 'read (GET) throughput', unit: 'MiB/s', better: 'higher', runs: read }));
    figures.push(
      figure({
        ...base,
        metric: 'server peak RSS ÷ state size, writes',
        unit: '×',
        better: 'lower',
        runs: per((t) => t.writePeakRss / bytes),
        note: `VmHWM ${mibOf(median(writePeak.statelock))} vs ${mibOf(median(writePeak.baseline))} MiB; idle ${mibOf(median(idle.statelock))} vs ${mibOf(median(idle.baseline))} MiB; ${growth(writeGrowth)}`,
      }),
    );
    figures.push(
      figure({
        ...base,
        metric: 'server peak RSS ÷ state size, reads',
        unit: '×',
        better: 'lower',
        runs: per((t) => t.readPeakRss / bytes),
        note: `VmHWM ${mibOf(median(readPeak.statelock))} vs ${mibOf(median(readPeak.baseline))} MiB (a fresh process on the written data); ${growth(readGrowth)}`,
      }),
    );
    progress(
      `  write ${median(write.statelock).toFixed(0)} vs ${median(write.baseline).toFixed(0)} MiB/s, read ${median(read.statelock).toFixed(0)} vs ${median(read.baseline).toFixed(0)} MiB/s, write peak ${mibOf(median(writePeak.statelock))} vs ${mibOf(median(writePeak.baseline))} MiB`,
    );
  }
  return { figures, raw };
}
