import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '../../bench/lib/client.js';
import { startCeiling } from '../../bench/lib/processes.js';
import { lockBody } from '../support/http.js';

/**
 * The yardstick of `bench/lock-ceiling.ts` (bench/ceiling-server.ts) must do what its figures claim: take and
 * release locks as the http backend does, refuse a second holder, and keep an acknowledged lock across a
 * SIGKILL. Correctness only: its speed is measured by the bench, never here.
 */

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

for (const mode of ['one-thread', 'db-thread'] as const) {
  describe(`ceiling server, ${mode}`, () => {
    test('LOCK and UNLOCK answer as the http backend does, and an acknowledged lock survives a SIGKILL', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ceiling-test-'));
      dirs.push(dir);
      const first = await startCeiling(mode, dir);
      const c = new Client(first.url);
      const a = lockBody('id-a', 'OperationTypeApply', 'a@h', new Date().toISOString());
      const b = lockBody('id-b', 'OperationTypeApply', 'b@h', new Date().toISOString());
      try {
        assert.equal((await c.send('LOCK', '/state/k', a)).status, 200);
        assert.equal((await c.send('LOCK', '/state/k', b)).status, 423, 'a second holder is refused');
        assert.equal((await c.send('UNLOCK', '/state/k', b)).status, 409, 'only the holder releases');
        assert.equal((await c.send('UNLOCK', '/state/k', a)).status, 200);
        assert.equal((await c.send('LOCK', '/state/k', b)).status, 200, 'free again');
        assert.equal((await c.send('LOCK', '/state/other', 'not json')).status, 400);
      } finally {
        c.close();
        first.proc.kill('SIGKILL');
        await first.stop();
      }
      // What it acknowledged was on disk: b's lock is still held after the kill.
      const second = await startCeiling(mode, dir);
      const c2 = new Client(second.url);
      try {
        assert.equal((await c2.send('LOCK', '/state/k', a)).status, 423);
        assert.equal((await c2.send('UNLOCK', '/state/k', b)).status, 200);
      } finally {
        c2.close();
        await second.stop();
      }
    });
  });
}
