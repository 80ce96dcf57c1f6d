/**
 * The state-transfer suite alone (bench/suites/transfer.ts) without the PostgreSQL engine, for profiling
 * work on the transfer path: `node dist/bench/transfer-only.js [sizes MiB…]` (default 1 10 100; 3 runs each).
 * Prints the ratios against s3rver and the peak RSS ÷ size; writes nothing under bench/results.
 */
import { transferSuite } from './suites/transfer.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const { targets, figures } = await transferSuite(sizes.length ? sizes : [1, 10, 100], (mib) => (mib >= 100 ? { runs: 3, repeats: 1 } : { runs: 3, repeats: 3 }), ['baseline', 'statelock', 's3', 's3rver']);
for (const f of figures) if (/s3rver/.test(f.benchmark)) console.log(`${f.benchmark} | ${f.metric} | ${f.statelock.toFixed(1)} vs ${f.baseline.toFixed(1)} = ${f.ratio.toFixed(2)}×`);
for (const t of targets) console.log(`${t.met ? 'MET ' : 'not '} ${t.target}: ${t.measured}`);
