import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundRatios } from '../../bench/lib/stats.js';

test('roundRatios: pairs run i with run i, gives the range and the rounds at the target', () => {
  // Medians alone would say 2.5× (5 vs 2); round by round the ratio moved from 2 to 3.
  const r = roundRatios([4, 5, 9], [2, 2, 3], 3);
  assert.deepEqual(r, { min: 2, max: 3, reached: 1, rounds: 3 });
});

test('roundRatios: a run without its partner, or with a zero baseline, is left out; none left gives null', () => {
  assert.deepEqual(roundRatios([6, 6, 6], [2, 0], 3), { min: 3, max: 3, reached: 1, rounds: 1 });
  assert.equal(roundRatios([1], [0], 3), null);
  assert.equal(roundRatios([], [], 3), null);
});
