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

async function warmUpLogged(server: { stderr(): string }): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !server.stderr().includes('"warm-up done"')) await new Promise((r) => setTimeout(r, 20));
  return server.stderr().includes('"warm-up done"');
}

test('serve warms up by default, and a state written right after start reads back byte for byte', async () => {
  const server = await startServer({ logLevel: 'debug' });
  try {
    const body = stateBody(1, '0f6b4a2e-5c1d-4e8f-9a3b-7c2d1e0f9a8b');
    const put = await fetch(`${server.url}/state/warm/up`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(put.status, 200);
    assert.equal(await (await fetch(`${server.url}/state/warm/up`)).text(), body);
    assert.ok(await warmUpLogged(server), 'the warm-up ran');
    const done = server.stderr().split('\n').filter((l) => l.includes('"warm-up done"')).map((l) => JSON.parse(l) as { rounds: number; completed: number });
    assert.equal(done.length, 1);
    assert.equal(done[0]!.completed, done[0]!.rounds);
  } finally {
    await server.stop();
    rmSync(server.dataDir, { recursive: true, force: true });
  }
});

test('serve --no-warm-up skips it (and --warm-up, the old opt-in, is still accepted)', async () => {
  const skipped = await startServer({ logLevel: 'debug', args: ['--no-warm-up'] });
  try {
    const probe = await fetch(`${skipped.url}/state/warm/up`);
    assert.equal(probe.status, 404);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(skipped.stderr().includes('"warm-up done"'), false);
  } finally {
    await skipped.stop();
    rmSync(skipped.dataDir, { recursive: true, force: true });
  }
  const old = await startServer({ logLevel: 'debug', args: ['--warm-up'] });
  try {
    assert.ok(await warmUpLogged(old));
  } finally {
    await old.stop();
    rmSync(old.dataDir, { recursive: true, force: true });
  }
});
