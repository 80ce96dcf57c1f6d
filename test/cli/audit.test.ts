import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, newLineage } from '../support/terraform-client.js';

/**
 * `statelock audit`, as the real binary against a real server, on a history made the way it happens: a
 * Terraform-like client locks, writes and unlocks with its token, a second lock is force-unlocked by an
 * operator, an admin creates and revokes a token. And the trail cannot be edited through the API.
 */

const KEY = 'audit/app/prod/terraform.tfstate';
const HEADER = ['AT', 'ACTION', 'KEY', 'LOCK ID', 'OUTCOME', 'PRINCIPAL', 'CLIENT'];
const ENTRY_KEYS = ['action', 'at', 'clientAddr', 'detail', 'id', 'key', 'lockId', 'outcome', 'principal', 'userAgent'];

interface Entry {
  id: number;
  at: string;
  action: string;
  key: string;
  lockId: string | null;
  outcome: string;
  clientAddr: string;
  userAgent: string;
  principal: string | null;
  detail: Record<string, unknown>;
}

function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

function tokenFrom(stdout: string): string {
  const m = /slk_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}/.exec(stdout);
  assert.ok(m, `no token in:\n${stdout}`);
  return m[0];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('statelock audit', () => {
  let server: RunningServer;
  let admin: string;
  let terraformToken: string;
  let firstId: string;
  let secondId: string;
  /** Between the first lock cycle and the second lock: `--since` this time leaves the first cycle out. */
  let midway: string;
  let tf: HttpBackendClient;
  const cli = (args: string[], token: string | null = admin) => runCli(['--server', server.url, ...args], { env: { STATELOCK_TOKEN: token ?? '' } });

  async function createToken(name: string, allow: string[]): Promise<string> {
    const r = await cli(['token', 'create', '--name', name, ...allow.flatMap((a) => ['--allow', a])]);
    assert.equal(r.code, 0, r.stderr);
    return tokenFrom(r.stdout);
  }

  before(async () => {
    server = await startServer();
    const boot = await cli(['token', 'create', '--name', 'admin', '--allow', '*:admin'], null);
    assert.equal(boot.code, 0, boot.stderr);
    admin = tokenFrom(boot.stdout);
    terraformToken = await createToken('ci-terraform', ['audit/*:read,write,lock']);
    const operator = await createToken('operator', ['audit/*:read,force-unlock']);

    const address = `${server.url}/state/${KEY}`;
    tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, username: 'terraform', password: terraformToken, retryMax: 0 }, { flavor: 'terraform' });
    firstId = await tf.lock('OperationTypeApply');
    await tf.write(makeState({ serial: 1, lineage: newLineage() }));
    await tf.unlock();
    await sleep(20);
    midway = new Date().toISOString();
    await sleep(20);
    secondId = await tf.lock('OperationTypeApply');
    const forced = await cli(['force-unlock', KEY, secondId, '--force'], operator);
    assert.equal(forced.code, 0, forced.stderr);
    await createToken('temp', ['audit/*:read']);
    const revoked = await cli(['token', 'revoke', 'temp']);
    assert.equal(revoked.code, 0, revoked.stderr);
  });
  after(async () => {
    tf?.close();
    await server?.stop();
  });

  test('--key K: lock, write, unlock and force-unlock in order, with lock IDs, outcomes and principals', async () => {
    const r = await cli(['audit', '--key', KEY]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.deepEqual(cells(lines[0]!), HEADER);
    const rows = lines.slice(1).map(cells);
    assert.deepEqual(
      rows.map((c) => c.slice(1)),
      [
        ['lock.acquire', KEY, firstId, 'ok', 'ci-terraform', '127.0.0.1'],
        ['state.write', KEY, firstId, 'ok', 'ci-terraform', '127.0.0.1'],
        ['lock.release', KEY, firstId, 'ok', 'ci-terraform', '127.0.0.1'],
        ['lock.acquire', KEY, secondId, 'ok', 'ci-terraform', '127.0.0.1'],
        ['lock.force-unlock', KEY, secondId, 'ok', 'operator', '127.0.0.1'],
      ],
    );
    const times = rows.map((c) => c[0]!);
    for (const t of times) assert.match(t, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.deepEqual([...times].sort(), times, 'oldest first');
    const starts = lines.slice(1).map((l) => l.indexOf(cells(l)[5]!));
    assert.ok(starts.every((s) => s === lines[0]!.indexOf('PRINCIPAL')), `PRINCIPAL column aligned:\n${r.stdout}`);
  });

  test('--json: the entries array, every documented field', async () => {
    const r = await cli(['audit', '--key', KEY, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const entries = JSON.parse(r.stdout) as Entry[];
    assert.ok(Array.isArray(entries));
    assert.equal(entries.length, 5);
    for (const e of entries) {
      assert.deepEqual(Object.keys(e).sort(), ENTRY_KEYS);
      assert.equal(e.key, KEY);
      assert.equal(typeof e.id, 'number');
      assert.equal(typeof e.detail, 'object');
      assert.match(e.userAgent, /\S/);
    }
    assert.deepEqual(entries.map((e) => e.id), [...entries.map((e) => e.id)].sort((a, b) => a - b), 'ids increase');
    assert.equal(entries[4]!.principal, 'operator');
    assert.equal(entries[0]!.principal, 'ci-terraform');
  });

  test('--since: an ISO time or a duration back from now; anything else is exit 2', async () => {
    const since = await cli(['audit', '--key', KEY, '--since', midway, '--json']);
    assert.equal(since.code, 0, since.stderr);
    assert.deepEqual((JSON.parse(since.stdout) as Entry[]).map((e) => [e.action, e.lockId]), [
      ['lock.acquire', secondId],
      ['lock.force-unlock', secondId],
    ]);
    const hour = await cli(['audit', '--key', KEY, '--since', '1h', '--json']);
    assert.equal(hour.code, 0, hour.stderr);
    assert.equal((JSON.parse(hour.stdout) as Entry[]).length, 5);
    const future = await cli(['audit', '--key', KEY, '--since', new Date(Date.now() + 3_600_000).toISOString()]);
    assert.equal(future.code, 0, future.stderr);
    assert.equal(future.stdout, 'No audit entries.\n');
    for (const bad of ['yesterday', '2', '5 minutes']) {
      const r = await cli(['audit', '--since', bad]);
      assert.equal(r.code, 2, `--since ${bad}: ${r.stderr}`);
      assert.match(r.stderr, /--since must be an ISO 8601 time .* or a duration/);
    }
  });

  test('--action and --limit N (the newest N); an unknown action is exit 2 naming the valid ones', async () => {
    const forced = await cli(['audit', '--action', 'lock.force-unlock', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual((JSON.parse(forced.stdout) as Entry[]).map((e) => [e.key, e.lockId, e.principal]), [[KEY, secondId, 'operator']]);
    const last = await cli(['audit', '--key', KEY, '--limit', '2', '--json']);
    assert.equal(last.code, 0, last.stderr);
    assert.deepEqual((JSON.parse(last.stdout) as Entry[]).map((e) => e.action), ['lock.acquire', 'lock.force-unlock']);
    const bad = await cli(['audit', '--action', 'lock.steal']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /action.*lock\.acquire/);
    assert.equal((await cli(['audit', '--limit', 'ten'])).code, 2);
  });

  test('token changes appear as token.create and token.revoke with the principal who made them', async () => {
    const r = await cli(['audit', '--key', 'tokens/temp']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split('\n').slice(1).map(cells);
    assert.deepEqual(
      rows.map((c) => c.slice(1)),
      [
        ['token.create', 'tokens/temp', '-', 'ok', 'admin', '127.0.0.1'],
        ['token.revoke', 'tokens/temp', '-', 'ok', 'admin', '127.0.0.1'],
      ],
    );
    const creates = JSON.parse((await cli(['audit', '--action', 'token.create', '--json'])).stdout) as Entry[];
    assert.deepEqual(creates.map((e) => [e.key, e.principal]), [
      ['tokens/admin', null], // the bootstrap: no token existed yet
      ['tokens/ci-terraform', 'admin'],
      ['tokens/operator', 'admin'],
      ['tokens/temp', 'admin'],
    ]);
    assert.deepEqual(creates[1]!.detail.grants, ['audit/*:read,write,lock']);
    assert.doesNotMatch(JSON.stringify(creates), /slk_/, 'no secret in the trail');
  });

  test("a key's trail is readable with read on it; the whole trail and token changes need admin", async () => {
    const own = await cli(['audit', '--key', KEY], terraformToken);
    assert.equal(own.code, 0, own.stderr);
    assert.equal(own.stdout.trimEnd().split('\n').length, 6);
    const all = await cli(['audit'], terraformToken);
    assert.equal(all.code, 1);
    assert.match(all.stderr, /principal "ci-terraform" lacks the admin permission/);
    const none = await cli(['audit'], null);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /authentication required/);
  });

  test('the audit trail cannot be edited through any door: every writing method is 405 and nothing changes', async () => {
    const before = (await cli(['audit', '--json'])).stdout;
    const entries = JSON.parse(before) as Entry[];
    assert.ok(entries.length >= 9, before);
    const auth = { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' };
    const forged = JSON.stringify({ action: 'lock.acquire', key: KEY, lockId: 'forged', outcome: 'ok', principal: 'nobody', detail: {} });
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const query of ['', `?key=${encodeURIComponent(KEY)}`, '?action=lock.force-unlock']) {
        const r = await rawRequest(`${server.url}/api/v1/audit${query}`, { method, headers: auth, body: method === 'DELETE' ? undefined : forged });
        assert.equal(r.status, 405, `${method} /api/v1/audit${query}: ${r.text}`);
        assert.equal(r.headers.allow, 'GET, HEAD');
        assert.match(r.text, /METHOD_NOT_ALLOWED/);
      }
      const one = await rawRequest(`${server.url}/api/v1/audit/${entries[0]!.id}`, { method, headers: auth, body: method === 'DELETE' ? undefined : forged });
      assert.equal(one.status, 404, `${method} /api/v1/audit/<id>: no such resource`);
    }
    // The http backend door: "audit" is only ever a state key there, never the trail.
    const door = await rawRequest(`${server.url}/state/audit`, { method: 'DELETE', headers: auth });
    assert.ok(door.status < 500, `DELETE /state/audit: ${door.status}`);
    const afterwards = (await cli(['audit', '--json'])).stdout;
    assert.equal(afterwards, before, 'the trail is exactly as it was');
  });
});
