import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stateBody } from '../support/http.js';
import { tempDir } from '../support/server-process.js';
import { AWS_CLI_SKIP, awsCli, serverRequest, startAwsServer, type AwsServer, type CliResult } from '../support/aws.js';

/**
 * The real AWS CLI (Debian's awscli 2.9.19) typed against statelock as the lesson does: make the bucket,
 * copy states up and down (multipart and ranged above 8 MiB), list them, list their versions, remove a
 * PR's state — over HTTP and over HTTPS.
 */

const BUCKET = 'acme-terraform-state-123456789012';

function ok(r: CliResult, what: string): CliResult {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

const keyPath = (stateKey: string) => stateKey.split('/').map(encodeURIComponent).join('/');

for (const tls of [false, true]) {
  describe(`aws s3 / aws s3api against statelock over ${tls ? 'HTTPS' : 'HTTP'}`, { skip: AWS_CLI_SKIP }, () => {
    let server: AwsServer;
    let dir: string;
    const aws = (...args: string[]) => awsCli(server, args);
    const stored = (stateKey: string) => serverRequest(server, 'GET', `/state/${keyPath(stateKey)}`);

    before(async () => {
      server = await startAwsServer({ tls });
      dir = tempDir('statelock-s3-cli-');
      ok(await aws('s3', 'mb', `s3://${BUCKET}`), 'aws s3 mb');
    });
    after(async () => {
      await server?.stop();
    });

    test('aws s3 mb makes the bucket once; again it reports BucketAlreadyOwnedByYou', async () => {
      const again = await aws('s3', 'mb', `s3://${BUCKET}`);
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /BucketAlreadyOwnedByYou/);
      const listed = ok(await aws('s3', 'ls'), 'aws s3 ls');
      assert.match(listed.stdout, new RegExp(`\\s${BUCKET}\\n`));
    });

    test('aws s3 cp up and down: the bytes are the state, byte for byte', async () => {
      const file = join(dir, 'terraform.tfstate');
      const body = stateBody(4, randomUUID(), { outputs: { region: { value: 'eu-west-1', type: 'string' } } });
      writeFileSync(file, body);
      ok(await aws('s3', 'cp', file, `s3://${BUCKET}/lesson-17/terraform.tfstate`), 'aws s3 cp up');
      assert.equal((await stored(`${BUCKET}/lesson-17/terraform.tfstate`)).body.toString('utf8'), body);
      const down = ok(await aws('s3', 'cp', `s3://${BUCKET}/lesson-17/terraform.tfstate`, '-'), 'aws s3 cp down');
      assert.equal(down.stdout, body);
    });

    test('a 9 MiB state: multipart upload (8 MiB + 1 MiB parts) and a ranged multipart download', async () => {
      const file = join(dir, 'big.tfstate');
      const back = join(dir, 'big.back');
      const body = Buffer.from(stateBody(1, randomUUID(), { outputs: { blob: { value: 'y'.repeat(9 * 1024 * 1024), type: 'string' } } }));
      writeFileSync(file, body);
      ok(await aws('s3', 'cp', file, `s3://${BUCKET}/big/terraform.tfstate`), 'aws s3 cp 9 MiB up');
      assert.ok((await stored(`${BUCKET}/big/terraform.tfstate`)).body.equals(body), 'the parts were joined into one state');
      ok(await aws('s3', 'cp', `s3://${BUCKET}/big/terraform.tfstate`, back), 'aws s3 cp 9 MiB down');
      assert.ok(readFileSync(back).equals(body), 'the ranged parts were joined into the same bytes');
      const head = JSON.parse(ok(await aws('s3api', 'head-object', '--bucket', BUCKET, '--key', 'big/terraform.tfstate'), 'head-object').stdout) as { ContentLength: number; VersionId: string };
      assert.equal(head.ContentLength, body.length);
      assert.equal(head.VersionId, '1');
    });

    test('aws s3 ls and ls --recursive show keys with env: and spaces as they are', async () => {
      const file = join(dir, 'ws.tfstate');
      writeFileSync(file, stateBody(1, randomUUID()));
      ok(await aws('s3', 'cp', file, `s3://${BUCKET}/env:/dev/my app/terraform.tfstate`), 'cp to a key with a space');
      ok(await aws('s3', 'cp', file, `s3://${BUCKET}/env:/prod/my app/terraform.tfstate`), 'cp to a second workspace');
      const top = ok(await aws('s3', 'ls', `s3://${BUCKET}/env:/`), 'aws s3 ls env:/');
      assert.match(top.stdout, /PRE dev\//);
      assert.match(top.stdout, /PRE prod\//);
      const all = ok(await aws('s3', 'ls', '--recursive', `s3://${BUCKET}/`), 'aws s3 ls --recursive');
      assert.match(all.stdout, /\senv:\/dev\/my app\/terraform\.tfstate\n/);
      assert.match(all.stdout, /\senv:\/prod\/my app\/terraform\.tfstate\n/);
      assert.match(all.stdout, /\slesson-17\/terraform\.tfstate\n/);
    });

    test('aws s3api list-object-versions lists every version, newest first, with the latest marked', async () => {
      const key = 'versions/terraform.tfstate';
      const lineage = randomUUID();
      for (const serial of [1, 2, 3]) {
        const file = join(dir, `v${serial}.tfstate`);
        writeFileSync(file, stateBody(serial, lineage));
        ok(await aws('s3', 'cp', file, `s3://${BUCKET}/${key}`), `cp serial ${serial}`);
      }
      const out = JSON.parse(ok(await aws('s3api', 'list-object-versions', '--bucket', BUCKET, '--prefix', 'versions/'), 'list-object-versions').stdout) as {
        Versions: Array<{ Key: string; VersionId: string; IsLatest: boolean }>;
      };
      assert.deepEqual(out.Versions.map((v) => [v.Key, v.VersionId, v.IsLatest]), [
        [key, '3', true],
        [key, '2', false],
        [key, '1', false],
      ]);
      const old = join(dir, 'v1.back');
      ok(await aws('s3api', 'get-object', '--bucket', BUCKET, '--key', key, '--version-id', '1', old), 'get-object --version-id 1');
      assert.equal(readFileSync(old, 'utf8'), stateBody(1, lineage));
    });

    test('aws s3 rm removes the PR state: soft delete (GET /state 404, versions still in the API)', async () => {
      const key = 'lesson-17/pr-42/terraform.tfstate';
      const file = join(dir, 'pr.tfstate');
      writeFileSync(file, stateBody(1, randomUUID()));
      ok(await aws('s3', 'cp', file, `s3://${BUCKET}/${key}`), 'cp the PR state');
      assert.equal((await stored(`${BUCKET}/${key}`)).status, 200);
      const rm = ok(await aws('s3', 'rm', `s3://${BUCKET}/${key}`), 'aws s3 rm');
      assert.match(rm.stdout, /delete: s3:\/\/acme-terraform-state-123456789012\/lesson-17\/pr-42\/terraform\.tfstate/);
      assert.equal((await stored(`${BUCKET}/${key}`)).status, 404);
      const versions = await serverRequest(server, 'GET', `/api/v1/versions/${BUCKET}/${key}`);
      assert.equal(versions.status, 200);
      assert.equal((JSON.parse(versions.body.toString('utf8')) as { items: unknown[] }).items.length, 1);
      assert.equal((await stored(`${BUCKET}/lesson-17/terraform.tfstate`)).status, 200, 'the main state is untouched');
    });

    test('aws s3api head-object on a missing key exits non-zero with 404', async () => {
      const r = await aws('s3api', 'head-object', '--bucket', BUCKET, '--key', 'no/such/terraform.tfstate');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /404|Not Found/);
      const cp = await aws('s3', 'cp', `s3://${BUCKET}/no/such/terraform.tfstate`, '-');
      assert.notEqual(cp.code, 0);
    });

    test('a non-state file is refused (400) and nothing is stored', async () => {
      const file = join(dir, 'notes.txt');
      writeFileSync(file, 'not a state\n');
      const r = await aws('s3', 'cp', file, `s3://${BUCKET}/notes.txt`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /INVALID_STATE|400/);
      assert.equal((await stored(`${BUCKET}/notes.txt`)).status, 404);
    });
  });
}
