/**
 * The SQLite schema, as ordered migrations. `PRAGMA user_version` records how many have run; each runs
 * in its own transaction. Never edit a released migration: append a new one.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE states (
    key                TEXT PRIMARY KEY,
    current_version_id INTEGER,            -- NULL while the key is empty or soft-deleted
    version_count      INTEGER NOT NULL DEFAULT 0,
    deleted_at         TEXT,
    updated_at         TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    serial      INTEGER NOT NULL,
    lineage     TEXT NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    encrypted   INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    lock_id     TEXT,
    operation   TEXT,
    client_addr TEXT NOT NULL,
    forced      TEXT,
    body        BLOB NOT NULL,
    UNIQUE (key, seq)
  );
  CREATE INDEX versions_by_serial ON versions (key, serial, seq);

  CREATE TABLE locks (
    key              TEXT PRIMARY KEY,
    lock_id          TEXT NOT NULL,
    operation        TEXT NOT NULL,
    who              TEXT NOT NULL,
    version          TEXT NOT NULL,
    created          TEXT,
    info             TEXT NOT NULL,
    path             TEXT NOT NULL,
    raw              TEXT NOT NULL,
    acquired_at      TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    client_addr      TEXT NOT NULL,
    user_agent       TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    key         TEXT NOT NULL,
    lock_id     TEXT,
    outcome     TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    principal   TEXT,
    detail      TEXT NOT NULL
  );
  CREATE INDEX audit_by_key ON audit (key, id);
  CREATE INDEX audit_by_time ON audit (at);
  `,
  `
  -- Liveness (sessions with leases), fencing (released lock IDs) and rejected writes.
  CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    key               TEXT NOT NULL,
    ttl_ms            INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    last_heartbeat_at TEXT NOT NULL,
    ended_at          TEXT,
    end_reason        TEXT,
    client_addr       TEXT NOT NULL,
    user_agent        TEXT NOT NULL,
    holder            TEXT NOT NULL,
    ci                TEXT NOT NULL
  ) WITHOUT ROWID;

  ALTER TABLE locks ADD COLUMN session_id TEXT;

  CREATE TABLE released_locks (
    key         TEXT NOT NULL,
    lock_id     TEXT NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (key, lock_id)
  ) WITHOUT ROWID;

  CREATE TABLE rejected_writes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,
    lock_id     TEXT NOT NULL,
    at          TEXT NOT NULL,
    serial      INTEGER NOT NULL,
    lineage     TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    body        BLOB NOT NULL
  );
  CREATE INDEX rejected_by_key ON rejected_writes (key, id);
  `,
  `
  -- The S3 and DynamoDB doors: which doors hold a lock, buckets, lock tables and multipart uploads.
  ALTER TABLE locks ADD COLUMN holds TEXT NOT NULL DEFAULT 'http';

  CREATE TABLE buckets (
    name       TEXT PRIMARY KEY,
    region     TEXT NOT NULL,
    created_at TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE lock_tables (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    key          TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    client_addr  TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    md5         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    body        BLOB NOT NULL,
    PRIMARY KEY (upload_id, part_number)
  );
  `,
  `
  -- Principals: tokens (hashed) with grants, and their AWS access keys.
  CREATE TABLE principals (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    token_hash        TEXT NOT NULL,
    grants            TEXT NOT NULL,
    aws_access_key_id TEXT,
    aws_secret        TEXT,
    created_at        TEXT NOT NULL,
    revoked_at        TEXT
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX principals_live_name ON principals (name) WHERE revoked_at IS NULL;
  CREATE UNIQUE INDEX principals_access_key ON principals (aws_access_key_id) WHERE aws_access_key_id IS NOT NULL;
  `,
  `
  -- Bodies as content-addressed chunks (docs/storage.md). Rows written before keep their whole body
  -- (chunked = 0); new rows keep an empty body and their manifest in the refs tables.
  CREATE TABLE chunks (
    id        TEXT NOT NULL,
    size      INTEGER NOT NULL,  -- plaintext bytes
    codec     TEXT NOT NULL,     -- 'raw' | 'deflate'
    stored_at TEXT NOT NULL,     -- stored or last restamped: the sweep's grace runs from here
    data      BLOB NOT NULL      -- as stored: compressed, sealed under encryption at rest
  );
  CREATE UNIQUE INDEX chunks_by_id ON chunks (id);
  CREATE INDEX chunks_by_stamp ON chunks (stored_at);

  -- The refs name a chunk by its rowid (8 bytes, not its 64-character id).
  CREATE TABLE version_chunk_refs (
    version_id INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    chunk      INTEGER NOT NULL,
    PRIMARY KEY (version_id, n)
  ) WITHOUT ROWID;
  CREATE INDEX version_chunk_refs_by_chunk ON version_chunk_refs (chunk);

  CREATE TABLE rejected_chunk_refs (
    rejected_id INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    chunk       INTEGER NOT NULL,
    PRIMARY KEY (rejected_id, n)
  ) WITHOUT ROWID;
  CREATE INDEX rejected_chunk_refs_by_chunk ON rejected_chunk_refs (chunk);

  ALTER TABLE versions ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE rejected_writes ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0;
  `,
  `
  -- The audit trail without AUTOINCREMENT: every LOCK and UNLOCK appends an audit row, and AUTOINCREMENT made
  -- each of those commits write one more page (sqlite_sequence's) to the WAL. Audit rows are never deleted, so a
  -- plain INTEGER PRIMARY KEY (the largest id + 1) hands out the same ever-increasing ids. The rows keep their ids.
  CREATE TABLE audit_next (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    key         TEXT NOT NULL,
    lock_id     TEXT,
    outcome     TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    principal   TEXT,
    detail      TEXT NOT NULL
  );
  INSERT INTO audit_next (id, at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail)
    SELECT id, at, action, key, lock_id, outcome, client_addr, user_agent, principal, detail FROM audit ORDER BY id;
  DROP TABLE audit;  -- and its sqlite_sequence row
  ALTER TABLE audit_next RENAME TO audit;
  CREATE INDEX audit_by_key ON audit (key, id);
  CREATE INDEX audit_by_time ON audit (at);
  `,
  `
  -- Chunk lookups by id from the index alone: a re-sent state's writes look up every chunk twice (presentChunks,
  -- then the manifest check at commit), and each lookup through chunks_by_id also read the chunk's row, a
  -- random page of the big table, for its size or stamp. This index holds them (rowid included): ~3x cheaper.
  CREATE INDEX chunks_lookup ON chunks (id, size, stored_at);
  `,
  `
  -- The by-key indexes of the audit trail and of the released lock IDs, kept in batches (deferred-key-indexes.ts):
  -- as SQLite indexes they cost every LOCK and UNLOCK commit one WAL page per key it touched. Now both logs are
  -- appended in id order (their last page shared by every key) and a catch-up copies (key, id) pairs into the
  -- by-key tables; key_index_marks says up to which id each covers, the rest is read from the log by id range.
  CREATE TABLE key_index_marks (
    name TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
  ) WITHOUT ROWID;

  DROP INDEX audit_by_key;
  CREATE TABLE audit_key_index (
    key TEXT NOT NULL,
    id  INTEGER NOT NULL,
    PRIMARY KEY (key, id)
  ) WITHOUT ROWID;
  INSERT INTO audit_key_index (key, id) SELECT key, id FROM audit ORDER BY key, id;
  INSERT INTO key_index_marks (name, upto) SELECT 'audit', coalesce(max(id), 0) FROM audit;

  ALTER TABLE released_locks RENAME TO released_locks_by_key;
  CREATE TABLE released_locks (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    lock_id     TEXT NOT NULL,
    released_at TEXT NOT NULL
  );
  INSERT INTO released_locks (key, lock_id, released_at) SELECT key, lock_id, released_at FROM released_locks_by_key ORDER BY released_at, key, lock_id;
  DROP TABLE released_locks_by_key;
  CREATE TABLE released_key_index (
    key     TEXT NOT NULL,
    id      INTEGER NOT NULL,
    lock_id TEXT NOT NULL,
    PRIMARY KEY (key, id)
  ) WITHOUT ROWID;
  INSERT INTO released_key_index (key, id, lock_id) SELECT key, id, lock_id FROM released_locks ORDER BY key, id;
  INSERT INTO key_index_marks (name, upto) SELECT 'released_locks', coalesce(max(id), 0) FROM released_locks;
  `,
  `
  -- The versions' refs by chunk, kept in batches (sqlite-chunks.ts): as an SQLite index it cost every write a page
  -- per chunk of its state once the state had a long history (a chunk's entries, one per version, fill pages of
  -- their own): a re-sent 1 MiB state wrote ~600 KiB by its 400th version instead of ~80. Only the sweep and a
  -- rekey look refs up by chunk; they bring this table up to its mark's end first, holding the write lock.
  -- A version's id is handed out (AUTOINCREMENT: never reused) inside the write transaction that also writes its refs,
  -- so the refs above the mark are exactly those not filed yet.
  DROP INDEX version_chunk_refs_by_chunk;
  CREATE TABLE version_refs_by_chunk (
    chunk      INTEGER NOT NULL,
    version_id INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (chunk, version_id, n)
  ) WITHOUT ROWID;
  INSERT INTO version_refs_by_chunk (chunk, version_id, n) SELECT chunk, version_id, n FROM version_chunk_refs ORDER BY chunk, version_id, n;
  INSERT INTO key_index_marks (name, upto) SELECT 'version_refs_by_chunk', coalesce(max(version_id), 0) FROM version_chunk_refs;
  `,
];
