import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cpuBudget, describeBudget, overBudget } from '../../bench/lib/cpu-budget.js';

/** The arithmetic behind the bench's "what the target needs" sentences (bench/lib/cpu-budget.ts). */
describe('cpu budget of a throughput target', () => {
  test('the load generator takes its share of the cores at the target rate; the rest is the server\'s', () => {
    // 10,000 ops/s, 2 cores, the generator at 0.05 ms per op: 0.5 cores for it, 1.5 left = 0.15 ms per op.
    const b = cpuBudget(10_000, 2, 0.05);
    assert.equal(b.generatorCores, 0.5);
    assert.ok(Math.abs(b.serverMsPerOp - 0.15) < 1e-12);
    assert.equal(b.oneThreadMsPerOp, 0.1);
  });

  test('a generator that needs every core leaves the server nothing', () => {
    assert.equal(cpuBudget(1000, 2, 3).serverMsPerOp, 0);
  });

  test('refuses a rate, core count or generator cost that cannot be', () => {
    assert.throws(() => cpuBudget(0, 2, 0.1), RangeError);
    assert.throws(() => cpuBudget(100, 0, 0.1), RangeError);
    assert.throws(() => cpuBudget(100, 2, Number.NaN), RangeError);
  });

  test('names the bound that is broken and the factor the tighter one asks for', () => {
    const b = cpuBudget(10_000, 2, 0.05); // ≤ 0.15 ms in all, ≤ 0.1 ms on one thread
    const within = overBudget(b, { allThreadsMsPerOp: 0.12, mainThreadMsPerOp: 0.09 });
    assert.equal(within.allThreads || within.oneThread, false);
    assert.ok(Math.abs(within.shrinkBy - 0.9) < 1e-12, 'below 1: room to spare');
    const oneThread = overBudget(b, { allThreadsMsPerOp: 0.12, mainThreadMsPerOp: 0.11 });
    assert.equal(oneThread.allThreads, false);
    assert.equal(oneThread.oneThread, true);
    assert.ok(Math.abs(oneThread.shrinkBy - 1.1) < 1e-12);
    const both = overBudget(b, { allThreadsMsPerOp: 0.3, mainThreadMsPerOp: 0.2 });
    assert.equal(both.allThreads && both.oneThread, true);
    assert.ok(Math.abs(both.shrinkBy - 2) < 1e-12, 'the larger of 0.3 ÷ 0.15 and 0.2 ÷ 0.1');
    assert.equal(overBudget(cpuBudget(1000, 2, 3), { allThreadsMsPerOp: 0.1, mainThreadMsPerOp: 0.1 }).shrinkBy, Infinity);
  });

  test('the sentence carries the figures and the verdict', () => {
    const text = describeBudget(cpuBudget(10_000, 2, 0.05), { allThreadsMsPerOp: 0.12, mainThreadMsPerOp: 0.11 }, { op: 'cycle', rate: '10,000 cycles/s' });
    assert.match(text, /^at 10,000 cycles\/s the load generator takes 0\.50 of the 2 cores, leaving the server ≤ 0\.150 ms of CPU per cycle \(≤ 0\.100 ms on any one thread\)/);
    assert.match(text, /it spent 0\.120 ms, 0\.110 ms of it on its event loop — over the one-thread bound: the server's CPU per cycle would have to shrink 1\.10×$/);
    assert.match(describeBudget(cpuBudget(10_000, 2, 0.05), { allThreadsMsPerOp: 0.1, mainThreadMsPerOp: 0.05 }, { op: 'cycle', rate: 'x' }), /within both bounds: CPU alone does not rule the target out$/);
  });
});
