import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ClientContext } from '../src/audit/audit-entry.js';
import { StatelockError } from '../src/server/errors.js';
import { PostgresStore } from '../src/store/postgres/postgres-store.js';
import { CHUNK_RESTAMP_MS, CHUNK_SWEEP_GRACE_MS, type ChunkRef, type Store, type StoredChunk } from '../src/store/store.js';
import { findPgBin, PG_SKIP_REASON, pgAvailable, psql, startPostgres, type PgCluster } from './support/postgres.js';

/**
 * The PostgreSQL chunk store beside itself: several store instances on one database stand for replicas.
 * The conformance cases check the contract one call at a time; these check what only concurrency shows —
 * replicas storing the same chunks at once, a sweep running beside writers, and the stamps that protect
 * a write in flight.
 */
const client: ClientContext = { addr: '127.0.0.1', userAgent: 'test', principal: null };

const chunkOf = (store: Store, bytes: Buffer): StoredChunk => ({ id: store.chunkId(bytes), size: bytes.length, codec: 'raw', data: bytes });
const refs = (chunks: StoredChunk[]): ChunkRef[] => chunks.map(({ id, size }) => ({ id, size }));

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('PostgreSQL chunk store: replicas at once', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  let pg: PgCluster;
  let n = 0;
  /** A fresh database and `count` store instances on it. */
  async function replicas(count: number): Promise<PostgresStore[]> {
    const name = `chunks_${++n}`;
    await psql(pg, `CREATE DATABASE ${name}`);
    const url = pg.url.replace(/\/statelock$/, `/${name}`);
    const stores: PostgresStore[] = [];
    for (let i = 0; i < count; i++) stores.push(await PostgresStore.open(url));
    return stores;
  }
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg.stop('fast');
  });

  test('four replicas storing the same chunks at once, each in its own order: no error, no deadlock, each chunk stored once', async () => {
    const stores = await replicas(4);
    try {
      const rounds = 8;
      for (let round = 0; round < rounds; round++) {
        const chunks = Array.from({ length: 300 }, (_, i) => chunkOf(stores[0]!, Buffer.from(`round ${round} chunk ${i} ${'x'.repeat(i)}`)));
        // Each replica sends every chunk, in its own order, in three calls (as the ingest's batches would).
        await Promise.all(
          stores.map(async (s, r) => {
            const mine = shuffled(chunks, round * 10 + r + 1);
            for (let at = 0; at < mine.length; at += 100) await s.putChunks(mine.slice(at, at + 100));
          }),
        );
      }
      assert.equal((await stores[0]!.chunkStats()).chunks, rounds * 300);
    } finally {
      for (const s of stores) await s.close();
    }
  });

  test('a sweep running beside writers (no grace at all): a write either commits with every chunk it names or fails CHUNK_GONE', async () => {
    const stores = await replicas(2);
    try {
      await sweepBesideWriters(stores[0]!, stores[1]!);
    } finally {
      for (const s of stores) await s.close();
    }
  });

  async function sweepBesideWriters(w: Store, sw: Store): Promise<void> {
    const shared = chunkOf(w, Buffer.from(`shared ${'s'.repeat(3000)}`));
    const outcomes = { committed: 0, missing: 0, swept: 0 };
    let stop = false;
    // Every 4th write runs while the sweeper pauses (after its current sweep), so some writes surely commit
    // and are checked below however the race goes on a loaded machine; the others race it.
    let hold = false;
    let inSweep: Promise<number> = Promise.resolve(0);
    let quietCommitted = 0;
    // The cut-off is in the future: every unreferenced chunk is fair game, even one put a moment ago.
    const sweeper = (async () => {
      while (!stop) {
        if (hold) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        inSweep = sw.sweepChunks(new Date(Date.now() + 3_600_000).toISOString());
        outcomes.swept += await inSweep;
      }
    })();
    const committed: Array<{ key: string; body: Buffer }> = [];
    try {
      for (let i = 0; i < 300; i++) {
        const own = Buffer.from(`write ${i} ${randomBytes(16).toString('hex')}`);
        const chunks = [shared, chunkOf(w, own)];
        const body = Buffer.concat(chunks.map((c) => c.data));
        const key = `sweep/${i % 7}`;
        const quiet = i % 4 === 0;
        if (quiet) {
          hold = true;
          await inSweep;
        }
        try {
          await w.putChunks(chunks);
          await w.update(key, client, (snap) => ({
            result: null,
            changes: {
              newVersion: { seq: snap.versionCount + 1, serial: snap.versionCount + 1, lineage: 'L', md5: 'm', sha256: 's', size: body.length, encrypted: false, createdAt: new Date().toISOString(), lockId: null, operation: null, clientAddr: client.addr, forced: null, chunks: refs(chunks) },
            },
          }));
          committed.push({ key, body });
          outcomes.committed++;
          if (quiet) quietCommitted++;
        } catch (err) {
          if (!(err instanceof StatelockError && err.code === 'CHUNK_GONE')) throw err;
          outcomes.missing++;
        } finally {
          hold = false;
        }
      }
    } finally {
      stop = true;
      await sweeper;
    }
    assert.equal(quietCommitted, 75, `every write made while the sweeper paused committed (${JSON.stringify(outcomes)})`);
    // Every committed version reads back whole: no committed row names a chunk the sweep took.
    const seqs = new Map<string, number>();
    for (const { key, body } of committed) {
      const seq = (seqs.get(key) ?? 0) + 1;
      seqs.set(key, seq);
      const content = (await w.readVersion(key, { seq }))!.content;
      assert.equal(content.kind, 'chunks');
      const got = await w.getChunks(content.kind === 'chunks' ? content.chunks.map((c) => c.id) : []);
      assert.deepEqual(Buffer.concat(got.map((c) => c.data)), body, `${key} version ${seq}`);
    }
    assert.equal(await sw.sweepChunks(new Date(Date.now() + 3_600_000).toISOString()), 0, 'after the last sweep nothing unreferenced is left');
    console.log(`# sweep beside writers: ${JSON.stringify(outcomes)}`);
  }

  test('stamps: putChunks and presentChunks move an old stamp forward (so the sweep keeps it); a young stamp is not rewritten', async () => {
    const [store] = await replicas(1);
    try {
      await stamps(store!);
    } finally {
      await store!.close();
    }
  });

  async function stamps(s: Store): Promise<void> {
    const [old, young, absent] = ['old', 'young', 'absent'].map((t) => chunkOf(s, Buffer.from(`${t} chunk`))) as [StoredChunk, StoredChunk, StoredChunk];
    await s.putChunks([old, young]);
    const db = `chunks_${n}`;
    const stampOf = (c: StoredChunk) => psqlIn(db, `SELECT stored_at FROM chunks WHERE id = '${c.id}'`);
    const twoDaysAgo = new Date(Date.now() - 2 * CHUNK_SWEEP_GRACE_MS).toISOString();
    const halfAnHourAgo = new Date(Date.now() - CHUNK_RESTAMP_MS / 2).toISOString();
    await psqlIn(db, `UPDATE chunks SET stored_at = '${twoDaysAgo}' WHERE id = '${old.id}'; UPDATE chunks SET stored_at = '${halfAnHourAgo}' WHERE id = '${young.id}'`);
    const cutOff = new Date(Date.now() - CHUNK_SWEEP_GRACE_MS).toISOString();

    await s.putChunks([old, young]);
    assert.ok((await stampOf(old)) > cutOff, 'putChunks restamped the old chunk');
    assert.equal(await stampOf(young), halfAnHourAgo, 'a stamp younger than CHUNK_RESTAMP_MS is left alone');
    assert.equal(await s.sweepChunks(cutOff), 0, 'the restamped chunk is not swept');

    await psqlIn(db, `UPDATE chunks SET stored_at = '${twoDaysAgo}' WHERE id = '${old.id}'`);
    assert.deepEqual(await s.presentChunks([old.id, young.id, absent.id, old.id]), new Set([old.id, young.id]));
    assert.ok((await stampOf(old)) > cutOff, 'presentChunks restamped it as putChunks would');
    assert.equal(await stampOf(young), halfAnHourAgo);
    assert.equal(await s.sweepChunks(cutOff), 0);

    await psqlIn(db, `UPDATE chunks SET stored_at = '${twoDaysAgo}' WHERE id = '${old.id}'`);
    assert.equal(await s.sweepChunks(cutOff), 1, 'left two days without a restamp, the unreferenced chunk goes');
    assert.deepEqual(await s.presentChunks([old.id, young.id]), new Set([young.id]));
  }

  /** psql against one of this file's databases (support's psql() reaches only `statelock`). */
  async function psqlIn(db: string, sql: string): Promise<string> {
    const r = spawnSync(`${findPgBin()}/psql`, ['-X', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'statelock', '-d', db, '-Atc', sql], { encoding: 'utf8', cwd: '/' });
    if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
    return r.stdout.replace(/\n$/, '');
  }
});
