import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { lockBody } from '../../test/support/http.js';
import { startServer } from '../../test/support/server-process.js';
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

export async function contentionSuite(opts: { clients: number; perClient: number; runs: number; capSeconds: number }): Promise<{ figures: Figure[]; raw: unknown }> {
  const statelock = await startServer({ logLevel: 'warn' });
  const baseline = await startBaseline();
  const figures: Figure[] = [];
  const raw: Record<Mode, { statelock: ContentionRun[]; baseline: ContentionRun[] }> = {
    backoff: { statelock: [], baseline: [] },
    queue: { statelock: [], baseline: [] },
  };
  try {
    const targets = { statelock: `${statelock.url}`, baseline: `${baseline.url}` };
    const paths = { statelock: '/state/bench/contended', baseline: '/mutex/contended' };
    for (const mode of ['backoff', 'queue'] as const) {
      progress(`contention (${mode}): ${opts.clients} clients on one key × ${opts.perClient} acquisitions, ${opts.runs} runs per target`);
      for (const t of ['statelock', 'baseline'] as const) await contend(targets[t], paths[t], mode, opts.clients, 2, opts.capSeconds); // warm-up
      for (let run = 0; run < opts.runs; run++) {
        const order = run % 2 === 0 ? (['baseline', 'statelock'] as const) : (['statelock', 'baseline'] as const);
        for (const t of order) raw[mode][t].push(await contend(targets[t], paths[t], mode, opts.clients, opts.perClient, opts.capSeconds));
      }
      const r = raw[mode];
      const pick = (k: keyof ContentionRun) => ({ statelock: r.statelock.map((x) => Number(x[k])), baseline: r.baseline.map((x) => Number(x[k])) });
      const label = mode === 'backoff' ? `client backoff ${BACKOFF.firstMs}→${BACKOFF.capMs} ms` : 'server queue ?wait=30s';
      const base = { benchmark: `3. contention, ${opts.clients} clients / 1 key, ${label}`, baselineName: 'minimal Node server + in-memory lock (same protocol, no storage)' };
      const timedOut = [...r.statelock, ...r.baseline].some((x) => x.timedOut);
      const refusals = mode === 'backoff' ? `423s per acquisition: statelock ${(median(pick('refusals').statelock) / (opts.clients * opts.perClient)).toFixed(1)}, baseline ${(median(pick('refusals').baseline) / (opts.clients * opts.perClient)).toFixed(1)}` : '';
      figures.push(figure({ ...base, metric: 'acquisitions/s', unit: '/s', better: 'higher', runs: pick('acquisitionsPerSecond'), note: [refusals, timedOut ? `some runs hit the ${opts.capSeconds}s cap` : ''].filter(Boolean).join('; ') }));
      figures.push(figure({ ...base, metric: 'hand-off p50', unit: 'ms', better: 'lower', runs: pick('handoffP50Ms') }));
      figures.push(figure({ ...base, metric: 'hand-off p99', unit: 'ms', better: 'lower', runs: pick('handoffP99Ms') }));
      progress(`  statelock ${median(pick('acquisitionsPerSecond').statelock).toFixed(0)} acq/s, baseline ${median(pick('acquisitionsPerSecond').baseline).toFixed(0)} acq/s`);
    }
  } finally {
    await statelock.stop();
    await baseline.stop();
    rmSync(statelock.dataDir, { recursive: true, force: true });
  }
  return { figures, raw };
}
