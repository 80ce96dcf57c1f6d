import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { StatelockError } from '../../src/server/errors.js';
import { AUTO_RESERVE_MAX_BYTES, AUTO_RESERVE_MIN_BYTES, DiskReserve, SLACK_BYTES, autoReserveBytes } from '../../src/store/sqlite/disk-reserve.js';
import { tempDir } from '../support/server-process.js';

/**
 * The disk reserve on real files in a temporary directory; the file system's free space is what the
 * test says it is (a real full disk is test/chaos/disk-full.test.ts).
 */

const MiB = 1024 * 1024;
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup(bytes: number | 'auto', available: number, total = 1024 * MiB) {
  const dir = tempDir('statelock-disk-reserve-');
  dirs.push(dir);
  const disk = { available, total };
  const events: string[] = [];
  const reserve = new DiskReserve(dir, { bytes, space: () => disk, onEvent: (e) => events.push(e) });
  return { dir, disk, events, reserve };
}

function refusal(fn: () => void): StatelockError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StatelockError) return err;
    throw err;
  }
  assert.fail('expected a STORE_FULL refusal');
}

describe('disk reserve', () => {
  test('the ballast file is created at start-up, of its exact size, and incompressible', async () => {
    const { reserve } = setup(2 * MiB, 100 * MiB);
    assert.equal(await reserve.replenish(), true);
    assert.equal(reserve.whole, true);
    assert.equal(statSync(reserve.path).size, 2 * MiB);
    const bytes = readFileSync(reserve.path);
    assert.ok(gzipSync(bytes).length > 0.99 * bytes.length, 'random data: a compressing file system cannot shrink it');
    reserve.close();
  });

  test('a state body is refused with 507 STORE_FULL unless it fits twice, with slack, beside the reserve', async () => {
    const { disk, reserve } = setup(2 * MiB, 100 * MiB);
    await reserve.replenish();
    disk.available = 2 * 3 * MiB + SLACK_BYTES;
    reserve.assertRoomFor(3 * MiB);
    disk.available -= 1;
    const err = refusal(() => reserve.assertRoomFor(3 * MiB));
    assert.equal(err.code, 'STORE_FULL');
    assert.equal(err.status, 507);
    assert.match(err.message, /available/);
    reserve.close();
  });

  test('released for lock traffic: state writes must then leave the reserve free as well, until it is re-created', async () => {
    const { disk, events, reserve } = setup(2 * MiB, 100 * MiB);
    await reserve.replenish();
    assert.equal(reserve.release(), true);
    assert.equal(existsSync(reserve.path), false);
    assert.equal(reserve.whole, false);
    assert.equal(reserve.released, 1);
    assert.equal(reserve.release(), false, 'nothing more to give');
    assert.deepEqual(events, ['released']);
    // The disk stays tight: too little room to re-create the reserve twice over, so it stays missing …
    disk.available = 2 * 2 * MiB + SLACK_BYTES - 1;
    assert.equal(await reserve.replenish(), false);
    assert.equal(reserve.whole, false);
    // … and a body that would fit beside a whole reserve is refused, since it would eat into the room kept for locks.
    disk.available = 2 * MiB + SLACK_BYTES + 2 * MiB - 1;
    assert.match(refusal(() => reserve.assertRoomFor(MiB)).message, /reserve kept for locks is in use/);
    // Space returns: the next attempt (at most one a second) re-creates it, and writes are accepted again.
    disk.available = 100 * MiB;
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await reserve.replenish(), true);
    assert.equal(statSync(reserve.path).size, 2 * MiB);
    assert.deepEqual(events, ['released', 'restored']);
    reserve.assertRoomFor(MiB);
    reserve.close();
  });

  test('a tool opening the database with no reserve leaves the server\'s ballast alone', () => {
    const { dir } = setup(0, 100 * MiB);
    writeFileSync(join(dir, 'statelock.reserve'), Buffer.alloc(3 * MiB, 1));
    const tool = new DiskReserve(dir, { bytes: 0, space: () => ({ available: 100 * MiB, total: 1024 * MiB }) });
    assert.equal(tool.whole, false);
    assert.equal(tool.release(), false);
    assert.equal(statSync(join(dir, 'statelock.reserve')).size, 3 * MiB);
    tool.close();
  });

  test('a ballast of another size (another configuration) is replaced', async () => {
    const { dir } = setup(0, 100 * MiB);
    writeFileSync(join(dir, 'statelock.reserve'), Buffer.alloc(3 * MiB, 1));
    const reserve = new DiskReserve(dir, { bytes: MiB, space: () => ({ available: 100 * MiB, total: 1024 * MiB }) });
    assert.equal(await reserve.replenish(), true);
    assert.equal(statSync(reserve.path).size, MiB);
    reserve.close();
  });

  test('the default size: twice the database, from 1 MiB up to 64 MiB, at most 1/8 of the file system', () => {
    const GiB = 1024 * MiB;
    assert.equal(autoReserveBytes(100 * GiB, 0), AUTO_RESERVE_MIN_BYTES);
    assert.equal(autoReserveBytes(100 * GiB, 10 * MiB), 20 * MiB);
    assert.equal(autoReserveBytes(100 * GiB, 10 * GiB), AUTO_RESERVE_MAX_BYTES);
    assert.equal(autoReserveBytes(24 * MiB, 10 * MiB), 3 * MiB);
    assert.equal(autoReserveBytes(4 * MiB, 0), MiB / 2);
  });
});
