import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { PG_SKIP_REASON, pgAvailable, psql, startPostgres } from './support/postgres.js';

const STORE_MODULE = new URL('../src/store/postgres/postgres-store.js', import.meta.url).href;

/** Runs `script` (an ES module) in a fresh Node process with `arg`; its exit code, or null if it had not exited in `ms`. */
function runModule(script: string, arg: string, ms: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, arg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: null, stderr });
    }, ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('PostgresStore.close', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  // The store opens a LISTEN connection in the background. A short-lived user (statelock rekey, a server stopped
  // right after it started) may close the store before that connection is up; it must still be ended, or the
  // process never exits (seen as `statelock rekey` hanging on a loaded machine).
  test('closing right after open ends every connection, the LISTEN one still connecting too: the process exits by itself', async () => {
    const pg = await startPostgres();
    try {
      const script = `import { PostgresStore } from ${JSON.stringify(STORE_MODULE)}; const s = await PostgresStore.open(process.argv.at(-1)); await s.close();`;
      for (let i = 0; i < 3; i++) {
        const run = await runModule(script, pg.url, 10_000);
        assert.equal(run.code, 0, `round ${i}: the process ${run.code === null ? 'had not exited after 10 s' : `exited with ${run.code}`}; stderr: ${run.stderr}`);
      }
      const left = await psql(pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'statelock' AND pid <> pg_backend_pid()");
      assert.equal(left, '0', 'no connection left behind');
    } finally {
      await pg.stop('fast');
    }
  });
});
