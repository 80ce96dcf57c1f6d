import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from './server-process.js';

/** Read-only looks at a server's SQLite files from beside it (WAL mode: a reader does not disturb the server). */

/** The commits of the WAL's current pass, oldest first: the page numbers of each one's frames. */
export function walCommits(walFile: string): number[][] {
  const wal = readFileSync(walFile);
  const pageSize = wal.readUInt32BE(8);
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  const commits: number[][] = [];
  let frames: number[] = [];
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    // Frames left from an earlier pass carry other salts: the current pass ends there.
    if (wal.readUInt32BE(at + 8) !== salt1 || wal.readUInt32BE(at + 12) !== salt2) break;
    frames.push(wal.readUInt32BE(at));
    if (wal.readUInt32BE(at + 4) !== 0) commits.push(frames), (frames = []); // a commit frame: the database's size after it
  }
  return commits;
}

/**
 * A copy of a running server's data directory (its files as they are now) and, by dbstat, the b-tree each page of
 * it belongs to. The copy goes in a new temporary directory, which the caller removes.
 */
export function snapshotWithPageOwners(dataDir: string): { dir: string; owner: (page: number) => string } {
  const dir = tempDir('statelock-pages-');
  cpSync(dataDir, dir, { recursive: true });
  const db = new Database(join(dir, 'statelock.db'), { readonly: true });
  try {
    const owners = new Map((db.prepare('SELECT pageno, name FROM dbstat').all() as Array<{ pageno: number; name: string }>).map((r) => [r.pageno, r.name]));
    return { dir, owner: (page) => owners.get(page) ?? `page ${page}` };
  } finally {
    db.close();
  }
}

/** Up to which row a deferred index covers its log (`key_index_marks`: 'audit', 'released_locks', 'version_refs_by_chunk'). */
export function indexMark(dataDir: string, name: string): number {
  const db = new Database(join(dataDir, 'statelock.db'), { readonly: true });
  try {
    return (db.prepare('SELECT upto FROM key_index_marks WHERE name = ?').get(name) as { upto: number }).upto;
  } finally {
    db.close();
  }
}
