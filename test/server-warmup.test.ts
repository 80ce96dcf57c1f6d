import assert from 'node:assert/strict';
import { test } from 'node:test';
import { warmUpBodyPaths } from '../src/server/jit-warmup.js';

/** The start-up warm-up (src/server/jit-warmup.ts) swallows failures so it can never stop a server: this is where a sample that stopped being a valid state would show. */
test('the start-up warm-up runs every round to completion on its synthetic states', async () => {
  const { rounds, completed } = await warmUpBodyPaths();
  assert.ok(rounds >= 10);
  assert.equal(completed, rounds);
});
