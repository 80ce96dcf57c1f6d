import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { lockBody } from '../../test/support/http.js';
import { pgAvailable, startPostgres, type PgCluster } from '../../test/support/postgres.js';
import { startServer, type RunningServer } from '../../test/support/server-process.js';
import { Client } from '../lib/client.js';
import { startBaseline } from '../lib/processes.js';
import { figure, type Figure } from '../lib/report.js';
import { median, percentile, progress, sleep } from '../lib/stats.js';

/** Terraform's -lock-timeout backoff (1 s doubling to 16 s) scaled down 1000×: 1 ms doubling to 16 ms. */
export const BACKOFF = { firstMs: 1, capMs: 16 } as const;

export type Mode = 'backoff' | 'queue';

export interface ContentionRun {
  acquisitions: number;
  seconds: number;
  acquisitionsPerSecond: number;
  handoffP50Ms: number;
  handoffP99Ms: number;
  /** LOCK requests answered 423 (backoff) or that had to wait (queue: not visible to the client; 0). */
  refusals: number;
  timedOut: boolean;
}

/**
 * `clients` clients on ONE key, each acquiring then releasing `perClient` times (or until `capSeconds`).
 * Hand-off latency: time from one holder's UNLOCK answer to the next holder's LOCK 200, both seen by
 * the clients (one process, one clock). It can be slightly negative when the server answers the next
 * holder before the previous one's UNLOCK answer has been read.
 */
