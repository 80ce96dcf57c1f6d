import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { ApiClient } from '../../src/cli/api-client.js';
import { backupFileName } from '../../src/cli/backup-file.js';
import type { CliContext } from '../../src/cli/command.js';
import { backupCommand } from '../../src/cli/commands/backup.js';
import { exitCodeFor } from '../../src/cli/exit-codes.js';

/**
 * `statelock backup <key> | --prefix P [--dir D]` — the lesson's step 3 — through the built binary
 * against a real server. States are written through the http backend door, as Terraform writes them.
 */

const K1 = 'acme/lesson-17/terraform.tfstate'; // three versions, lock held (the lesson's stuck-lock case)
const K_PR = 'acme/lesson-17/pr-42/terraform.tfstate';
const K_OTHER = 'acme/other/terraform.tfstate';
const K_ZETA = 'zeta/x';
const K_GONE = 'acme/gone/terraform.tfstate'; // written, then soft-deleted
const LINEAGE = '6a3c1f0e-0d4b-4b8e-9a51-5f2c7e9d1a01';
const LOCK_ID = 'b3f1c2d4-1111-2222-3333-444455556666';

const NAME = /^state-backup-acme-lesson-17-terraform\.tfstate-\d{8}-\d{6}\.json$/;
const slugName = (slug: string) => new RegExp(`^state-backup-${slug.replace(/\./g, '\\.')}-\\d{8}-\\d{6}\\.json$`);

/** A state with non-ASCII bytes and a layout no re-serialisation would keep, so "byte for byte" means something. */
const body = (serial: number, note: string) =>
  Buffer.from(stateBody(serial, LINEAGE, { outputs: { note: { value: `${note} — héllo ✓ 🚀`, type: 'string' } } }).replace('"outputs": {', '"outputs":   {'));

