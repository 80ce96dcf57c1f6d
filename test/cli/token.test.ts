import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AWS_CLI_SKIP, awsCli, startAwsServer, type AwsServer, type CliResult as AwsResult } from '../support/aws.js';
import { runCli } from '../support/cli.js';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';

/**
 * `statelock token create / list / revoke`, as the real binary against a real server: secrets printed once
 * and never listed or stored, grants checked before anything is sent, the AWS key pair of `--aws` used by
 * the real AWS CLI, and a revoked token refused.
 */

const TOKEN = /slk_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}/;
const TOKEN_JSON_KEYS = ['awsAccessKeyId', 'createdAt', 'grants', 'name', 'revokedAt'];

/** A table's cells: columns are padded and at least two spaces apart. */
function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

/** The token and (with --aws) the key pair, read back from the human output of `token create`. */
function secretsOf(stdout: string): { token: string; accessKeyId: string | null; secretAccessKey: string | null } {
  const token = TOKEN.exec(stdout)?.[0];
  assert.ok(token, `no token in:\n${stdout}`);
  return {
    token,
    accessKeyId: /^ {2}export AWS_ACCESS_KEY_ID=(\S+)$/m.exec(stdout)?.[1] ?? null,
    secretAccessKey: /^ {2}export AWS_SECRET_ACCESS_KEY=(\S+)$/m.exec(stdout)?.[1] ?? null,
  };
}

/** Every byte of the SQLite files under the data directory (database, WAL), as the server has them now. */
function databaseBytes(dataDir: string): Buffer {
  const files = readdirSync(dataDir).filter((f) => f.startsWith('statelock.db'));
  assert.ok(files.includes('statelock.db'), `no database in ${dataDir}: ${files.join(', ')}`);
  return Buffer.concat(files.map((f) => readFileSync(join(dataDir, f))));
}

