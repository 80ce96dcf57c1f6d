import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { listVersions } from './chaos-support.js';

/**
 * The data directory on a 32 MiB tmpfs, filled with 2 MiB states until a write is refused: the refusal
 * must be 507 STORE_FULL (nothing stored), nothing already stored may be damaged, /readyz stays 200.
 * Then another program takes every byte left, and locks (tiny) must keep working: the server spends its
 * disk reserve on them (docs/operations.md, "Disk space"). Once space is freed, the refused write succeeds
 * without a restart and the reserve is back.
 *
 * Needs root (mount); skipped with the reason otherwise. No randomness: the bodies are deterministic, and
 * incompressible, so a server that compresses bodies still fills the disk with them.
 */

const TMPFS_SIZE = '32m';
const FILLER_BYTES = 16 * 1024 * 1024;
const PAD_BYTES = 2 * 1024 * 1024;
const KEYS = ['chaos/full/a', 'chaos/full/b', 'chaos/full/c'];
/** LOCK/UNLOCK pairs by other clients while the disk is full: far more than the WAL's spare tail can absorb. */
const LOCK_CYCLES_WHILE_FULL = 100;
const lineageOf = (key: string) => `lineage-${key}`;

function mountTmpfs(): { dir: string; skip: string | false } {
  if (process.platform !== 'linux') return { dir: '', skip: 'needs Linux (tmpfs)' };
  if (process.getuid?.() !== 0) return { dir: '', skip: `needs root to mount a ${TMPFS_SIZE} tmpfs (running as uid ${process.getuid?.()})` };
  const dir = mkdtempSync(join(tmpdir(), 'statelock-chaos-full-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (mounted.status === 0) return { dir, skip: false };
  rmSync(dir, { recursive: true, force: true });
  const why = (mounted.stderr || mounted.error?.message || `exit ${mounted.status}`).trim();
  return { dir: '', skip: `cannot mount a ${TMPFS_SIZE} tmpfs (no permission in this environment?): ${why}` };
}

const { dir: mountDir, skip } = mountTmpfs();

/**
 * `bytes` of padding that no compressor can shrink, the same on every run: the hex of a SHA-256 chain
 * seeded with `seed` (a server that compresses state bodies must still fill the disk with them).
 */
function incompressiblePad(seed: string, bytes: number): string {
  const parts: string[] = [];
  let block = createHash('sha256').update(seed).digest();
  for (let n = 0; n < bytes; n += 64) {
    parts.push(block.toString('hex'));
    block = createHash('sha256').update(block).digest();
  }
  return parts.join('').slice(0, bytes);
}

/** Writes `path` until the file system says ENOSPC; returns how many bytes it took. */
function fillUp(path: string): number {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(64 * 1024, 0x68);
  let taken = 0;
  try {
    for (let size = block.length; size >= 512; ) {
      try {
        taken += writeSync(fd, block, 0, size);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        size >>= 1; // the last blocks, in smaller writes
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return taken;
}

describe(`disk full: the data directory on a ${TMPFS_SIZE} tmpfs`, { skip }, () => {
  let server: RunningServer;
  const filler = join(mountDir, 'filler');
  /** Another program on the same disk that takes every byte statelock left free. */
  const hog = join(mountDir, 'hog');
  const dataDir = join(mountDir, 'data');
  const HELD = 'chaos/full/held';
  const serial = new Map(KEYS.map((k) => [k, 0]));
  const acked = new Map(KEYS.map((k) => [k, [] as string[]])); // acknowledged bodies per key, in order
  const bodyFor = (key: string, s: number) => stateBody(s, lineageOf(key), { outputs: { pad: { value: incompressiblePad(`${key} serial ${s}`, PAD_BYTES), type: 'string' } } });
  let refusedKey = '';
  let storedBeforeFull = 0;
  let lockOps = 0;
  const summary: string[] = [];

  before(async () => {
    writeFileSync(filler, Buffer.alloc(FILLER_BYTES, 0x5a)); // space to give back later
    server = await startServer({ dataDir });
  });
  after(async () => {
    if (summary.length) console.log(`# chaos disk-full: ${summary.join('; ')}`);
    await server?.stop();
    let umount = spawnSync('umount', [mountDir], { encoding: 'utf8' });
    if (umount.status !== 0) umount = spawnSync('umount', ['-l', mountDir], { encoding: 'utf8' });
    assert.equal(umount.status, 0, `umount ${mountDir}: ${umount.stderr}`);
    rmSync(mountDir, { recursive: true, force: true });
  });

  const lockReq = (key: string, method: 'LOCK' | 'UNLOCK', id: string | null) => {
    lockOps++;
    return rawRequest(`${server.url}/state/${key}`, { method, body: id === null ? '' : lockBody(id) });
  };

  /** The server's `statelock_disk_reserve_whole` (1: the reserve is in place). */
  async function reserveWhole(): Promise<number> {
    const text = (await rawRequest(`${server.url}/metrics`)).text;
    return Number(/^statelock_disk_reserve_whole (\d+)$/m.exec(text)?.[1] ?? NaN);
  }

  /** Writes the key's next serial under lock `id`; remembers it when acknowledged. */
  async function write(key: string, id: string) {
    const body = bodyFor(key, serial.get(key)! + 1);
    const res = await rawRequest(`${server.url}/state/${key}?ID=${id}`, { method: 'POST', body });
    if (res.status === 200) {
      serial.set(key, serial.get(key)! + 1);
      acked.get(key)!.push(body);
    }
    return res;
  }

  /** Every acknowledged write reads back byte for byte, the versions are exactly those, GET is the newest, /readyz is 200. */
  async function assertIntact(when: string): Promise<number> {
    let n = 0;
    for (const key of KEYS) {
      const bodies = acked.get(key)!;
      const versions = await listVersions(server.url, key);
      assert.deepEqual(versions.map((v) => v.serial), bodies.map((_, i) => i + 1), `${when}: ${key} holds exactly the acknowledged serials`);
      for (const [i, body] of bodies.entries()) {
        const stored = await rawRequest(`${server.url}/api/v1/content/${key}?seq=${versions[i]!.seq}`);
        assert.equal(stored.status, 200, `${when}: ${key} seq ${versions[i]!.seq}: ${stored.text.slice(0, 200)}`);
        assert.ok(stored.text === body, `${when}: ${key} serial ${i + 1} reads back byte for byte`);
        n++;
      }
      const head = await rawRequest(`${server.url}/state/${key}`);
      if (bodies.length) assert.ok(head.status === 200 && head.text === bodies[bodies.length - 1], `${when}: GET ${key} is its newest acknowledged write`);
      else assert.equal(head.status, 404);
    }
    const ready = await rawRequest(`${server.url}/readyz`);
    assert.equal(ready.status, 200, `${when}: /readyz ${ready.text}`);
    return n;
  }

  test('filling the disk: the refused write is 507 STORE_FULL and nothing stored is damaged', { timeout: 60_000 }, async () => {
    // A lock held since before the disk filled (a long apply elsewhere), and one lock per key for the writer (held across its writes, as an apply holds it).
    assert.equal((await lockReq(HELD, 'LOCK', 'long-apply')).status, 200);
    for (const key of KEYS) assert.equal((await lockReq(key, 'LOCK', `writer-${key}`)).status, 200, `LOCK ${key}`);
    let refused: Awaited<ReturnType<typeof write>> | null = null;
    for (let i = 0; i < 40 && !refused; i++) {
      const key = KEYS[i % KEYS.length]!;
      const res = await write(key, `writer-${key}`);
      if (res.status !== 200) [refused, refusedKey] = [res, key];
    }
    assert.ok(refused, `a ${TMPFS_SIZE} tmpfs refuses some write of 40 × 2 MiB`);
    storedBeforeFull = [...acked.values()].reduce((n, b) => n + b.length, 0);
    assert.ok(storedBeforeFull >= 2, `some writes fit before the disk filled (${storedBeforeFull})`);
    assert.equal(refused.status, 507, `the refusal of a write to a full disk: ${refused.status} ${refused.text}`);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'STORE_FULL');
    assert.equal(refused.headers['x-statelock-error'], 'STORE_FULL');
    const intact = await assertIntact('while full');
    const again = await write(refusedKey, `writer-${refusedKey}`);
    assert.equal(again.status, 507, `a retry while still full is refused the same way: ${again.text}`);
    await assertIntact('after a second refusal');
    summary.push(`${storedBeforeFull} × 2 MiB writes fit, then ${refused.status} ${refused.json<{ error: { code: string } }>().error.code} (twice)`, `${intact} acknowledged versions intact while full, /readyz 200`);
  });

  test('locks keep working while the disk is full (they are tiny)', { timeout: 60_000 }, async () => {
    // statelock refused its own write while room was left (for the reserve kept for locks); now another
    // program takes every byte that is left, down to the last block.
    const hogged = fillUp(hog);
    assert.ok(statfsSync(mountDir).bavail === 0, `the disk is full (${hogged} bytes taken by another program)`);
    const failures: string[] = [];
    let ops = 0;
    const expect200 = async (what: string, p: Promise<{ status: number; text: string }>) => {
      const res = await p;
      ops++;
      if (res.status !== 200) failures.push(`${what} → ${res.status} ${res.text.slice(0, 60)}`);
    };
    // Other teams keep locking and unlocking their own states while this disk is full …
    for (let i = 0; i < LOCK_CYCLES_WHILE_FULL; i++) {
      const key = `chaos/full/other-${i % 5}`;
      await expect200(`LOCK ${key} #${i}`, lockReq(key, 'LOCK', `other-${i}`));
      await expect200(`UNLOCK ${key} #${i}`, lockReq(key, 'UNLOCK', `other-${i}`));
    }
    // … then the writer, whose write failed, releases its locks, and the long apply held since before the disk filled ends.
    for (const key of KEYS) await expect200(`UNLOCK ${key} (the refused writer)`, lockReq(key, 'UNLOCK', `writer-${key}`));
    await expect200(`UNLOCK ${HELD} (held since before the disk filled)`, lockReq(HELD, 'UNLOCK', 'long-apply'));
    await assertIntact('after lock traffic while full');
    const grants = LOCK_CYCLES_WHILE_FULL - failures.filter((f) => f.startsWith('LOCK ')).length;
    const heldReleased = 4 - failures.filter((f) => f.startsWith('UNLOCK ') && !f.includes('/other-')).length;
    summary.push(`while full: ${grants} of ${LOCK_CYCLES_WHILE_FULL} LOCKs by other clients granted, ${heldReleased} of the 4 locks held across the fill released by their holders`);
    const heldRefused = failures.filter((f) => !f.includes('/other-'));
    assert.ok(failures.length === 0, `every LOCK/UNLOCK while full should answer 200; ${failures.length} of ${ops} did not, the first: ${failures[0]}; releases of locks held across the fill refused: ${heldRefused.length} of 4${heldRefused.length ? ` (${heldRefused[0]})` : ''}`);
    // They did need room (the audit trail grows): the server gave them its reserve, and said so.
    assert.equal(await reserveWhole(), 0, 'the disk reserve was spent on lock traffic');
    assert.match(server.stderr(), /disk full: the disk reserve was released/);
    summary.push('the disk reserve was released for them');
  });

  test('after freeing space the server recovers without a restart', { timeout: 60_000 }, async () => {
    rmSync(filler);
    rmSync(hog);
    // Whatever the previous test could not release is released now (an empty-body UNLOCK frees a lock whose holder is gone).
    for (const key of [...KEYS, HELD]) {
      const freed = await lockReq(key, 'UNLOCK', null);
      assert.equal(freed.status, 200, `force-unlock ${key} after freeing space: ${freed.text}`);
    }
    for (const key of KEYS) assert.equal((await lockReq(key, 'LOCK', `after-${key}`)).status, 200, `LOCK ${key} after freeing space`);
    const recovered = await write(refusedKey, `after-${refusedKey}`);
    assert.equal(recovered.status, 200, `the refused write, retried after freeing space: ${recovered.status} ${recovered.text}`);
    for (const key of KEYS) {
      const again = await write(key, `after-${key}`);
      assert.equal(again.status, 200, `${key} takes writes again: ${again.text}`);
    }
    for (const key of KEYS) assert.equal((await lockReq(key, 'UNLOCK', `after-${key}`)).status, 200, `UNLOCK ${key}`);
    const intact = await assertIntact('after freeing space');
    // The reserve is back (re-created in the background once there is room for it twice over).
    for (let i = 0; i < 100 && (await reserveWhole()) !== 1; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await reserveWhole(), 1, 'the disk reserve was re-created');
    assert.match(server.stderr(), /disk reserve restored/);

    // The file itself: a clean shutdown, then SQLite's own integrity check.
    assert.equal(await server.stop(), 0, 'clean shutdown');
    const db = new Database(join(dataDir, 'statelock.db'), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
    summary.push(`after freeing space: the refused write landed, ${intact} versions intact byte for byte, the reserve re-created, integrity_check ok`, `${lockOps} LOCK/UNLOCK requests in all`);
  });
});
