import { readFileSync } from 'node:fs';
import pg from 'pg';

/**
 * Loads a plain SQL dump (test/fixtures/legacy-postgres-v3/statelock.sql: schema and rows as pg_dump wrote
 * them) into the empty database at `url`, in one simple-protocol round trip.
 */
export async function loadSqlDump(url: string, file: URL | string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(readFileSync(file, 'utf8'));
  } finally {
    await client.end();
  }
}
