import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHECKPOINT_AFTER_BODY_BYTES } from '../../src/store/sqlite/sqlite-store.js';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';

/**
 * A write that stores at least CHECKPOINT_AFTER_BODY_BYTES of new chunks is checkpointed right after its answer
 * (while the room checked for its bytes is still there); a write that stores less — a re-sent state with a few
 * new chunks, most writes — is left to SQLite's auto-checkpoint. Seen on a real server from its WAL: after a
 * checkpoint that copied everything, the next commit starts the WAL over, with new salts in its header.
 */

const servers: RunningServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers.forEach((s) => rmSync(s.dataDir, { recursive: true, force: true }));
});

/** The WAL header's two salts: they change whenever the WAL starts over (after a checkpoint copied all of it). */
function walSalts(dataDir: string): string {
  const fd = openSync(join(dataDir, 'statelock.db-wal'), 'r');
  try {
    const header = Buffer.alloc(32);
    readSync(fd, header, 0, 32, 0);
    return header.subarray(16, 24).toString('hex');
  } finally {
    closeSync(fd);
  }
}

test('a write storing ≥ 1 MiB of new chunks is checkpointed after its answer; a re-sent state with a few new chunks is not', async () => {
  const server = await startServer();
  servers.push(server);
  const url = `${server.url}/state/checkpoint/app`;
  // Random base64 deflates to about 3/4: 3 MiB of it stores well over CHECKPOINT_AFTER_BODY_BYTES.
  const big = (seed: number) => ({ blob: randomBytes(3 * 1024 * 1024 * 0.75).toString('base64'), seed });
  assert.ok(3 * 1024 * 1024 * 0.7 > CHECKPOINT_AFTER_BODY_BYTES);
  const lineage = 'checkpoint-lineage';
  const first = big(1);
  // After each write: give the checkpoint (scheduled after the answer) time to run, then commit a lock cycle on
  // another key. If the checkpoint ran, that commit starts the WAL over.
  const saltsAfter = async (serial: number, extra: Record<string, unknown>) => {
    const res = await rawRequest(url, { method: 'POST', body: stateBody(serial, lineage, extra), headers: { 'Content-Type': 'application/json' } });
    assert.equal(res.status, 200, res.text);
    await sleep(300);
    const other = `${server.url}/state/checkpoint/other`;
    const body = lockBody(`checkpoint-${serial}`);
    assert.equal((await rawRequest(other, { method: 'LOCK', body })).status, 200);
    assert.equal((await rawRequest(other, { method: 'UNLOCK', body })).status, 200);
    return walSalts(server.dataDir);
  };
  const afterFirst = await saltsAfter(1, { big: first });
  // The same state re-sent with a new serial: a few new chunks (the header's), everything else already stored.
  const afterResent = await saltsAfter(2, { big: first });
  assert.equal(afterResent, afterFirst, 'the re-sent state was checkpointed (the WAL started over)');
  const afterAnotherResent = await saltsAfter(3, { big: first, note: 'a small change' });
  assert.equal(afterAnotherResent, afterFirst, 'a small change was checkpointed (the WAL started over)');
  // New content again: checkpointed.
  const afterNew = await saltsAfter(4, { big: big(2) });
  assert.notEqual(afterNew, afterAnotherResent, 'a write of 3 MiB of new content was not checkpointed');
});
