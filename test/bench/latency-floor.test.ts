import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeFloor, durableCycleFloorMs } from '../../bench/lib/latency-floor.js';

/** The arithmetic behind the single-client latency target's floor (bench/lib/latency-floor.ts). */
describe('durable single-client cycle floor', () => {
  test('two fdatasyncs and the bare HTTP round trips', () => {
    assert.equal(durableCycleFloorMs(0.25, 0.5), 1);
    assert.equal(durableCycleFloorMs(0.25, 0.5, 1), 0.75);
    assert.throws(() => durableCycleFloorMs(-1, 0.5), RangeError);
    assert.throws(() => durableCycleFloorMs(0.2, Number.NaN), RangeError);
  });

  test('says whether the target is below the floor, and what the server added', () => {
    const under = describeFloor(1, 0.17, 0.25, 0.78);
    assert.match(under, /^Floor here: 2 fdatasyncs \(p50 0\.170 ms each.*= 0\.590 ms, 0\.410 ms under the 1 ms target; statelock's own work added 0\.190 ms$/);
    const over = describeFloor(1, 0.38, 0.49, 1.39);
    assert.match(over, /= 1\.250 ms, above the 1 ms target: no durable Node server can meet it on this machine as it was; statelock's own work added 0\.140 ms$/);
  });
});
