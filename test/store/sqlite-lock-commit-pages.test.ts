import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { indexMark, snapshotWithPageOwners, walCommits } from '../support/sqlite-files.js';

/**
 * What one LOCK and one UNLOCK commit write to the WAL, read from the WAL file of a real server: each page
 * written is a frame (24-byte header + the page), and every frame costs the commit that writes it — before its
 * fsync — a write and its checksum. A LOCK writes the lock's page and the audit row's two (the table and its
 * index by time); an UNLOCK also the released lock ID's page (fencing). The by-key indexes of both logs are not
 * among them: they are written in batches (deferred-key-indexes.ts). Keeps that number from creeping up unnoticed.
 */

const servers: RunningServer[] = [];
after(() => Promise.all(servers.map((s) => s.stop())));

test('a LOCK commit writes 3 pages to the WAL and an UNLOCK commit 4 — none of them sqlite_sequence or a by-key index', async () => {
  const server = await startServer();
  servers.push(server);
  const url = `${server.url}/state/pages/app`;
  // Twice: the first LOCK of a fresh database may grow it (page 1, new leaves); the second cycle shows the steady state.
  let before = 0;
  for (let i = 0; i < 2; i++) {
    const body = lockBody(`pages-lock-${i}`);
    before = walCommits(join(server.dataDir, 'statelock.db-wal')).length;
    assert.equal((await rawRequest(url, { method: 'LOCK', body })).status, 200);
    assert.equal((await rawRequest(url, { method: 'UNLOCK', body })).status, 200);
  }
  // The by-key indexes catch up 1 s after the first row (or sooner on a slow machine): wait for it, so that the
  // copy below is not taken while it commits; its commits are told apart by the marks' page.
  for (const end = Date.now() + 10_000; indexMark(server.dataDir, 'audit') < 4; ) {
    assert.ok(Date.now() < end, 'the catch-up indexed the 4 audit rows');
    await sleep(50);
  }

  // Which b-tree each page belongs to (dbstat), on a copy: the server keeps running on its own files.
  const copy = snapshotWithPageOwners(server.dataDir);
  const names = (pages: number[]) => pages.map(copy.owner).sort();

  const commits = walCommits(join(copy.dir, 'statelock.db-wal')).slice(before).map(names);
  const catchUps = commits.filter((c) => c.includes('key_index_marks'));
  assert.ok(catchUps.length >= 1, 'the catch-up committed after the cycles');
  for (const c of catchUps) {
    assert.deepEqual(c.filter((n) => ['audit', 'audit_by_time', 'locks', 'released_locks'].includes(n)), [], 'a catch-up writes the by-key tables, not the logs or the locks');
  }
  const cycle = commits.filter((c) => !c.includes('key_index_marks'));
  assert.equal(cycle.length, 2, 'one commit each for the LOCK and the UNLOCK');
  const [lock, unlock] = cycle as [string[], string[]];

  assert.deepEqual(lock, ['audit', 'audit_by_time', 'locks']);
  assert.deepEqual(unlock, ['audit', 'audit_by_time', 'locks', 'released_locks']);
});
