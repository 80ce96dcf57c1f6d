import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteItemCommand, GetItemCommand, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { isAllowed, parseGrant, type Grant, type Permission } from '../../src/auth/permissions.js';
import { lockBody, stateBody } from '../support/http.js';
import { runCli } from '../support/cli.js';
import { dynamoClient, s3Client, serverRequest, startAwsServer, type AwsServer, type PlainResponse } from '../support/aws.js';
import { STATELOCK_BIN, tempDir } from '../support/server-process.js';

/**
 * Authentication and authorization end to end, on the real server: bootstrapping the first admin token
 * on a fresh server, then every principal × door × operation checked against the grants (allowed, or
 * 401/403 with nothing changed), listings filtered, revocation, and what is (not) stored.
 */

interface Created {
  name: string;
  token: string;
  grants: string[];
  awsAccessKeyId: string | null;
  awsSecretAccessKey: string | null;
}

const BUCKET = 'acme';
const PR = `${BUCKET}/lesson-17/pr-1/terraform.tfstate`;
const PROD = `${BUCKET}/lesson-17/prod/terraform.tfstate`;

let server: AwsServer;
let admin: Created;
const principals: Record<string, Created> = {};

const basic = (token: string) => `Basic ${Buffer.from(`terraform:${token}`).toString('base64')}`;
const bearer = (token: string) => `Bearer ${token}`;

function req(method: string, path: string, token: string | null, body?: string, style: 'basic' | 'bearer' = 'bearer'): Promise<PlainResponse> {
  return serverRequest(server, method, path, body, token === null ? {} : { Authorization: style === 'basic' ? basic(token) : bearer(token) });
}

async function createToken(as: string | null, name: string, allow: string[]): Promise<Created> {
  const res = await req('POST', '/api/v1/tokens', as, JSON.stringify({ name, allow, aws: true }));
  assert.equal(res.status, 201, res.body.toString('utf8'));
  return JSON.parse(res.body.toString('utf8')) as Created;
}

/** What an admin sees of a key: bytes, lock holder and version count — the "nothing changed" witness. */
async function witness(key: string): Promise<string> {
  const state = await req('GET', `/state/${key}`, admin.token);
  const lock = await req('GET', `/api/v1/locks/${key}`, admin.token);
  const versions = await req('GET', `/api/v1/versions/${key}`, admin.token);
  const holder = lock.status === 200 ? (JSON.parse(lock.body.toString('utf8')) as { info: { ID: string } }).info.ID : null;
  const count = versions.status === 200 ? (JSON.parse(versions.body.toString('utf8')) as { items: unknown[] }).items.length : 0;
  return JSON.stringify({ state: state.status === 200 ? state.body.toString('base64') : state.status, holder, count });
}

before(async () => {
  server = await startAwsServer({ anyKey: true });
});
after(async () => {
  await server?.stop();
});

describe('bootstrap: a fresh server allows everything on loopback until the first token exists', () => {
  test('the banner says so; `statelock token create` works without a token; then every door needs one', async () => {
    assert.match(server.stdout(), /authentication: off: no token exists yet/);
    const r = await runCli(['--server', server.url, 'token', 'create', '--name', 'admin', '--allow', '*:admin', '--aws', '--json']);
    assert.equal(r.code, 0, r.stderr);
    admin = JSON.parse(r.stdout) as Created;
    assert.match(admin.token, /^slk_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    const anonymous = await req('GET', '/api/v1/states', null);
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /Basic realm="statelock"/);
    assert.match(anonymous.body.toString('utf8'), /UNAUTHENTICATED/);
    assert.equal((await req('GET', '/api/v1/states', 'slk_AAAAAAAAAAAAAAAA_' + 'x'.repeat(43))).status, 401, 'a made-up token');
    assert.equal((await req('GET', '/api/v1/states', admin.token)).status, 200);
    assert.equal((await req('GET', '/api/v1/states', admin.token, undefined, 'basic')).status, 200, "Terraform's username/password");
    assert.equal((await serverRequest(server, 'GET', '/healthz')).status, 200, 'operations endpoints stay open');
    const cli = await runCli(['--server', server.url, 'locks']);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /authentication required/);
    assert.equal((await runCli(['--server', server.url, '--token', admin.token, 'locks'])).code, 0);
  });

  test('secrets are shown once: the database holds only the token hash', async () => {
    const files = readdirSync(server.dataDir).map((f) => readFileSync(join(server.dataDir, f)));
    const secret = admin.token.slice(21);
    for (const f of files) assert.equal(f.includes(Buffer.from(secret)), false, 'the token secret is not stored');
    const list = await runCli(['--server', server.url, '--token', admin.token, 'token', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /admin\s+\*:admin/);
    assert.doesNotMatch(list.stdout, new RegExp(secret));
  });
});