describe('statelock token', () => {
  let server: AwsServer;
  let admin: string;
  const cli = (args: string[], token: string | null = admin) => runCli(['--server', server.url, ...args], { env: { STATELOCK_TOKEN: token ?? '' } });
  const created: Record<string, ReturnType<typeof secretsOf>> = {};

  before(async () => {
    // No --aws-credentials: the AWS doors then know only the principals' key pairs.
    server = await startAwsServer({ anyKey: true });
    const r = await cli(['token', 'create', '--name', 'admin', '--allow', '*:admin', '--aws'], null);
    assert.equal(r.code, 0, r.stderr);
    created.admin = secretsOf(r.stdout);
    admin = created.admin.token;
  });
  after(async () => {
    await server?.stop();
  });

  test('create prints the token once, the line to export, and that it cannot be shown again', async () => {
    const r = await cli(['token', 'create', '--name', 'ci-pr', '--allow', 'lesson-17/pr-*:read,write,lock', '--allow', '*:read']);
    assert.equal(r.code, 0, r.stderr);
    const s = secretsOf(r.stdout);
    created['ci-pr'] = s;
    assert.match(r.stdout, /^Token "ci-pr" created with lesson-17\/pr-\*:read,write,lock \*:read:$/m);
    assert.equal(r.stdout.split(s.token).length - 1, 2, 'the token itself and the export line');
    assert.match(r.stdout, new RegExp(`^ {2}export STATELOCK_TOKEN=${s.token}$`, 'm'));
    assert.match(r.stdout, /cannot be shown again/);
    assert.match(r.stdout, /password = the token \(HTTP Basic\)/);
    assert.equal(s.accessKeyId, null, 'no AWS key pair without --aws');
    assert.doesNotMatch(r.stdout, /first live token/, 'only the bootstrap says so');
  });

  test('the token does what its grants allow, and a 403 prints the server message and exits 1', async () => {
    const ci = created['ci-pr']!.token;
    const pr = `${server.url}/state/lesson-17/pr-42/terraform.tfstate`;
    const prod = `${server.url}/state/lesson-17/prod/terraform.tfstate`;
    const basic = { Authorization: `Basic ${Buffer.from(`terraform:${ci}`).toString('base64')}` };
    const id = randomUUID();
    assert.equal((await rawRequest(pr, { method: 'LOCK', headers: basic, body: lockBody(id) })).status, 200);
    assert.equal((await rawRequest(`${pr}?ID=${id}`, { method: 'POST', headers: basic, body: stateBody(1, randomUUID()) })).status, 200);
    assert.equal((await rawRequest(pr, { method: 'UNLOCK', headers: basic, body: lockBody(id) })).status, 200);
    const refused = await rawRequest(prod, { method: 'LOCK', headers: basic, body: lockBody(randomUUID()) });
    assert.equal(refused.status, 403);
    assert.match(refused.text, /principal \\?"ci-pr\\?" lacks the lock permission on lesson-17\/prod\/terraform.tfstate/);

    const list = await cli(['state', 'list'], ci);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /lesson-17\/pr-42\/terraform\.tfstate/);
    const rm = await cli(['state', 'rm', 'lesson-17/pr-42/terraform.tfstate'], ci);
    assert.equal(rm.code, 1, rm.stdout);
    assert.match(rm.stderr, /^statelock: principal "ci-pr" lacks the delete permission on lesson-17\/pr-42\/terraform\.tfstate/);
    const mint = await cli(['token', 'create', '--name', 'escalate', '--allow', '*:admin'], ci);
    assert.equal(mint.code, 1);
    assert.match(mint.stderr, /principal "ci-pr" lacks the admin permission/);
    const tokens = await cli(['token', 'list'], ci);
    assert.equal(tokens.code, 1);
    assert.match(tokens.stderr, /lacks the admin permission/);
  });

  test('list: an aligned table of NAME, GRANTS, AWS KEY, CREATED, REVOKED — never a secret', async () => {
    const r = await cli(['token', 'list']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.deepEqual(cells(lines[0]!), ['NAME', 'GRANTS', 'AWS KEY', 'CREATED', 'REVOKED']);
    const rows = Object.fromEntries(lines.slice(1).map((l) => [cells(l)[0], cells(l)]));
    assert.deepEqual(rows.admin!.slice(1, 3), ['*:admin', created.admin!.accessKeyId]);
    assert.deepEqual(rows['ci-pr']!.slice(1, 3), ['lesson-17/pr-*:read,write,lock *:read', '-']);
    assert.match(rows['ci-pr']![3]!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.equal(rows['ci-pr']![4], '-');
    const starts = lines.slice(1).map((l) => l.indexOf(cells(l)[1]!));
    assert.ok(starts.every((s) => s === lines[0]!.indexOf('GRANTS')), `GRANTS column aligned:\n${r.stdout}`);

    const json = await cli(['token', 'list', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const items = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    for (const t of items) assert.deepEqual(Object.keys(t).sort(), TOKEN_JSON_KEYS);
    for (const out of [r.stdout, json.stdout]) {
      assert.doesNotMatch(out, /slk_/);
      assert.ok(!out.includes(created.admin!.secretAccessKey!), 'no AWS secret in a listing');
    }
  });

  test('the database holds no token secret, only its hash', () => {
    const bytes = databaseBytes(server.dataDir);
    for (const [name, s] of Object.entries(created)) {
      const id = s.token.slice(4, 20);
      const secret = s.token.slice(21); // the secret may itself contain '_'
      assert.ok(bytes.includes(Buffer.from(id!)), `the principal ${name} is in these files (so the search below can find things)`);
      assert.equal(bytes.includes(Buffer.from(secret!)), false, `the secret of ${name}'s token is not stored`);
      assert.equal(bytes.includes(Buffer.from(secret!.slice(0, 16))), false, `no part of ${name}'s secret either`);
    }
  });

  test('bad grants and names: exit 2 with the reason, and nothing is created', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--name', 'bad', '--allow', 'lesson-17/*:read,fly'], /unknown permission "fly" in "lesson-17\/\*:read,fly"; use read, write, lock, force-unlock, delete, restore, admin/],
      [['--name', 'bad', '--allow', 'lesson-17'], /"lesson-17" is not <key glob>:<permission,…>/],
      [['--name', 'bad', '--allow', 'lesson-17/*:'], /names no permission/],
      [['--name', 'bad'], /give at least one --allow/],
      [['--allow', '*:read'], /--name is required/],
      [['--name', 'bad', '--allow', '*:read', '--admin'], /Unknown option '--admin'/],
      [['--name', 'no spaces please', '--allow', '*:read'], /^statelock: invalid token request: name "no spaces please" must be 1-64 letters/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(['token', 'create', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.equal(r.stdout, '');
    }
    const dup = await cli(['token', 'create', '--name', 'ci-pr', '--allow', '*:read']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /a live token named ci-pr already exists/);
    const names = (JSON.parse((await cli(['token', 'list', '--json'])).stdout) as Array<{ name: string }>).map((t) => t.name);
    assert.deepEqual(names.sort(), ['admin', 'ci-pr']);
  });

  test('--aws: the access key pair works with the real AWS CLI, within the grants', { skip: AWS_CLI_SKIP }, async () => {
    const r = await cli(['token', 'create', '--name', 'ci-aws', '--allow', 'acme/lesson-17/*:read,write', '--aws']);
    assert.equal(r.code, 0, r.stderr);
    const s = secretsOf(r.stdout);
    created['ci-aws'] = s;
    assert.match(s.accessKeyId ?? '', /^SLK[A-Z0-9]{16}$/);
    assert.ok(s.secretAccessKey, r.stdout);
    assert.match(r.stdout, /AWS key pair for the S3, DynamoDB and STS doors/);
    assert.match(r.stdout, /cannot be shown again/);
    const adminKeys = { accessKeyId: created.admin!.accessKeyId!, secretAccessKey: created.admin!.secretAccessKey! };
    const keys = { accessKeyId: s.accessKeyId!, secretAccessKey: s.secretAccessKey! };
    const ok = (res: AwsResult, what: string) => assert.equal(res.code, 0, `${what}: ${res.stderr}`);

    ok(await awsCli(server, ['s3', 'mb', 's3://acme'], { credentials: adminKeys }), 'admin: aws s3 mb');
    const file = join(tempDir(), 'terraform.tfstate');
    const body = stateBody(1, randomUUID());
    writeFileSync(file, body);
    ok(await awsCli(server, ['s3', 'cp', file, 's3://acme/lesson-17/terraform.tfstate'], { credentials: keys }), 'ci-aws: aws s3 cp');
    const ls = await awsCli(server, ['s3', 'ls', 's3://acme/lesson-17/'], { credentials: keys });
    ok(ls, 'ci-aws: aws s3 ls');
    assert.match(ls.stdout, /terraform\.tfstate\n/);
    const buckets = await awsCli(server, ['s3', 'ls'], { credentials: keys });
    ok(buckets, 'ci-aws: aws s3 ls (buckets)');
    assert.match(buckets.stdout, /\sacme\n/);
    const down = await awsCli(server, ['s3', 'cp', 's3://acme/lesson-17/terraform.tfstate', '-'], { credentials: keys });
    ok(down, 'ci-aws: aws s3 cp down');
    assert.equal(down.stdout, body);

    const outside = await awsCli(server, ['s3', 'cp', file, 's3://acme/prod/terraform.tfstate'], { credentials: keys });
    assert.notEqual(outside.code, 0);
    assert.match(outside.stderr, /AccessDenied/);
    // one character changed to one it is not: a secret that already starts with 'x' must not come back unchanged
    const wrongSecret = (keys.secretAccessKey.startsWith('x') ? 'y' : 'x') + keys.secretAccessKey.slice(1);
    assert.notEqual(wrongSecret, keys.secretAccessKey);
    const badSecret = await awsCli(server, ['s3', 'ls'], { credentials: { ...keys, secretAccessKey: wrongSecret } });
    assert.notEqual(badSecret.code, 0);
    assert.match(badSecret.stderr, /SignatureDoesNotMatch/);
  });

  test('revoke: the token and its AWS key get refused at once; revoking again or an unknown name exits 4', async () => {
    const ci = created['ci-pr']!.token;
    assert.equal((await cli(['locks'], ci)).code, 0, 'works before');
    const r = await cli(['token', 'revoke', 'ci-pr']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Token "ci-pr" revoked at \d{4}-\d{2}-\d{2}T[\d:.]+Z: its next request is refused \(401\)\.$/m);
    assert.equal(r.stderr, '', 'no warning while another live token exists');

    const after = await cli(['locks'], ci);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /^statelock: authentication required: the token "ci-pr" was revoked at /);
    const http = await rawRequest(`${server.url}/state/lesson-17/pr-42/terraform.tfstate`, { headers: { Authorization: `Basic ${Buffer.from(`terraform:${ci}`).toString('base64')}` } });
    assert.equal(http.status, 401, 'the http backend refuses it too');

    const row = (await cli(['token', 'list'])).stdout.split('\n').map(cells).find((c) => c[0] === 'ci-pr');
    assert.match(row?.[4] ?? '', /^\d{4}-\d{2}-\d{2}T/, 'listed with its revocation time');

    const again = await cli(['token', 'revoke', 'ci-pr']);
    assert.equal(again.code, 4);
    assert.match(again.stderr, /no live token named ci-pr/);
    assert.equal((await cli(['token', 'revoke', 'nobody'])).code, 4);
    assert.equal((await cli(['token', 'revoke'])).code, 2);
    assert.equal((await cli(['token', 'revoke', 'a', 'b'])).code, 2);

    if (created['ci-aws'] && !AWS_CLI_SKIP) {
      const keys = { accessKeyId: created['ci-aws'].accessKeyId!, secretAccessKey: created['ci-aws'].secretAccessKey! };
      const revoked = await cli(['token', 'revoke', 'ci-aws']);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.match(revoked.stdout, new RegExp(`and so is its AWS key ${keys.accessKeyId}`));
      const ls = await awsCli(server, ['s3', 'ls', 's3://acme/lesson-17/'], { credentials: keys });
      assert.notEqual(ls.code, 0);
      assert.match(ls.stderr, /InvalidAccessKeyId/);
    }
  });
});

describe('statelock token revoke of the last live token', () => {
  let server: RunningServer;
  before(async () => (server = await startServer()));
  after(async () => {
    await server?.stop();
  });

  test('the last admin token cannot be revoked (authentication would switch off); after a replacement exists it can', async () => {
    const env = { STATELOCK_TOKEN: '' };
    const c = await runCli(['--server', server.url, 'token', 'create', '--name', 'admin', '--allow', '*:admin'], { env });
    assert.equal(c.code, 0, c.stderr);
    const token = secretsOf(c.stdout).token;
    const refused = await runCli(['--server', server.url, '--token', token, 'token', 'revoke', 'admin'], { env });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /refusing to revoke admin: it is the last live token/);
    assert.equal((await runCli(['--server', server.url, 'locks'], { env })).code, 1, 'authentication is still on');
    const second = await runCli(['--server', server.url, '--token', token, 'token', 'create', '--name', 'admin-2', '--allow', '*:admin'], { env });
    assert.equal(second.code, 0, second.stderr);
    const r = await runCli(['--server', server.url, '--token', token, 'token', 'revoke', 'admin'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await runCli(['--server', server.url, '--token', secretsOf(second.stdout).token, 'locks'], { env })).code, 0);
  });
});
