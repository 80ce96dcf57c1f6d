import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, newLineage } from '../support/terraform-client.js';

/**
 * Bootstrapping, as docs/operations.md ("Authentication and tokens") tells an operator to do it, with the
 * real binary: a fresh server allows everything on loopback and says so; the first
 * `statelock token create --name admin --allow '*:admin'` needs no token; from then on every request needs
 * one — from the CLI (`--token`, STATELOCK_TOKEN) and from Terraform's http backend (HTTP Basic password,
 * OpenTofu's Bearer header). And the safe start-up defaults beyond loopback.
 */

const TOKEN = /slk_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}/;

function tokenFrom(stdout: string): string {
  const m = TOKEN.exec(stdout);
  assert.ok(m, `no token in:\n${stdout}`);
  return m[0];
}

describe('bootstrapping the first admin token on a fresh loopback server', () => {
  let server: RunningServer;
  let admin: string;
  const clients: HttpBackendClient[] = [];
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(['--server', server.url, ...args], { env: { STATELOCK_TOKEN: '', ...env } });

  before(async () => (server = await startServer()));
  after(async () => {
    for (const c of clients) c.close();
    await server?.stop();
  });

  test('the banner says authentication is off, on loopback, until a token exists', () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const line = server.stdout().split('\n').find((l) => l.startsWith('authentication: '));
    assert.ok(line, `no authentication line in the banner:\n${server.stdout()}`);
    assert.match(line, /^authentication: off: no token exists yet, so every request on loopback is allowed/);
    assert.match(line, /statelock token create/);
  });

  test('before the first token, the CLI works without one and `token list` explains how to begin', async () => {
    const locks = await cli(['locks']);
    assert.equal(locks.code, 0, locks.stderr);
    const list = await cli(['token', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /No tokens: authentication is off/);
    assert.match(list.stdout, /statelock token create --name admin --allow '\*:admin'/);
  });

  test("`token create --name admin --allow '*:admin'` works without a token and says that authentication is now on", async () => {
    const r = await cli(['token', 'create', '--name', 'admin', '--allow', '*:admin']);
    assert.equal(r.code, 0, r.stderr);
    admin = tokenFrom(r.stdout);
    assert.match(r.stdout, /Token "admin" created with \*:admin/);
    assert.match(r.stdout, /cannot be shown again/);
    assert.match(r.stdout, /first live token: from now on every request to this server needs a token/);
    assert.ok(r.stdout.includes(`export STATELOCK_TOKEN=${admin}\n`), r.stdout);
  });

  test('afterwards the CLI needs the token: none → exit 1 with the 401 message; --token and STATELOCK_TOKEN work', async () => {
    const none = await cli(['locks']);
    assert.equal(none.code, 1, `stdout: ${none.stdout}`);
    assert.match(none.stderr, /^statelock: authentication required: no credentials/);
    assert.equal(none.stdout, '');

    const wrong = await cli(['locks', '--token', admin.slice(0, -1) + (admin.endsWith('A') ? 'B' : 'A')]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /authentication required: the token is not valid/);
    assert.doesNotMatch(wrong.stderr, new RegExp(admin.slice(21, 41)), 'the message never echoes a secret');

    const flag = await cli(['--token', admin, 'locks']);
    assert.equal(flag.code, 0, flag.stderr);
    assert.match(flag.stdout, /No locks held/);
    const flagAfter = await cli(['locks', `--token=${admin}`]);
    assert.equal(flagAfter.code, 0, flagAfter.stderr);
    const env = await cli(['locks'], { STATELOCK_TOKEN: admin });
    assert.equal(env.code, 0, env.stderr);
    assert.match(env.stdout, /No locks held/);
  });

  test('the bootstrap happens once: a second token without credentials is refused', async () => {
    const r = await cli(['token', 'create', '--name', 'intruder', '--allow', '*:admin']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /authentication required/);
    const list = await cli(['token', 'list', '--json'], { STATELOCK_TOKEN: admin });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as Array<{ name: string }>).map((t) => t.name), ['admin']);
  });

  test("Terraform's http backend with username/password (HTTP Basic, password = token) locks, writes and unlocks", async () => {
    const key = 'bootstrap/basic/terraform.tfstate';
    const address = `${server.url}/state/${key}`;
    const lineage = newLineage();
    const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, username: 'terraform', password: admin, retryMax: 0 }, { flavor: 'terraform' });
    clients.push(tf);
    const id = await tf.lock('OperationTypeApply');
    await tf.write(makeState({ serial: 1, lineage }));
    await tf.unlock();
    const got = await tf.get();
    assert.ok(got, 'the state reads back');
    assert.equal(JSON.parse(got.toString('utf8')).serial, 1);

    const audit = await cli(['audit', '--key', key, '--json'], { STATELOCK_TOKEN: admin });
    assert.equal(audit.code, 0, audit.stderr);
    const entries = JSON.parse(audit.stdout) as Array<{ action: string; principal: string | null; lockId: string | null }>;
    assert.deepEqual(
      entries.map((e) => [e.action, e.principal, e.lockId]),
      [
        ['lock.acquire', 'admin', id],
        ['state.write', 'admin', id],
        ['lock.release', 'admin', id],
      ],
    );
  });

  test("OpenTofu's headers = { Authorization = \"Bearer <token>\" } works too", async () => {
    const address = `${server.url}/state/bootstrap/bearer/terraform.tfstate`;
    const tofu = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, headers: { Authorization: `Bearer ${admin}` }, retryMax: 0 }, { flavor: 'opentofu' });
    clients.push(tofu);
    await tofu.lock('OperationTypeApply');
    await tofu.write(makeState({ serial: 1, lineage: newLineage(), flavor: 'opentofu' }));
    await tofu.unlock();
    assert.ok(await tofu.get());
  });

  test('the http backend without the token, or with a wrong password, gets 401 and changes nothing', async () => {
    const key = 'bootstrap/refused/terraform.tfstate';
    const address = `${server.url}/state/${key}`;
    const anonymous = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, retryMax: 0 }, { flavor: 'terraform' });
    const wrong = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, username: 'terraform', password: 'hunter2', retryMax: 0 }, { flavor: 'terraform' });
    clients.push(anonymous, wrong);
    await assert.rejects(anonymous.lock('OperationTypeApply'), /requires auth/);
    await assert.rejects(wrong.lock('OperationTypeApply'), /requires auth/);
    await assert.rejects(anonymous.write(makeState({ serial: 1, lineage: newLineage() })), /HTTP error: 401/);
    const raw = await rawRequest(address, { method: 'LOCK', body: '{"ID":"x"}' });
    assert.equal(raw.status, 401);
    assert.match(String(raw.headers['www-authenticate']), /^Basic realm=/, 'Terraform is told to send username/password');
    const basic = await rawRequest(address, { headers: { Authorization: `Basic ${Buffer.from(`terraform:${admin}`).toString('base64')}` } });
    assert.equal(basic.status, 404, 'nothing was stored (and the raw Basic header is accepted)');
    const lock = await cli(['lock', 'show', key], { STATELOCK_TOKEN: admin });
    assert.equal(lock.code, 4, 'nothing was locked');
  });
});