/** An operation of one door, the permission it needs, and how to run it as a principal. */
interface Operation {
  door: 'http (Basic)' | 'http (Bearer)' | 'api' | 's3' | 'dynamodb';
  name: string;
  key: string | null;
  needs: Permission;
  /** Prepares what the operation acts on (as admin). */
  setup?: () => Promise<void>;
  run: (p: Created) => Promise<'allowed' | 'unauthenticated' | 'forbidden' | string>;
}

const LOCK_ID = '6f1d2c3b-0000-4000-8000-00000000aaaa';

function httpStatus(res: PlainResponse): 'allowed' | 'unauthenticated' | 'forbidden' | string {
  if (res.status === 401) return 'unauthenticated';
  if (res.status === 403) return 'forbidden';
  if (res.status >= 200 && res.status < 300) return 'allowed';
  return `HTTP ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`;
}

async function awsOutcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'allowed';
  } catch (err) {
    const name = (err as { name: string }).name;
    if (name === 'AccessDenied' || name === 'AccessDeniedException') return 'forbidden';
    return `${name}: ${(err as Error).message}`;
  }
}

const ensureState = (key: string) => async () => {
  const cur = await req('GET', `/state/${key}`, admin.token);
  if (cur.status !== 200) assert.equal((await req('POST', `/state/${key}`, admin.token, stateBody(1, 'L'))).status, 200);
};
const ensureFree = (key: string) => async () => {
  await req('UNLOCK', `/state/${key}`, admin.token, '');
};
const ensureHeld = (key: string) => async () => {
  await ensureFree(key)();
  assert.equal((await req('LOCK', `/state/${key}`, admin.token, lockBody(LOCK_ID))).status, 200);
};
let serial = 10;

function operations(): Operation[] {
  const ops: Operation[] = [];
  for (const key of [PR, PROD]) {
    for (const style of ['basic', 'bearer'] as const) {
      const door = style === 'basic' ? 'http (Basic)' : 'http (Bearer)';
      ops.push(
        { door, name: 'GET state', key, needs: 'read', setup: ensureState(key), run: async (p) => httpStatus(await req('GET', `/state/${key}`, p.token, undefined, style)) },
        { door, name: 'POST state', key, needs: 'write', setup: ensureFree(key), run: async (p) => httpStatus(await req('POST', `/state/${key}`, p.token, stateBody(++serial, 'L'), style)) },
        { door, name: 'LOCK', key, needs: 'lock', setup: ensureFree(key), run: async (p) => httpStatus(await req('LOCK', `/state/${key}`, p.token, lockBody(LOCK_ID), style)) },
        { door, name: 'UNLOCK (holder)', key, needs: 'lock', setup: ensureHeld(key), run: async (p) => httpStatus(await req('UNLOCK', `/state/${key}`, p.token, lockBody(LOCK_ID), style)) },
        { door, name: 'UNLOCK (empty body: force-unlock)', key, needs: 'force-unlock', setup: ensureHeld(key), run: async (p) => httpStatus(await req('UNLOCK', `/state/${key}`, p.token, '', style)) },
        { door, name: 'DELETE state', key, needs: 'delete', setup: async () => (await ensureFree(key)(), await ensureState(key)()), run: async (p) => httpStatus(await req('DELETE', `/state/${key}`, p.token, undefined, style)) },
      );
    }
    ops.push(
      { door: 'api', name: 'GET versions', key, needs: 'read', setup: ensureState(key), run: async (p) => httpStatus(await req('GET', `/api/v1/versions/${key}`, p.token)) },
      { door: 'api', name: 'POST restore', key, needs: 'restore', setup: async () => (await ensureFree(key)(), await ensureState(key)()), run: async (p) => httpStatus(await req('POST', `/api/v1/restore/${key}?seq=1`, p.token)) },
      { door: 'api', name: 'DELETE lock (force-unlock)', key, needs: 'force-unlock', setup: ensureHeld(key), run: async (p) => httpStatus(await req('DELETE', `/api/v1/locks/${key}?id=${LOCK_ID}`, p.token)) },
      { door: 'api', name: 'GET audit of the key', key, needs: 'read', run: async (p) => httpStatus(await req('GET', `/api/v1/audit?key=${encodeURIComponent(key)}`, p.token)) },
    );
    const objectKey = key.slice(BUCKET.length + 1);
    ops.push(
      { door: 's3', name: 'GetObject', key, needs: 'read', setup: ensureState(key), run: (p) => awsOutcome(() => s3For(p).send(new GetObjectCommand({ Bucket: BUCKET, Key: objectKey }))) },
      { door: 's3', name: 'PutObject', key, needs: 'write', setup: ensureFree(key), run: (p) => awsOutcome(() => s3For(p).send(new PutObjectCommand({ Bucket: BUCKET, Key: objectKey, Body: stateBody(++serial, 'L') }))) },
      { door: 's3', name: 'PutObject .tflock', key, needs: 'lock', setup: ensureFree(key), run: (p) => awsOutcome(() => s3For(p).send(new PutObjectCommand({ Bucket: BUCKET, Key: `${objectKey}.tflock`, Body: lockBody(LOCK_ID), IfNoneMatch: '*' }))) },
      { door: 'dynamodb', name: 'GetItem', key, needs: 'read', setup: ensureHeld(key), run: (p) => awsOutcome(() => ddbFor(p).send(new GetItemCommand({ TableName: 'terraform-state-lock', Key: { LockID: { S: key } } }))) },
      { door: 'dynamodb', name: 'PutItem (lock)', key, needs: 'lock', setup: ensureFree(key), run: (p) => awsOutcome(() => ddbFor(p).send(new PutItemCommand({ TableName: 'terraform-state-lock', Item: { LockID: { S: key }, Info: { S: lockBody(LOCK_ID) } }, ConditionExpression: 'attribute_not_exists(LockID)' }))) },
      { door: 'dynamodb', name: 'DeleteItem of an http lock (force-unlock)', key, needs: 'force-unlock', setup: ensureHeld(key), run: (p) => awsOutcome(() => ddbFor(p).send(new DeleteItemCommand({ TableName: 'terraform-state-lock', Key: { LockID: { S: key } } }))) },
    );
  }
  ops.push({ door: 'api', name: 'GET tokens', key: null, needs: 'admin', run: async (p) => httpStatus(await req('GET', '/api/v1/tokens', p.token)) });
  return ops;
}