export async function contend(url: string, path: string, mode: Mode, clients: number, perClient: number, capSeconds: number): Promise<ContentionRun> {
  const conns = Array.from({ length: clients }, () => new Client(url));
  const held: { acquired: number; released: number }[] = [];
  let refusals = 0;
  const started = performance.now();
  const deadline = started + capSeconds * 1000;
  const lockPath = mode === 'queue' ? `${path}?wait=30s` : path;
  await Promise.all(
    conns.map(async (c, i) => {
      for (let n = 0; n < perClient && performance.now() < deadline; n++) {
        const body = lockBody(randomUUID(), 'OperationTypeApply', `bench-${i}@127.0.0.1`, new Date().toISOString());
        let delay: number = BACKOFF.firstMs;
        let acquired = 0;
        while (performance.now() < deadline) {
          const res = await c.send('LOCK', lockPath, body);
          if (res.status === 200) {
            acquired = performance.now();
            break;
          }
          if (res.status !== 423) throw new Error(`LOCK ${lockPath}: ${res.status} ${res.body.toString()}`);
          refusals++;
          if (mode === 'queue') continue; // waited 30 s in line: ask again (bounded by the deadline)
          await sleep(delay);
          delay = Math.min(delay * 2, BACKOFF.capMs);
        }
        if (!acquired) return;
        const res = await c.send('UNLOCK', path, body);
        if (res.status !== 200) throw new Error(`UNLOCK ${path}: ${res.status} ${res.body.toString()}`);
        held.push({ acquired, released: performance.now() });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  conns.forEach((c) => c.close());
  held.sort((a, b) => a.acquired - b.acquired);
  const handoffs: number[] = [];
  for (let i = 1; i < held.length; i++) handoffs.push(held[i]!.acquired - held[i - 1]!.released);
  return {
    acquisitions: held.length,
    seconds,
    acquisitionsPerSecond: held.length / seconds,
    handoffP50Ms: percentile(handoffs, 50),
    handoffP99Ms: percentile(handoffs, 99),
    refusals,
    timedOut: held.length < clients * perClient,
  };
}

type Target = 'statelock' | 'baseline' | 'postgres';

/**
 * Both modes against statelock (SQLite), the minimal in-memory-lock server and, where PostgreSQL is installed,
 * statelock on the PostgreSQL engine (a private cluster): the targets take turns going first in each run.
 * Rows: statelock ÷ the baseline; and `…, PostgreSQL engine`: statelock on PostgreSQL ÷ statelock on SQLite
 * (the lock cycle's convention; the note gives it ÷ the baseline).
 */
export async function contentionSuite(opts: { clients: number; perClient: number; runs: number; capSeconds: number }): Promise<{ figures: Figure[]; raw: unknown }> {
  const statelock = await startServer({ logLevel: 'warn' });
  const baseline = await startBaseline();
  let cluster: PgCluster | null = null;
  let onPg: RunningServer | null = null;
  const figures: Figure[] = [];
  const raw: Record<Mode, Record<Target, ContentionRun[]>> = {
    backoff: { statelock: [], baseline: [], postgres: [] },
    queue: { statelock: [], baseline: [], postgres: [] },
  };
  try {
    if (pgAvailable()) {
      cluster = await startPostgres();
      onPg = await startServer({ logLevel: 'warn', args: ['--database', cluster.url] });
    }
    const urls: Partial<Record<Target, string>> = { statelock: statelock.url, baseline: baseline.url, ...(onPg ? { postgres: onPg.url } : {}) };
    const targets = Object.keys(urls) as Target[];
    const paths: Record<Target, string> = { statelock: '/state/bench/contended', baseline: '/mutex/contended', postgres: '/state/bench/contended' };
    for (const mode of ['backoff', 'queue'] as const) {
      progress(`contention (${mode}): ${opts.clients} clients on one key × ${opts.perClient} acquisitions, ${opts.runs} runs per target (${targets.join(', ')})`);
      for (const t of targets) await contend(urls[t]!, paths[t], mode, opts.clients, 2, opts.capSeconds); // warm-up
      for (let run = 0; run < opts.runs; run++) {
        const order = [...targets.slice(run % targets.length), ...targets.slice(0, run % targets.length)];
        for (const t of order) raw[mode][t].push(await contend(urls[t]!, paths[t], mode, opts.clients, opts.perClient, opts.capSeconds));
      }
      const r = raw[mode];
      const series = (t: Target, k: keyof ContentionRun) => r[t].map((x) => Number(x[k]));
      const pick = (k: keyof ContentionRun, a: Target = 'statelock', b: Target = 'baseline') => ({ statelock: series(a, k), baseline: series(b, k) });
      const perAcquisition = (t: Target) => (median(series(t, 'refusals')) / (opts.clients * opts.perClient)).toFixed(1);
      const capped = (ts: Target[]) => (ts.some((t) => r[t].some((x) => x.timedOut)) ? `some runs hit the ${opts.capSeconds}s cap` : '');
      const label = mode === 'backoff' ? `client backoff ${BACKOFF.firstMs}→${BACKOFF.capMs} ms` : 'server queue ?wait=30s';
      const base = { benchmark: `3. contention, ${opts.clients} clients / 1 key, ${label}`, baselineName: 'minimal Node server + in-memory lock (same protocol, no storage)' };
      const refusals = mode === 'backoff' ? `423s per acquisition: statelock ${perAcquisition('statelock')}, baseline ${perAcquisition('baseline')}` : '';
      figures.push(figure({ ...base, metric: 'acquisitions/s', unit: '/s', better: 'higher', runs: pick('acquisitionsPerSecond'), note: [refusals, capped(['statelock', 'baseline'])].filter(Boolean).join('; ') }));
      figures.push(figure({ ...base, metric: 'hand-off p50', unit: 'ms', better: 'lower', runs: pick('handoffP50Ms') }));
      figures.push(figure({ ...base, metric: 'hand-off p99', unit: 'ms', better: 'lower', runs: pick('handoffP99Ms') }));
      progress(`  statelock ${median(series('statelock', 'acquisitionsPerSecond')).toFixed(0)} acq/s, baseline ${median(series('baseline', 'acquisitionsPerSecond')).toFixed(0)} acq/s${onPg ? `, on PostgreSQL ${median(series('postgres', 'acquisitionsPerSecond')).toFixed(0)} acq/s` : ''}`);
      if (onPg) {
        const pgBase = { benchmark: `${base.benchmark}, PostgreSQL engine`, baselineName: 'statelock on SQLite (same run)' };
        const vsBaseline = (median(series('postgres', 'acquisitionsPerSecond')) / median(series('baseline', 'acquisitionsPerSecond'))).toFixed(2);
        const pgRefusals = mode === 'backoff' ? `423s per acquisition: ${perAcquisition('postgres')} (SQLite ${perAcquisition('statelock')})` : '';
        const note = [`durable on both (PostgreSQL fsync on, one local cluster); vs the minimal in-memory lock ${vsBaseline}×`, pgRefusals, capped(['postgres'])].filter(Boolean).join('; ');
        figures.push(figure({ ...pgBase, metric: 'acquisitions/s', unit: '/s', better: 'higher', runs: pick('acquisitionsPerSecond', 'postgres', 'statelock'), note }));
        figures.push(figure({ ...pgBase, metric: 'hand-off p50', unit: 'ms', better: 'lower', runs: pick('handoffP50Ms', 'postgres', 'statelock') }));
        figures.push(figure({ ...pgBase, metric: 'hand-off p99', unit: 'ms', better: 'lower', runs: pick('handoffP99Ms', 'postgres', 'statelock') }));
      }
    }
  } finally {
    await statelock.stop();
    await baseline.stop();
    rmSync(statelock.dataDir, { recursive: true, force: true });
    if (onPg) {
      await onPg.stop();
      rmSync(onPg.dataDir, { recursive: true, force: true });
    }
    if (cluster) {
      await cluster.stop('fast');
      rmSync(cluster.dataDir, { recursive: true, force: true });
    }
  }
  return { figures, raw };
}
