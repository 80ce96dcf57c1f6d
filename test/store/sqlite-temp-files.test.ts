import assert from 'node:assert/strict';
import { readdirSync, watch } from 'node:fs';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { indexMark } from '../support/sqlite-files.js';

/**
 * Lock traffic makes SQLite create no temporary files. Every group-committed update runs in a savepoint, whose
 * sub-journal (a copy of each page the savepoint changes) SQLite moves to a temporary file past 64 KiB unless
 * `temp_store = MEMORY`; a by-key index catch-up changes a page per key in its savepoint. With temporary files
 * on disk, this server created, filled page by page and deleted one for every catch-up (sqlite-store.ts).
 * SQLite puts its temporary files in $SQLITE_TMPDIR: the test watches a fresh one.
 */

const servers: RunningServer[] = [];
after(() => Promise.all(servers.map((s) => s.stop())));

const KEYS = 48;
const LOOPS = 8;
const CYCLES_PER_LOOP = 400;

test('thousands of LOCK/UNLOCK cycles on 48 keys, with by-key index catch-ups between them, create no temporary file', async () => {
  const sqliteTmp = tempDir('statelock-sqlite-tmp-');
  let events = 0;
  const watcher = watch(sqliteTmp, () => void events++);
  try {
    const server = await startServer({ env: { SQLITE_TMPDIR: sqliteTmp } });
    servers.push(server);
    // Each loop cycles over its own 6 keys, so that every catch-up has rows of all 48 keys to file under them.
    await Promise.all(
      Array.from({ length: LOOPS }, async (_, loop) => {
        for (let i = 0; i < CYCLES_PER_LOOP; i++) {
          const url = `${server.url}/state/tmpfiles/key-${loop * (KEYS / LOOPS) + (i % (KEYS / LOOPS))}`;
          const body = lockBody(`tmpfiles-${loop}-${i}`);
          assert.equal((await rawRequest(url, { method: 'LOCK', body })).status, 200);
          assert.equal((await rawRequest(url, { method: 'UNLOCK', body })).status, 200);
        }
      }),
    );
    // The last rows are indexed by the timed catch-up (1 s after the first unindexed row): wait for it too.
    const rows = 2 * LOOPS * CYCLES_PER_LOOP;
    const mark = () => indexMark(server.dataDir, 'audit');
    for (let waited = 0; mark() < rows && waited < 10_000; waited += 100) await sleep(100);
    assert.equal(mark(), rows, 'every audit row was indexed by key (catch-ups by count, then by time)');
    await server.stop();
    await sleep(100); // the watcher's last events
    assert.deepEqual(readdirSync(sqliteTmp), []);
    assert.equal(events, 0, 'a temporary file was created (and deleted) in SQLITE_TMPDIR');
  } finally {
    watcher.close();
  }
});
