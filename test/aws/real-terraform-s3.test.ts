import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { lockBody } from '../support/http.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/server-process.js';
import { s3Client, serverRequest, startAwsServer, TEST_KEY, type AwsServer } from '../support/aws.js';
import { findExecutable } from '../../src/cli/child-process-guard.js';

/**
 * The REAL `terraform` binary with an unchanged `backend "s3"` block — the lesson's, pointed at statelock
 * with `endpoints` — using both `use_lockfile` and `dynamodb_table` (double locking), without
 * skip_credentials_validation or skip_requesting_account_id (statelock answers STS and IAM), over plain
 * HTTP and over HTTPS (where Terraform's AWS SDK sends aws-chunked bodies with trailing checksums).
 * Skipped with a visible reason where no terraform binary is installed (CI cannot install one).
 */


const terraformBin = findExecutable('terraform');
const SKIP = terraformBin === null ? 'no terraform binary on PATH (none can be installed here); the s3 backend is covered by the SDK replay tests' : false;
const BUCKET = 'acme-terraform-state-123456789012';
const KEY = 'lesson-17/terraform.tfstate';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function terraform(dir: string, env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const proc = spawn(terraformBin!, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 90_000);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(dir: string, env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  const r = await terraform(dir, env, ...args);
  assert.equal(r.code, 0, `terraform ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/**
 * A working directory whose backend block is exactly what `statelock backend-config --s3` prints for the
 * lesson's key (the lesson's block: use_lockfile and dynamodb_table), plus built-in resources only.
 */
async function project(server: AwsServer): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = tempDir('statelock-real-tf-s3-');
  const home = join(dir, '.home');
  mkdirSync(home);
  const printed = await runCli(['--server', server.url, 'backend-config', `${BUCKET}/${KEY}`, '--s3']);
  assert.equal(printed.code, 0, printed.stderr);
  writeFileSync(
    join(dir, 'main.tf'),
    `${printed.stdout}
variable "n" {
  type    = number
  default = 1
}

resource "terraform_data" "counter" {
  input = var.n
}

output "n" {
  value = terraform_data.counter.output
}
`,
  );
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    TMPDIR: dir,
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    TF_DATA_DIR: join(dir, '.tfdata'),
    AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    ...(server.tls ? { AWS_CA_BUNDLE: server.tls.certFile } : {}),
  };
  return { dir, env };
}

async function api<T>(server: AwsServer, path: string): Promise<{ status: number; json: T | null; body: Buffer }> {
  const res = await serverRequest(server, 'GET', `/api/v1/${path}`);
  return { status: res.status, json: res.status === 200 ? (JSON.parse(res.body.toString('utf8')) as T) : null, body: res.body };
}

for (const transport of ['http', 'https'] as const) {
  describe(`real terraform, backend "s3" over ${transport} (use_lockfile + dynamodb_table)`, { skip: SKIP }, () => {
    let server: AwsServer;
    before(async () => {
      server = await startAwsServer({ tls: transport === 'https' });
      await s3Client(server).send(new CreateBucketCommand({ Bucket: BUCKET }));
    });
    after(async () => {
      await server?.stop();
    });

    test('init, apply twice, plan: every write is a version, the s3 object and the http door agree, every lock is released', async () => {
      const p = await project(server);
      await ok(p.dir, p.env, 'init', '-no-color');
      await ok(p.dir, p.env, 'apply', '-auto-approve', '-no-color', '-var', 'n=1');
      await ok(p.dir, p.env, 'apply', '-auto-approve', '-no-color', '-var', 'n=2');
      const plan = await ok(p.dir, p.env, 'plan', '-no-color', '-var', 'n=2', '-detailed-exitcode');
      assert.match(plan.stdout, /No changes/);

      const viaHttp = await serverRequest(server, 'GET', `/state/${BUCKET}/${KEY}`);
      assert.equal(viaHttp.status, 200);
      const state = JSON.parse(viaHttp.body.toString('utf8')) as { serial: number; outputs: { n: { value: number } } };
      assert.equal(state.outputs.n.value, 2);
      const viaS3 = await s3Client(server).send(new GetObjectCommand({ Bucket: BUCKET, Key: KEY }));
      assert.ok(Buffer.from(await viaS3.Body!.transformToByteArray()).equals(viaHttp.body), 'the S3 object is the http door state, byte for byte');

      const versions = await api<{ items: Array<{ serial: number }> }>(server, `versions/${BUCKET}/${KEY}`);
      assert.ok(versions.json!.items.length >= 2, JSON.stringify(versions.json));
      assert.equal(versions.json!.items.at(-1)!.serial, state.serial);
      assert.equal((await api(server, `locks/${BUCKET}/${KEY}`)).status, 404, 'both holds released');
      const grants = await api<{ items: Array<{ detail: { door?: string } }> }>(server, `audit?key=${encodeURIComponent(`${BUCKET}/${KEY}`)}&action=lock.acquire`);
      assert.ok(grants.json!.items.some((e) => e.detail.door === 's3'), 'the .tflock object took the lock');
    });

    test('a lock held through the http door stops terraform, which shows the holder; released, terraform proceeds', async () => {
      const p = await project(server);
      await ok(p.dir, p.env, 'init', '-no-color');
      const id = 'b1b2c3d4-0000-4000-8000-000000000017';
      const held = await serverRequest(server, 'LOCK', `/state/${BUCKET}/${KEY}`, lockBody(id, 'OperationTypeApply', 'alice@ci-runner-7'));
      assert.equal(held.status, 200, held.body.toString('utf8'));
      const refused = await terraform(p.dir, p.env, 'apply', '-auto-approve', '-no-color', '-var', 'n=3', '-lock-timeout=0s');
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /Error acquiring the state lock/);
      assert.match(refused.stderr, new RegExp(`ID:\\s+${id}`));
      assert.match(refused.stderr, /alice@ci-runner-7/);
      const unlock = await serverRequest(server, 'UNLOCK', `/state/${BUCKET}/${KEY}`, lockBody(id));
      assert.equal(unlock.status, 200);
      await ok(p.dir, p.env, 'apply', '-auto-approve', '-no-color', '-var', 'n=3');
    });

    test('workspaces live under env:/ and are listed from the bucket', async () => {
      const p = await project(server);
      await ok(p.dir, p.env, 'init', '-no-color');
      await ok(p.dir, p.env, 'workspace', 'new', '-no-color', 'pr-42');
      await ok(p.dir, p.env, 'apply', '-auto-approve', '-no-color', '-var', 'n=42');
      const list = await ok(p.dir, p.env, 'workspace', 'list', '-no-color');
      assert.match(list.stdout, /\* pr-42/);
      assert.match(list.stdout, /default/);
      const pr = await serverRequest(server, 'GET', `/state/${BUCKET}/env:/pr-42/${KEY}`);
      assert.equal(pr.status, 200);
      assert.equal((JSON.parse(pr.body.toString('utf8')) as { outputs: { n: { value: number } } }).outputs.n.value, 42);
    });
  });
}