describe('statelock backup', () => {
  let server: RunningServer;
  const cli = (args: string[], cwd?: string) => runCli(['--server', server.url, 'backup', ...args], cwd ? { cwd } : {});
  const stored = async (key: string) => {
    const res = await rawRequest(`${server.url}/state/${key}`);
    assert.equal(res.status, 200);
    return res.body;
  };

  before(async () => {
    server = await startServer();
    const write = async (key: string, b: Buffer) => assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'POST', body: b })).status, 200);
    for (const serial of [1, 2, 3]) await write(K1, body(serial, `k1 v${serial}`));
    await write(K_PR, body(1, 'pr-42'));
    await write(K_OTHER, body(5, 'other'));
    await write(K_ZETA, body(1, 'zeta'));
    await write(K_GONE, body(1, 'gone'));
    assert.equal((await rawRequest(`${server.url}/api/v1/states/${K_GONE}`, { method: 'DELETE' })).status, 200);
    assert.equal((await rawRequest(`${server.url}/state/${K1}`, { method: 'LOCK', body: lockBody(LOCK_ID) })).status, 200);
  });
  after(async () => {
    await server.stop();
  });

  test('backs up one key into --dir: the lesson file name, the stored bytes unchanged, path/serial/size printed', async () => {
    const dir = tempDir();
    const r = await cli([K1, '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(dir);
    assert.equal(files.length, 1, files.join(', '));
    assert.match(files[0]!, NAME);
    const bytes = readFileSync(join(dir, files[0]!));
    assert.ok(bytes.equals(await stored(K1)), 'backup differs from GET /state/<key>');
    assert.ok(bytes.equals(body(3, 'k1 v3')));
    const row = r.stdout.split('\n').find((l) => l.includes(files[0]!));
    assert.ok(row, r.stdout);
    assert.match(row, new RegExp(`^${K1}\\s+3\\s+${bytes.length}\\s+${join(dir, files[0]!).replace(/[.]/g, '\\.')}$`));
  });

  test('writes into the current directory by default', async () => {
    const cwd = tempDir();
    const r = await cli([K_OTHER], cwd);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(cwd);
    assert.equal(files.length, 1);
    assert.match(files[0]!, slugName('acme-other-terraform.tfstate'));
    assert.ok(readFileSync(join(cwd, files[0]!)).equals(await stored(K_OTHER)));
    assert.match(r.stdout, new RegExp(`\\s${files[0]!.replace(/[.]/g, '\\.')}\\n`));
  });

  test('--prefix backs up every live state under the prefix, one file each, and nothing else', async () => {
    const dir = join(tempDir(), 'nested', 'backups'); // created when missing
    const r = await cli(['--prefix', 'acme/', '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(dir).sort();
    assert.equal(files.length, 3, files.join(', '));
    const expected: Array<[string, string]> = [
      [K_PR, 'acme-lesson-17-pr-42-terraform.tfstate'],
      [K1, 'acme-lesson-17-terraform.tfstate'],
      [K_OTHER, 'acme-other-terraform.tfstate'],
    ];
    for (const [key, slug] of expected) {
      const file = files.find((f) => slugName(slug).test(f));
      assert.ok(file, `no backup of ${key} among ${files.join(', ')}`);
      assert.ok(readFileSync(join(dir, file)).equals(await stored(key)), `backup of ${key} differs`);
      assert.ok(r.stdout.includes(join(dir, file)), r.stdout);
    }
    // one timestamp per run
    assert.equal(new Set(files.map((f) => f.slice(-20))).size, 1, files.join(', '));
    assert.doesNotMatch(r.stdout, /zeta|gone/);
    assert.match(r.stdout, /Backed up 3 of 3 states under "acme\/"/);
  });

  test('a key with no state (never written, or soft-deleted) exits 4 and writes no file', async () => {
    for (const key of ['acme/missing/terraform.tfstate', K_GONE]) {
      const dir = tempDir();
      const r = await cli([key, '--dir', dir]);
      assert.equal(r.code, 4, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`no state stored at key ${key}`));
      assert.deepEqual(readdirSync(dir), []);
    }
  });

  test('a prefix with no live state exits 4', async () => {
    const dir = tempDir();
    const r = await cli(['--prefix', 'nothing-here/', '--dir', dir]);
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /no states under prefix "nothing-here\/"/);
    assert.deepEqual(readdirSync(dir), []);
  });

  describe('usage errors exit 2', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['no key and no --prefix', [], /usage: statelock backup/],
      ['a key and --prefix', [K1, '--prefix', 'acme/'], /usage: statelock backup/],
      ['two keys', [K1, K_OTHER], /usage: statelock backup/],
      ['an empty --prefix', ['--prefix', ''], /--prefix must not be empty/],
      ['an empty --dir', [K1, '--dir='], /--dir must not be empty/],
      ['an invalid key', ['acme//x'], /invalid state key: .*empty segment/],
      ['a ".." key segment', ['acme/../x'], /invalid state key: .*"\.\." segment/],
      ['an unknown option', [K1, '--force'], /--force/],
    ];
    for (const [name, args, message] of cases) {
      test(name, async () => {
        const cwd = tempDir();
        const r = await cli(args, cwd);
        assert.equal(r.code, 2, r.stdout + r.stderr);
        assert.match(r.stderr, message);
        assert.deepEqual(readdirSync(cwd), []);
      });
    }
  });

  describe('never overwrites a file (the clock fixed, in process)', () => {
    const at = Date.UTC(2024, 0, 15, 14, 30, 22);
    const ctx = (): CliContext & { output: { out: string; err: string } } => {
      const output = { out: '', err: '' };
      return {
        api: new ApiClient({ server: server.url }),
        io: { color: false, out: (t) => void (output.out += t), err: (t) => void (output.err += t) },
        env: {},
        stdin: process.stdin,
        now: () => at,
        output,
      };
    };

    test('one key: an existing file of the same name is left as it was and the run fails with exit 1', async () => {
      const dir = tempDir();
      const path = join(dir, backupFileName(K1, new Date(at)));
      assert.equal(backupFileName(K1, new Date(at)), 'state-backup-acme-lesson-17-terraform.tfstate-20240115-143022.json');
      writeFileSync(path, 'an older backup');
      const err = await backupCommand([K1, '--dir', dir], ctx()).then(
        () => assert.fail('backup succeeded over an existing file'),
        (e: unknown) => e,
      );
      assert.equal(exitCodeFor(err), 1);
      assert.match((err as Error).message, /already exists; not overwritten/);
      assert.equal(readFileSync(path, 'utf8'), 'an older backup');
    });

    test('--prefix: the other states are still backed up, the existing file is kept, exit 1', async () => {
      const dir = tempDir();
      const taken = join(dir, backupFileName(K_PR, new Date(at)));
      writeFileSync(taken, 'keep me');
      const c = ctx();
      assert.equal(await backupCommand(['--prefix', 'acme/', '--dir', dir], c), 1);
      assert.equal(readFileSync(taken, 'utf8'), 'keep me');
      for (const key of [K1, K_OTHER]) {
        const path = join(dir, backupFileName(key, new Date(at)));
        assert.ok(existsSync(path), `${key} not backed up`);
        assert.ok(readFileSync(path).equals(await stored(key)));
      }
      assert.match(c.output.err, new RegExp(`${K_PR}: .*already exists; not overwritten`));
      assert.match(c.output.out, /Backed up 2 of 3 states/);
    });
  });
});
