/**
 * How fast a state body is checked and its header read: the streaming StateHeaderReader against the
 * whole-body reader it replaced (Buffer's isUtf8, then the byte scanner scanTopLevelObject), on the same
 * realistic state (bench/lib/state-gen.ts), in the same run. Every figure is the median of several runs.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/state-scan-speed.js [--mib 100] [--runs 7]
 *
 * Not part of `npm run bench`: it measures one function, in this process, with no server.
 */
import { isUtf8 } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { StateHeaderReader, parseStateHeader } from '../src/state/state-file.js';
import { legacyParseStateHeader, scanTopLevelObject } from '../test/fuzz/legacy-state-header.js';
import { StateTemplate } from './lib/state-gen.js';

const arg = (name: string, dflt: number) => {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 ? Number(process.argv[k + 1]) : dflt;
};
const MIB = arg('mib', 100);
const RUNS = arg('runs', 7);
const PIECE = 64 * 1024; // what an HTTP request body arrives in

const body = StateTemplate.ofSize(MIB * 1024 * 1024).body(42);
const mib = body.length / (1024 * 1024);

const candidates: [string, () => unknown][] = [
  ['isUtf8 (native, old step 1)', () => isUtf8(body)],
  ['scanTopLevelObject (old step 2)', () => scanTopLevelObject(body)],
  ['old parseStateHeader (isUtf8 + scanTopLevelObject)', () => legacyParseStateHeader(body)],
  ['parseStateHeader (StateHeaderReader, one push)', () => parseStateHeader(body)],
  [`StateHeaderReader, ${PIECE / 1024} KiB pieces`, () => {
    const r = new StateHeaderReader();
    for (let i = 0; i < body.length; i += PIECE) r.push(body.subarray(i, i + PIECE));
    return r.end();
  }],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const times = new Map<string, number[]>(candidates.map(([name]) => [name, []]));
// Warm up once each, then take turns so that a busy moment of the machine hurts every candidate alike.
for (const [, fn] of candidates) fn();
for (let run = 0; run < RUNS; run++) {
  for (const [name, fn] of candidates) {
    const t0 = performance.now();
    fn();
    times.get(name)!.push(performance.now() - t0);
  }
}

console.log(`state: ${mib.toFixed(1)} MiB (bench/lib/state-gen.ts), median of ${RUNS} runs, Node ${process.version}`);
const old = median(times.get(candidates[2]![0])!);
console.log('| reader | median ms | MiB/s | ÷ old parseStateHeader |');
console.log('|---|---:|---:|---:|');
for (const [name] of candidates) {
  const ms = median(times.get(name)!);
  console.log(`| ${name} | ${ms.toFixed(1)} | ${((mib * 1000) / ms).toFixed(0)} | ${(old / ms).toFixed(2)}× |`);
}
