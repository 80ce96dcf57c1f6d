import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient } from '../support/terraform-client.js';

/**
 * `statelock locks` and `statelock lock show`, run as the real binary against a real server process, on
 * locks taken the way Terraform takes them (LOCK on the http backend).
 */

const WHO = 'engineer@MacBook-Pro.local';
const DOCUMENTED_KEYS = ['key', 'info', 'acquiredAt', 'ageSeconds', 'lastActivityAt', 'verdict', 'evidence', 'idleSeconds', 'stale'];
const ALLOWED_EXTRA_KEYS = ['clientAddr', 'userAgent', 'sessionId', 'holds'];
const TABLE_HEADER = ['KEY', 'ID', 'OPERATION', 'WHO', 'CREATED', 'AGE', 'LAST ACTIVITY', 'VERDICT', 'HELD BY'];

/** A port nothing listens on: bound by the OS, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A table's cells: columns are padded and at least two spaces apart; a cell holds at most single spaces. */
function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

describe('statelock locks / lock show', () => {
  let server: RunningServer;
  const clients: HttpBackendClient[] = [];
  before(async () => (server = await startServer()));
  after(async () => {
    for (const c of clients) c.close();
    await server.stop();
  });

  /** Takes the lock on `key` as `terraform apply` does; resolves with the ID and the exact LOCK body. */
  async function takeLock(key: string, who = WHO): Promise<{ id: string; body: string }> {
    const address = `${server.url}/state/${key}`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { flavor: 'terraform', who });
    clients.push(client);
    const id = await client.lock('OperationTypeApply');
    return { id, body: client.lockBody!.toString('utf8') };
  }

  test('locks: a table with the documented columns, one row per lock: key, ID, operation, Who, verdict unknown', async () => {
    const key = 'cli/locks/table/terraform.tfstate';
    const { id } = await takeLock(key);
    const r = await runCli(['--server', server.url, 'locks']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.deepEqual(cells(lines[0]!), TABLE_HEADER);
    const row = lines.slice(1).map(cells).find((c) => c[0] === key);
    assert.ok(row, `no row for ${key} in:\n${r.stdout}`);
    assert.equal(row.length, TABLE_HEADER.length, `row: ${JSON.stringify(row)}`);
    assert.equal(row[1], id);
    assert.equal(row[2], 'OperationTypeApply');
    assert.equal(row[3], WHO);
    assert.match(row[5]!, /^\d+(s|m\d\ds|h\d\dm|d\d\dh)$/, 'AGE');
    assert.match(row[6]!, / ago$/, 'LAST ACTIVITY');
    assert.equal(row[7], 'unknown');
  });

  test('a lock taken under a statelock run session in CI says which job holds it, and is alive', async () => {
    const key = 'cli/locks/ci/terraform.tfstate';
    const ci = { provider: 'github-actions', runId: '1234', project: 'acme/infra', url: 'https://github.com/acme/infra/actions/runs/1234' };
    const sid = (await rawRequest(`${server.url}/api/v1/sessions`, { method: 'POST', body: JSON.stringify({ key, ttlSeconds: 60, ci }) })).json<{ id: string }>().id;
    const address = `${server.url}/state/${key}?session=${sid}`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { flavor: 'terraform', who: 'runner@fv-az123' });
    clients.push(client);
    await client.lock('OperationTypeApply');
    const table = await runCli(['--server', server.url, 'locks', '--prefix', 'cli/locks/ci/']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /alive\s+GitHub Actions run 1234.*https:\/\/github\.com\/acme\/infra\/actions\/runs\/1234/);
    const show = await runCli(['--server', server.url, 'lock', 'show', key]);
    assert.match(show.stdout, /Held by: +GitHub Actions run 1234/);
    assert.match(show.stdout, new RegExp(`Session: +${sid}`));
    await client.unlock();
  });

  test('locks --json: the documented keys, and info equal byte for byte to the LOCK body Terraform sent', async () => {
    const key = 'cli/locks/json/terraform.tfstate';
    const { id, body } = await takeLock(key);
    const r = await runCli(['--server', server.url, 'locks', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const locks = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    assert.ok(Array.isArray(locks));
    assert.ok(locks.length >= 1);
    for (const lock of locks) {
      const keys = Object.keys(lock);
      for (const k of DOCUMENTED_KEYS) assert.ok(keys.includes(k), `missing ${k} in ${JSON.stringify(lock)}`);
      for (const k of keys) assert.ok(DOCUMENTED_KEYS.includes(k) || ALLOWED_EXTRA_KEYS.includes(k), `undocumented key ${k}`);
    }
    const mine = locks.find((l) => l.key === key);
    assert.ok(mine, `no entry for ${key}`);
    assert.equal(JSON.stringify(mine.info), body);
    assert.equal((mine.info as { ID: string }).ID, id);
    assert.equal(mine.verdict, 'unknown');
    assert.equal(typeof mine.ageSeconds, 'number');
    assert.ok(!Number.isNaN(Date.parse(mine.acquiredAt as string)) && !Number.isNaN(Date.parse(mine.lastActivityAt as string)));
    assert.equal(typeof mine.evidence, 'object');
  });

  test('locks --prefix: only the keys under the prefix; none under it is a message and exit 0', async () => {
    await takeLock('cli/locks/prefix/a/terraform.tfstate');
    await takeLock('cli/locks/prefix/b/terraform.tfstate');
    await takeLock('cli/locks/other/terraform.tfstate');
    const r = await runCli(['--server', server.url, 'locks', '--prefix', 'cli/locks/prefix/', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (JSON.parse(r.stdout) as Array<{ key: string }>).map((l) => l.key),
      ['cli/locks/prefix/a/terraform.tfstate', 'cli/locks/prefix/b/terraform.tfstate'],
    );
    const human = await runCli(['--server', server.url, 'locks', '--prefix', 'cli/locks/prefix/']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /cli\/locks\/prefix\/a\/terraform\.tfstate/);
    assert.doesNotMatch(human.stdout, /cli\/locks\/other/);
    const none = await runCli(['--server', server.url, 'locks', '--prefix', 'cli/locks/nothing-here/']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /No locks held under "cli\/locks\/nothing-here\/"/);
  });

  test('locks on a server without any lock: "No locks held." and exit 0; --json is []', async () => {
    const empty = await startServer();
    try {
      const r = await runCli(['--server', empty.url, 'locks']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'No locks held.\n');
      const j = await runCli(['--server', empty.url, 'locks', '--json']);
      assert.equal(j.code, 0, j.stderr);
      assert.deepEqual(JSON.parse(j.stdout), []);
    } finally {
      await empty.stop();
    }
  });

  test('lock show: the Lock Info block, the age, the verdict and what it means', async () => {
    const key = 'cli/locks/show/terraform.tfstate';
    const { id } = await takeLock(key);
    const r = await runCli(['--server', server.url, 'lock', 'show', key]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Lock on ${key.replace(/\./g, '\\.')}`));
    assert.match(r.stdout, new RegExp(`^  ID: +${id}$`, 'm'));
    assert.match(r.stdout, /^ {2}Operation: +OperationTypeApply$/m);
    assert.match(r.stdout, new RegExp(`^  Who: +${WHO}$`, 'm'));
    assert.match(r.stdout, /^ {2}Created: +\S+ \(\S+ ago\)$/m);
    assert.match(r.stdout, /^ {2}Age: +\S+$/m);
    assert.match(r.stdout, /^ {2}Verdict: +unknown/m);
    assert.match(r.stdout, /^What it means\n/m);
    assert.match(r.stdout, /cannot prove whether the holder/);
  });

  test('lock show --json: the lock entry, info byte for byte as sent', async () => {
    const key = 'cli/locks/show-json/terraform.tfstate';
    const { id, body } = await takeLock(key);
    const r = await runCli(['--server', server.url, 'lock', 'show', key, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lock = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(lock.key, key);
    assert.equal(JSON.stringify(lock.info), body);
    assert.equal((lock.info as { ID: string }).ID, id);
    assert.equal(lock.verdict, 'unknown');
    for (const k of DOCUMENTED_KEYS) assert.ok(k in lock, `missing ${k}`);
  });

  test('lock show of a key nobody locked: exit 4 and a message naming the key', async () => {
    const r = await runCli(['--server', server.url, 'lock', 'show', 'cli/locks/never-locked/terraform.tfstate']);
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /cli\/locks\/never-locked\/terraform\.tfstate/);
    assert.equal(r.stdout, '');
  });

  test('lock show without its key, or with two: exit 2 and the usage', async () => {
    for (const args of [['lock', 'show'], ['lock', 'show', 'a/terraform.tfstate', 'b/terraform.tfstate']]) {
      const r = await runCli(['--server', server.url, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: statelock lock show <key>/);
    }
  });

  test('--server works before and after the command, --server=URL too, and STATELOCK_SERVER from the environment', async () => {
    const key = 'cli/locks/global/terraform.tfstate';
    const { id } = await takeLock(key);
    const port = await closedPort();
    const runs = [
      await runCli(['--server', server.url, 'lock', 'show', key, '--json']),
      await runCli(['lock', 'show', key, '--json', '--server', server.url]),
      await runCli(['lock', 'show', `--server=${server.url}`, key, '--json']),
      // The environment names a server that is down: the command line wins.
      await runCli(['lock', 'show', key, '--json', '--server', server.url], { env: { STATELOCK_SERVER: `http://127.0.0.1:${port}` } }),
      await runCli(['lock', 'show', key, '--json'], { env: { STATELOCK_SERVER: server.url } }),
    ];
    for (const [i, r] of runs.entries()) {
      assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as { info: { ID: string } }).info.ID, id, `run ${i}`);
    }
  });

  test('an unreachable server: exit 1 and a message naming it', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    for (const args of [['locks'], ['lock', 'show', 'cli/locks/x/terraform.tfstate']]) {
      const r = await runCli(['--server', url, ...args]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.ok(r.stderr.includes(`cannot reach the statelock server at ${url}`), r.stderr);
    }
  });

  test('the locks seen by the CLI are the ones the API holds (a released lock disappears)', async () => {
    const key = 'cli/locks/released/terraform.tfstate';
    const address = `${server.url}/state/${key}`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { flavor: 'terraform', who: WHO });
    clients.push(client);
    await client.lock('OperationTypeApply');
    assert.equal((await runCli(['--server', server.url, 'lock', 'show', key])).code, 0);
    await client.unlock();
    assert.equal((await rawRequest(`${server.url}/api/v1/locks/${key}`)).status, 404);
    const r = await runCli(['--server', server.url, 'locks', '--prefix', 'cli/locks/released/']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^No locks held under/);
    assert.equal((await runCli(['--server', server.url, 'lock', 'show', key])).code, 4);
  });
});
