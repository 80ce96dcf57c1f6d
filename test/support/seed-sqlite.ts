import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { lockBody, stateBody } from './http.js';

/**
 * Fills a data directory with `count` states, fast: the store creates its schema, then one SQL transaction
 * inserts the rows (with synchronous=OFF: a fixture, not a durability test). Each key gets `versionsPerKey`
 * versions (serials 1…n) and the first `locked` keys a held lock. Keys are
 * `<prefix><n padded to 6 digits>/terraform.tfstate`, returned in key order. Start a server on the directory afterwards.
 */
export async function seedStates(dataDir: string, count: number, opts: { prefix?: string; versionsPerKey?: number; locked?: number } = {}): Promise<string[]> {
  const prefix = opts.prefix ?? 'fleet/svc-';
  const perKey = opts.versionsPerKey ?? 1;
  await new SqliteStore(dataDir).close(); // migrations
  const db = new Database(`${dataDir}/statelock.db`);
  db.pragma('synchronous = OFF');
  const insertVersion = db.prepare(
    `INSERT INTO versions (key, seq, serial, lineage, md5, sha256, size, encrypted, created_at, lock_id, operation, client_addr, forced, body)
     VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, '127.0.0.1', NULL, ?)`,
  );
  const insertState = db.prepare('INSERT INTO states (key, current_version_id, version_count, deleted_at, updated_at) VALUES (?, ?, ?, NULL, ?)');
  const insertLock = db.prepare(
    `INSERT INTO locks (key, lock_id, operation, who, version, created, info, path, raw, acquired_at, last_activity_at, client_addr, user_agent)
     VALUES (?, ?, 'OperationTypeApply', 'seed@host', '1.15.0', ?, '', '', ?, ?, ?, '127.0.0.1', 'seed')`,
  );
  const keys: string[] = [];
  const now = new Date().toISOString();
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const key = `${prefix}${String(i).padStart(6, '0')}/terraform.tfstate`;
      const lineage = `seed-${i}`;
      let last: number | bigint = 0;
      for (let serial = 1; serial <= perKey; serial++) {
        const body = Buffer.from(stateBody(serial, lineage));
        const md5 = createHash('md5').update(body).digest('base64');
        const sha = createHash('sha256').update(body).digest('hex');
        last = insertVersion.run(key, serial, serial, lineage, md5, sha, body.length, now, body).lastInsertRowid;
      }
      insertState.run(key, last, perKey, now);
      if (i < (opts.locked ?? 0)) insertLock.run(key, `seed-lock-${i}`, now, lockBody(`seed-lock-${i}`), now, now);
      keys.push(key);
    }
  })();
  db.close();
  return keys;
}
