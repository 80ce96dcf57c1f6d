import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { stateBody } from './http.js';

/**
 * Fills a data directory with `count` states of one version each, fast: the store creates its schema,
 * then one SQL transaction inserts the rows (with synchronous=OFF: a fixture, not a durability test).
 * Keys are `<prefix><n padded to 6 digits>/terraform.tfstate`. Start a server on the directory afterwards.
 */
export async function seedStates(dataDir: string, count: number, prefix = 'fleet/svc-'): Promise<string[]> {
  await new SqliteStore(dataDir).close(); // migrations
  const db = new Database(`${dataDir}/statelock.db`);
  db.pragma('synchronous = OFF');
  const insertVersion = db.prepare(
    `INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, body)
     VALUES (?, 1, 1, ?, ?, ?, ?, 0, ?, NULL, NULL, '127.0.0.1', NULL, ?)`,
  );
  const insertState = db.prepare('INSERT INTO states (key, current_version_id, version_count, deleted_at, updated_at) VALUES (?, ?, 1, NULL, ?)');
  const keys: string[] = [];
  const now = new Date().toISOString();
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const key = `${prefix}${String(i).padStart(6, '0')}/terraform.tfstate`;
      const lineage = `seed-${i}`;
      const body = Buffer.from(stateBody(1, lineage));
      const md5 = createHash('md5').update(body).digest('base64');
      const sha = createHash('sha256').update(body).digest('hex');
      const { lastInsertRowid } = insertVersion.run(key, lineage, md5, sha, body.length, now, body);
      insertState.run(key, lastInsertRowid, now);
      keys.push(key);
    }
  })();
  db.close();
  return keys;
}
