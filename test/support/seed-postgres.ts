import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';

/**
 * The PostgreSQL twin of seed-sqlite.ts: fills a database with `count` states, fast, for scale tests and the
 * bench. The store runs its migrations, then one transaction builds the rows inside the database with
 * `generate_series` (1,000,000 versions need no round trip each). The rows are the SQLite seed's, byte for byte:
 * keys `<prefix><n padded to 6 digits>/terraform.tfstate`, lineage `seed-<n>`, serials 1…versionsPerKey, each
 * body `stateBody(serial, lineage)` (kept whole, as rows written before chunked storage are: readable through
 * the same path), its MD5 (base64) and SHA-256 (hex) computed by PostgreSQL, and the first `locked` keys held.
 * Returns the keys in key order. Start a server on the database afterwards.
 */
export async function seedStatesPostgres(url: string, count: number, opts: { prefix?: string; versionsPerKey?: number; locked?: number } = {}): Promise<string[]> {
  const prefix = opts.prefix ?? 'fleet/svc-';
  const perKey = opts.versionsPerKey ?? 1;
  const locked = opts.locked ?? 0;
  await (await PostgresStore.open(url)).close(); // migrations
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    // A fixture, not a durability test (as the SQLite seed's synchronous=OFF).
    await client.query('SET LOCAL synchronous_commit = off');
    const now = new Date().toISOString();
    // One row per (key, serial): the key's number, the serial and the body, as stateBody() renders it.
    await client.query(
      `CREATE TEMP TABLE seed ON COMMIT DROP AS
         SELECT k, s, $1::text || lpad(k::text, 6, '0') || '/terraform.tfstate' AS key, 'seed-' || k AS lineage,
                convert_to(format(E'{\\n  "version": 4,\\n  "terraform_version": "1.15.0",\\n  "serial": %s,\\n  "lineage": "seed-%s",\\n  "outputs": {},\\n  "resources": [],\\n  "check_results": null\\n}\\n', s, k), 'UTF8') AS body
           FROM generate_series(0, $2::int - 1) AS k, generate_series(1, $3::int) AS s`,
      [prefix, count, perKey],
    );
    await client.query(
      `INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, chunked)
       SELECT key, s, s, lineage, encode(decode(md5(body), 'hex'), 'base64'), encode(sha256(body), 'hex'), length(body), false, $1, NULL, NULL, '127.0.0.1', NULL, false
         FROM seed ORDER BY k, s`,
      [now],
    );
    await client.query(
      `INSERT INTO version_chunks (version_id, n, data)
       SELECT v.id, 0, seed.body FROM seed JOIN versions v ON v.key = seed.key AND v.seq = seed.s`,
    );
    await client.query(
      `INSERT INTO states (key, current_version_id, version_count, deleted_at, updated_at)
       SELECT key, id, seq, NULL, $1 FROM versions WHERE seq = $2 AND key LIKE $3`,
      [now, perKey, `${prefix.replace(/[\\%_]/g, '\\$&')}%`],
    );
    await client.query(
      `INSERT INTO locks (key, lock_id, operation, who, version, created, info, path, raw, acquired_at, last_activity_at, client_addr, user_agent)
       SELECT $1::text || lpad(k::text, 6, '0') || '/terraform.tfstate', 'seed-lock-' || k, 'OperationTypeApply', 'seed@host', '1.15.0', $2, '', '',
              '{"ID":"seed-lock-' || k || '","Operation":"OperationTypeApply","Info":"","Who":"alice@build-07","Version":"1.15.0","Created":"2026-08-21T13:10:23.12345Z","Path":""}',
              $2, $2, '127.0.0.1', 'seed'
         FROM generate_series(0, LEAST($3::int, $4::int) - 1) AS k`,
      [prefix, now, locked, count],
    );
    await client.query('COMMIT');
    await client.query('ANALYZE');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(6, '0')}/terraform.tfstate`);
}