describe('safe start-up defaults beyond loopback', () => {
  test('a fresh data directory refuses --host 0.0.0.0: exit 2, naming --insecure-no-auth', async () => {
    const r = await runCli(['serve', '--host', '0.0.0.0', '--port', '0', '--data', tempDir()]);
    assert.equal(r.code, 2, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.match(r.stderr, /refusing to listen on 0\.0\.0\.0 without authentication/);
    assert.match(r.stderr, /--insecure-no-auth/);
    assert.match(r.stderr, /statelock token create --name admin/);
    assert.doesNotMatch(r.stdout, /listening/);
  });

  test('with --insecure-no-auth it starts, and the banner warns that anyone may do anything', async () => {
    const server = await startServer({ args: ['--host', '0.0.0.0', '--insecure-no-auth'] });
    try {
      assert.match(server.stdout(), /^authentication: OFF \(--insecure-no-auth\): anyone who reaches this address may do anything$/m);
      const url = server.url.replace('0.0.0.0', '127.0.0.1');
      const locks = await runCli(['--server', url, 'locks'], { env: { STATELOCK_TOKEN: '' } });
      assert.equal(locks.code, 0, locks.stderr);
    } finally {
      await server.stop();
    }
  });

  test('a data directory that has a token starts on --host 0.0.0.0 without the flag, and requires tokens', async () => {
    const dataDir = tempDir();
    const first = await startServer({ dataDir });
    let admin: string;
    try {
      const r = await runCli(['--server', first.url, 'token', 'create', '--name', 'admin', '--allow', '*:admin'], { env: { STATELOCK_TOKEN: '' } });
      assert.equal(r.code, 0, r.stderr);
      admin = tokenFrom(r.stdout);
    } finally {
      assert.equal(await first.stop(), 0);
    }
    const second = await startServer({ dataDir, args: ['--host', '0.0.0.0'] });
    try {
      assert.match(second.stdout(), /^authentication: tokens required$/m);
      const url = second.url.replace('0.0.0.0', '127.0.0.1');
      const none = await runCli(['--server', url, 'locks'], { env: { STATELOCK_TOKEN: '' } });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /authentication required/);
      const withToken = await runCli(['--server', url, 'locks'], { env: { STATELOCK_TOKEN: admin } });
      assert.equal(withToken.code, 0, withToken.stderr);
    } finally {
      await second.stop();
    }
  });
});