const s3Clients = new Map<string, ReturnType<typeof s3Client>>();
const ddbClients = new Map<string, ReturnType<typeof dynamoClient>>();
const creds = (p: Created) => ({ accessKeyId: p.awsAccessKeyId!, secretAccessKey: p.awsSecretAccessKey! });
const s3For = (p: Created) => s3Clients.get(p.name) ?? s3Clients.set(p.name, s3Client(server, { credentials: creds(p) })).get(p.name)!;
const ddbFor = (p: Created) => ddbClients.get(p.name) ?? ddbClients.set(p.name, dynamoClient(server, { credentials: creds(p) })).get(p.name)!;

describe('every principal × door × operation', () => {
  before(async () => {
    const grants: Record<string, string[]> = {
      reader: ['*:read'],
      'pr-ci': ['acme/lesson-17/pr-*:read,write,lock'],
      unlocker: ['*:read,lock,force-unlock'],
      deleter: ['acme/*:read,delete'],
      restorer: ['acme/*:read,restore'],
      nobody: ['other/*:read'],
    };
    for (const [name, allow] of Object.entries(grants)) principals[name] = await createToken(admin.token, name, allow);
    principals.admin = admin;
    await s3For(admin).send(new CreateBucketCommand({ Bucket: BUCKET }));
  });

  test('allowed exactly when a grant covers the key and permission; refusals are 403 and change nothing', async () => {
    const problems: string[] = [];
    let cases = 0;
    for (const op of operations()) {
      for (const p of Object.values(principals)) {
        const grants = p.grants.map(parseGrant).filter((g): g is Grant => !('error' in g));
        const expected = isAllowed(grants, op.needs, op.key) ? 'allowed' : 'forbidden';
        await op.setup?.();
        const before = op.key ? await witness(op.key) : '';
        const got = await op.run(p);
        cases++;
        if (got !== expected) problems.push(`${p.name} × ${op.door} ${op.name} on ${op.key ?? 'server'}: expected ${expected}, got ${got}`);
        if (got === 'forbidden' && op.key && (await witness(op.key)) !== before) problems.push(`${p.name} × ${op.door} ${op.name}: refused but changed ${op.key}`);
      }
    }
    console.log(`# authorization matrix: ${cases} cases (${Object.keys(principals).length} principals × ${operations().length} door operations)`);
    assert.deepEqual(problems, []);
  });

  test('listings show only what the principal may read: API states and locks, S3 ListObjectsV2, DynamoDB Scan', async () => {
    await ensureState(PR)();
    await ensureState(PROD)();
    await ensureHeld(PR)();
    await ensureHeld(PROD)();
    const pr = principals['pr-ci']!;
    const states = JSON.parse((await req('GET', '/api/v1/states', pr.token)).body.toString('utf8')) as { items: Array<{ key: string }> };
    assert.deepEqual(states.items.map((s) => s.key), [PR]);
    const locks = JSON.parse((await req('GET', '/api/v1/locks', pr.token)).body.toString('utf8')) as { items: Array<{ key: string }> };
    assert.deepEqual(locks.items.map((l) => l.key), [PR]);
    const listed = await s3For(pr).send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.ok((listed.Contents ?? []).every((o) => o.Key!.startsWith('lesson-17/pr-')), JSON.stringify(listed.Contents));
    const scan = await ddbFor(pr).send(new ScanCommand({ TableName: 'terraform-state-lock' }));
    assert.ok((scan.Items ?? []).length > 0 && (scan.Items ?? []).every((i) => i.LockID!.S!.startsWith(`${BUCKET}/lesson-17/pr-`)), JSON.stringify(scan.Items));
    const admins = JSON.parse((await req('GET', '/api/v1/states', admin.token)).body.toString('utf8')) as { items: Array<{ key: string }> };
    assert.ok(admins.items.some((s) => s.key === PROD));
  });

  test('a 403 names the principal and the missing permission, never a secret', async () => {
    const reader = principals.reader!;
    const res = await req('DELETE', `/state/${PR}`, reader.token);
    assert.equal(res.status, 403);
    const text = res.body.toString('utf8');
    assert.match(text, /principal \\?"reader\\?" lacks the delete permission on acme\/lesson-17\/pr-1\/terraform.tfstate/);
    assert.ok(!text.includes(reader.token.slice(21)));
  });

  test('a revoked token is refused at once, on every door; the revocation and the creations are audited with the principal', async () => {
    const temp = await createToken(admin.token, 'temporary', ['*:read']);
    assert.equal((await req('GET', `/state/${PR}`, temp.token)).status, 200);
    const revoke = await runCli(['--server', server.url, '--token', admin.token, 'token', 'revoke', 'temporary']);
    assert.equal(revoke.code, 0, revoke.stderr);
    const after = await req('GET', `/state/${PR}`, temp.token);
    assert.equal(after.status, 401);
    assert.match(after.body.toString('utf8'), /revoked/);
    assert.equal(await awsOutcome(() => s3For(temp).send(new GetObjectCommand({ Bucket: BUCKET, Key: PR.slice(BUCKET.length + 1) }))).then((o) => o.startsWith('InvalidAccessKeyId')), true);
    const audit = await runCli(['--server', server.url, '--token', admin.token, 'audit', '--key', 'tokens/temporary', '--json']);
    assert.equal(audit.code, 0, audit.stderr);
    const entries = JSON.parse(audit.stdout) as Array<{ action: string; principal: string }>;
    assert.deepEqual(entries.map((e) => [e.action, e.principal]), [['token.create', 'admin'], ['token.revoke', 'admin']]);
    const locks = await runCli(['--server', server.url, '--token', admin.token, 'audit', '--key', PR, '--action', 'lock.acquire']);
    assert.match(locks.stdout, /lock\.acquire\s+acme\/lesson-17\/pr-1\/terraform\.tfstate\s+\S+\s+ok\s+admin/);
  });
});

describe('safe defaults at start-up', () => {
  test('beyond loopback without a token: refused (exit 2) unless --insecure-no-auth; with a token: starts', async () => {
    const fresh = tempDir();
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, [STATELOCK_BIN, 'serve', '--host', '0.0.0.0', '--port', '0', '--data', fresh], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.on('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0 without authentication.*--insecure-no-auth/s);
    const insecure = await startAwsServer({ anyKey: true, dataDir: fresh, args: ['--host', '0.0.0.0', '--insecure-no-auth'] });
    try {
      assert.match(insecure.stdout(), /authentication: OFF \(--insecure-no-auth\)/);
      assert.equal((await serverRequest(insecure, 'POST', '/api/v1/tokens', JSON.stringify({ name: 'admin', allow: ['*:admin'] }))).status, 201);
    } finally {
      await insecure.stop();
    }
    const secured = await startAwsServer({ anyKey: true, dataDir: fresh, args: ['--host', '0.0.0.0'] });
    try {
      assert.match(secured.stdout(), /authentication: tokens required/);
      assert.equal((await serverRequest(secured, 'GET', '/api/v1/states')).status, 401);
    } finally {
      await secured.stop();
    }
  });
});
