import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rmSync } from 'node:fs';
import { warmUpBodyPaths } from '../src/server/jit-warmup.js';
import { stateBody } from './support/http.js';
import { startServer } from './support/server-process.js';

/** The start-up warm-up (src/server/jit-warmup.ts) swallows failures so it can never stop a server: this is where a sample that stopped being a valid state would show. */
test('the start-up warm-up runs every round to completion on its synthetic states', async () => {
  const { rounds, completed } = await warmUpBodyPaths();
  assert.ok(rounds >= 10);
  assert.equal(completed, rounds);
});

test('serve --warm-up starts, and a state written right after start reads back byte for byte', async () => {
  const server = await startServer({ args: ['--warm-up'] });
  try {
    const body = stateBody(1, '0f6b4a2e-5c1d-4e8f-9a3b-7c2d1e0f9a8b');
    const put = await fetch(`${server.url}/state/warm/up`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(put.status, 200);
    assert.equal(await (await fetch(`${server.url}/state/warm/up`)).text(), body);
  } finally {
    await server.stop();
    rmSync(server.dataDir, { recursive: true, force: true });
  }
});
