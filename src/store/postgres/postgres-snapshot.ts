import type pg from 'pg';
import { mapLock, mapVersion, type Row } from '../rows.js';
import type { KeySnapshot } from '../store.js';

/**
 * Everything a rule may read about one key — the current version, the highest serial of its lineage, the lock
 * (with its session), the version count and whether a probed lock ID was released — in ONE statement. Each
 * statement is a round trip to PostgreSQL, and an update used to make four or five of them before deciding;
 * a LOCK or UNLOCK is mostly round trips, so this is most of its latency.
 *
 * It runs after the transaction took the key's advisory lock, in its own statement: under READ COMMITTED a
 * statement reads the snapshot taken when it starts, so the reads must not share a statement with the wait for
 * the lock.
 *
 * Columns are named one by one (no `l.*`): the statement is prepared once per connection, and a prepared
 * statement whose result columns change under it (a newer replica migrating the table) fails.
 */

const VERSION_FIELDS = ['id', 'key', 'seq', 'serial', 'lineage', 'md5', 'sha256', 'size', 'encrypted', 'created_at', 'lock_id', 'operation', 'client_addr', 'forced', 'chunked'] as const;
const LOCK_FIELDS = ['key', 'lock_id', 'operation', 'who', 'version', 'created', 'info', 'path', 'raw', 'acquired_at', 'last_activity_at', 'client_addr', 'user_agent', 'session_id', 'holds'] as const;
const SESSION_FIELDS = ['id', 'key', 'ttl_ms', 'created_at', 'expires_at', 'last_heartbeat_at', 'ended_at', 'end_reason', 'client_addr', 'user_agent', 'holder', 'ci'] as const;

const SNAPSHOT_SQL = `SELECT ${[
  ...VERSION_FIELDS.map((f) => `v.${f} AS v_${f}`),
  ...LOCK_FIELDS.map((f) => `l.${f} AS l_${f}`),
  ...SESSION_FIELDS.map((f) => `s.${f} AS s_${f}`),
  'st.version_count AS st_version_count',
  'CASE WHEN v.id IS NULL THEN NULL ELSE (SELECT max(h.serial) FROM versions h WHERE h.key = $1 AND h.lineage = v.lineage) END AS st_highest',
  'CASE WHEN $2::text IS NULL THEN false ELSE EXISTS (SELECT 1 FROM released_locks r WHERE r.key = $1 AND r.lock_id = $2::text) END AS st_released',
].join(', ')}
FROM (VALUES (1)) AS one (x)
LEFT JOIN states st ON st.key = $1
LEFT JOIN versions v ON v.id = st.current_version_id
LEFT JOIN locks l ON l.key = $1
LEFT JOIN sessions s ON s.id = l.session_id`;

/** The columns of one prefix, under their own names (what the row mappers read). */
function part(row: Row, prefix: string, fields: readonly string[]): Row {
  const out: Row = {};
  for (const f of fields) out[f] = row[prefix + f];
  return out;
}

/** Reads the key's snapshot in one round trip, inside the caller's transaction. */
export async function readSnapshot(c: pg.PoolClient, key: string, probeLockId: string | null): Promise<KeySnapshot> {
  const row = (await c.query({ name: 'statelock_snapshot_v1', text: SNAPSHOT_SQL, values: [key, probeLockId] })).rows[0] as Row;
  const current = row.v_id === null ? null : mapVersion(part(row, 'v_', VERSION_FIELDS));
  // mapLock reads the joined session under the `s_` prefix, as this row already names it.
  const lock = row.l_lock_id === null ? null : mapLock({ ...row, ...part(row, 'l_', LOCK_FIELDS) });
  return {
    key,
    current,
    lock,
    versionCount: Number(row.st_version_count ?? 0),
    highestSerial: row.st_highest === null ? 0 : Number(row.st_highest),
    probedLockIdReleased: row.st_released === true,
  };
}
