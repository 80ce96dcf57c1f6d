/**
 * A/B of server builds on the lock cycle: each round starts every build's `statelock serve` once on a fresh data
 * dir (on disk, or tmpfs with `--tmpfs`), warms it up 0.5 s, runs N clients doing LOCK + UNLOCK for `--seconds`,
 * stops it; builds take turns going first. The load generator is this checkout's `cycles()` for every build, so
 * only the server differs. Prints each run, then per build the medians — cycles/s, cycle/LOCK/UNLOCK p50, p99,
 * server CPU per cycle (all threads, and the event loop alone) — and, from the WAL and `/metrics` of a last short
 * run, WAL frames (pages) per commit and updates per commit. A build is a directory holding `bin/statelock.js` and its `dist/` (a copy of an older build
 * with a `node_modules` link is enough); `name=dir@VAR=value` sets an environment variable for that build's server.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/lock-ab.js [--rounds 7] [--clients 1] [--seconds 3] [--tmpfs] old=/tmp/old-build new=.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseBuilds, startBuild, stopBuild, turnOrder, type Build } from './lib/ab-builds.js';
import { median } from './lib/stats.js';
import { cycles, type CycleRun } from './suites/lock-cycle.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '7' },
    clients: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '3' },
    tmpfs: { type: 'boolean', default: false },
  },
});
const builds: Build[] = parseBuilds(positionals);
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const start = (b: Build) => startBuild(b, values.tmpfs ? '/dev/shm' : undefined);
const stop = stopBuild;

/** Frames per commit in the WAL's current pass (each frame is one page written by the commit). */
function walFramesPerCommit(walFile: string): number {
  const wal = readFileSync(walFile);
  const pageSize = wal.readUInt32BE(8);
  const salt = [wal.readUInt32BE(16), wal.readUInt32BE(20)];
  let frames = 0;
  let commits = 0;
  let open = 0;
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    if (wal.readUInt32BE(at + 8) !== salt[0] || wal.readUInt32BE(at + 12) !== salt[1]) break;
    open++;
    if (wal.readUInt32BE(at + 4) !== 0) (frames += open), commits++, (open = 0);
  }
  return frames / commits;
}

const runs = new Map<string, CycleRun[]>(builds.map((b) => [b.name, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const b of turnOrder(builds, r)) {
    const s = await start(b);
    try {
      await cycles(s.url, '/state/ab-warm-up', clients, 0.5, 1e9, s.proc.pid, 'http');
      const run = await cycles(s.url, `/state/ab-${r}`, clients, seconds, 1e9, s.proc.pid, 'http');
      runs.get(b.name)!.push(run);
      console.error(
        `round ${r} ${b.name}: ${run.cyclesPerSecond.toFixed(0)} cycles/s, p50 ${run.p50Ms.toFixed(3)} ms (LOCK ${run.lockP50Ms.toFixed(3)}, UNLOCK ${run.unlockP50Ms.toFixed(3)}), p99 ${run.p99Ms.toFixed(2)} ms, server CPU ${run.serverCpuMsPerCycle.toFixed(3)} ms/cycle (event loop ${run.serverMainCpuMsPerCycle.toFixed(3)})`,
      );
    } finally {
      await stop(s);
    }
  }
}

for (const b of builds) {
  // Pages per commit: a short run, then the WAL as the killed server left it, and the commit counters.
  const s = await start(b);
  let pages = NaN;
  let updatesPerCommit = NaN;
  try {
    await cycles(s.url, '/state/ab-pages', clients, 0.5, 1e9, s.proc.pid, 'http');
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const counter = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(metrics)?.[1]);
    updatesPerCommit = counter('statelock_store_updates_total') / counter('statelock_store_commits_total');
    s.proc.kill('SIGKILL');
    await new Promise((r) => s.proc.once('exit', r));
    pages = walFramesPerCommit(join(s.dir, 'statelock.db-wal'));
  } finally {
    if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
    rmSync(s.dir, { recursive: true, force: true });
  }
  const rs = runs.get(b.name)!;
  const pick = (f: (r: CycleRun) => number, digits = 3) => +median(rs.map(f)).toFixed(digits);
  console.log(
    JSON.stringify({
      build: b.name,
      clients,
      tmpfs: values.tmpfs,
      runs: rs.length,
      seconds,
      cyclesPerSecond: Math.round(median(rs.map((r) => r.cyclesPerSecond))),
      p50Ms: pick((r) => r.p50Ms),
      lockP50Ms: pick((r) => r.lockP50Ms),
      unlockP50Ms: pick((r) => r.unlockP50Ms),
      p99Ms: pick((r) => r.p99Ms, 2),
      serverCpuMsPerCycle: pick((r) => r.serverCpuMsPerCycle),
      eventLoopCpuMsPerCycle: pick((r) => r.serverMainCpuMsPerCycle),
      walPagesPerCommit: +pages.toFixed(2),
      updatesPerCommit: +updatesPerCommit.toFixed(2),
    }),
  );
}
