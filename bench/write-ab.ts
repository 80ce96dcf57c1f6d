/**
 * A/B of server builds on state writes: each round starts every build's `statelock serve` once on a fresh data
 * dir, sends `--warm-ups` untimed writes, then `--writes` timed POSTs of the bench's state (`lib/state-gen.ts`,
 * serial increasing, `Content-MD5` as Terraform sends it, bodies made before any timing), and stops it; builds take
 * turns going first. Prints each round's median and the server's CPU per timed write (all its threads), then per
 * build the median of the rounds' medians and in how many rounds each build beat the first one. On this machine a
 * round's median moves by ±20% from one minute to the next: compare builds within rounds, over many rounds.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/write-ab.js [--mib 1] [--writes 40] [--rounds 8] [--warm-ups 1] old=/tmp/old-build new=.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseBuilds, startBuild, stopBuild, turnOrder } from './lib/ab-builds.js';
import { Client } from './lib/client.js';
import { StateTemplate } from './lib/state-gen.js';
import { median } from './lib/stats.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mib: { type: 'string', default: '1' },
    writes: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '8' },
    'warm-ups': { type: 'string', default: '1' },
  },
});
const builds = parseBuilds(positionals);
const writes = Number(values.writes);
const warmUps = Number(values['warm-ups']);
const template = StateTemplate.ofSize(Number(values.mib) * 1024 * 1024);
const bodies = Array.from({ length: warmUps + writes }, (_, i) => {
  const body = template.body(i + 1);
  return { body, md5: createHash('md5').update(body).digest('base64') };
});

/** CPU time of a process so far, all threads, in ms (utime + stime from /proc). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const medians = new Map<string, number[]>(builds.map((b) => [b.name, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const b of turnOrder(builds, r)) {
    const s = await startBuild(b);
    const client = new Client(s.url);
    try {
      const ms: number[] = [];
      let cpuAtStart = 0;
      for (let i = 0; i < bodies.length; i++) {
        if (i === warmUps) cpuAtStart = cpuMs(s.proc.pid!);
        const t0 = performance.now();
        const res = await client.send('POST', '/state/ab/write', bodies[i]!.body, { 'Content-Type': 'application/json', 'Content-MD5': bodies[i]!.md5 });
        if (res.status !== 200) throw new Error(`${b.name}: POST answered ${res.status} ${res.body.toString().slice(0, 200)}`);
        if (i >= warmUps) ms.push(performance.now() - t0);
      }
      const cpu = (cpuMs(s.proc.pid!) - cpuAtStart) / writes;
      const m = median(ms);
      medians.get(b.name)!.push(m);
      console.error(`round ${r} ${b.name}: median ${m.toFixed(2)} ms, server CPU ${cpu.toFixed(1)} ms per write`);
    } finally {
      client.close();
      await stopBuild(s);
    }
  }
}

const first = medians.get(builds[0]!.name)!;
for (const b of builds) {
  const m = medians.get(b.name)!;
  const faster = m.filter((v, i) => v < first[i]!).length;
  console.log(
    JSON.stringify({
      build: b.name,
      mib: Number(values.mib),
      warmUps,
      writes,
      rounds: m.length,
      medianMs: +median(m).toFixed(2),
      mibPerSecond: +(Number(values.mib) / (median(m) / 1000)).toFixed(1),
      ...(b === builds[0] ? {} : { fasterThanFirstInRounds: `${faster} of ${m.length}` }),
    }),
  );
}
