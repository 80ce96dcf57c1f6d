import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { findPgBin, PG_SKIP_REASON, pgAvailable, psql, startPostgres } from './support/postgres.js';

// The PostgreSQL test infrastructure itself: private clusters that start, crash, come back with their data, and stop.
describe('postgres test clusters', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  test('findPgBin finds initdb and pg_ctl', () => {
    const bin = findPgBin();
    assert.ok(bin);
    assert.ok(existsSync(`${bin}/initdb`) && existsSync(`${bin}/pg_ctl`));
  });

  test('a cluster starts, survives an immediate (crash) stop with its data, restarts, and stops cleanly', async () => {
    const pg = await startPostgres();
    try {
      assert.match(pg.url, new RegExp(`^postgres://statelock@127\\.0\\.0\\.1:${pg.port}/statelock$`));
      assert.equal(await psql(pg, 'select 1'), '1');
      assert.equal(await psql(pg, 'select current_database() || \' \' || current_user'), 'statelock statelock');
      assert.equal(await psql(pg, 'show fsync'), 'on');
      assert.equal(await psql(pg, 'show max_connections'), '200');

      await psql(pg, "create table t (id int primary key, v text); insert into t values (1, 'before the crash')");
      await pg.stop('immediate');
      await assert.rejects(psql(pg, 'select 1'), /Connection refused|could not connect|connection to server/i);

      await pg.start();
      assert.equal(await psql(pg, 'select v from t where id = 1'), 'before the crash', 'committed rows survive a crash');

      await psql(pg, "insert into t values (2, 'before the restart')");
      await pg.restart();
      assert.equal(await psql(pg, 'select count(*) from t'), '2');
    } finally {
      await pg.stop();
    }
    await assert.rejects(psql(pg, 'select 1'), /Connection refused|could not connect|connection to server/i);
    await pg.stop(); // stopping a stopped cluster is a no-op
  });

  test('two clusters run side by side on different ports, each with its own data', async () => {
    const [a, b] = await Promise.all([startPostgres(), startPostgres()]);
    try {
      assert.notEqual(a.port, b.port);
      assert.notEqual(a.dataDir, b.dataDir);
      await psql(a, "create table only_a (x int); insert into only_a values (42)");
      assert.equal(await psql(a, 'select x from only_a'), '42');
      await assert.rejects(psql(b, 'select x from only_a'), /does not exist/);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
