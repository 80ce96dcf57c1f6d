import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { lockBody, stateBody } from '../support/http.js';
import { s3Client, serverRequest, startAwsServer, type AwsServer } from '../support/aws.js';

/**
 * The s3 backend's own request sequences (reference §3.1, §3.2, §8), replayed with the AWS SDK as
 * Terraform (aws-sdk-go-v2: HeadObject then a 5 MiB ranged GetObject, PutObject with ChecksumAlgorithm
 * SHA256, multipart above 5 MiB) and OpenTofu (plain GetObject, PutObject with a precomputed
 * x-amz-checksum-sha256) send them, against the real server over HTTP and over HTTPS. Over HTTPS the
 * Terraform writes go as aws-chunked bodies with a trailing checksum (as the Go SDK sends them there);
 * every stored state is compared byte for byte through the http backend door.
 */

const BUCKET = 'acme-terraform-state-123456789012';
const PART = 5 * 1024 * 1024;

interface Sent {
  method: string;
  path: string;
  query: Record<string, unknown>;
  headers: Record<string, string>;
}

/** Records every request as it leaves the client (after checksums and signing). */
function recordWire(client: S3Client): Sent[] {
  const log: Sent[] = [];
  client.middlewareStack.add(
    (next) => async (args) => {
      const req = (args as { request: Sent }).request;
      log.push({ method: req.method, path: req.path, query: { ...req.query }, headers: { ...req.headers } });
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'statelockRecordWire' },
  );
  return log;
}

const errorName = (err: unknown) => (err as { name: string }).name;
const statusOf = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/** Terraform ≥ 1.6 reading state: HeadObject (404 → no state), then manager.Downloader's 5 MiB ranged GETs. */
async function terraformRead(s3: S3Client, key: string): Promise<Buffer | null> {
  let size: number;
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    size = head.ContentLength!;
  } catch (err) {
    if (errorName(err) === 'NotFound') return null;
    throw err;
  }
  const first = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: `bytes=0-${PART - 1}` }));
  // The downloader takes the total from Content-Range, after the '/'.
  const total = Number(/\/(\d+)$/.exec(first.ContentRange ?? '')?.[1] ?? first.ContentLength);
  assert.equal(total, size, 'HEAD Content-Length and the GET Content-Range total agree');
  const parts: Buffer[] = [Buffer.from(await first.Body!.transformToByteArray())];
  const rest: Array<Promise<Buffer>> = [];
  for (let start = PART; start < total; start += PART) {
    const end = Math.min(start + PART, total) - 1;
    rest.push(
      s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: `bytes=${start}-${end}` })).then(async (res) => {
        assert.equal(res.ContentRange, `bytes ${start}-${end}/${total}`);
        return Buffer.from(await res.Body!.transformToByteArray());
      }),
    );
  }
  parts.push(...(await Promise.all(rest)));
  return Buffer.concat(parts);
}

/** Terraform writing state: manager.Uploader's single PutObject (≤ 5 MiB), Content-Type JSON, ChecksumAlgorithm SHA256. */
function terraformWrite(s3: S3Client, key: string, body: Buffer, tls: boolean) {
  // Over HTTPS the Go SDK streams the body as aws-chunked with a trailing checksum; the JS SDK does the same for a stream.
  return s3.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: tls ? Readable.from([body]) : body, ContentLength: body.length, ContentType: 'application/json', ChecksumAlgorithm: 'SHA256' }),
  );
}

/** Terraform's use_lockfile acquire: PutObject `<key>.tflock` with If-None-Match: *. */
function lockFile(s3: S3Client, key: string, info: string) {
  return s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: info, IfNoneMatch: '*', ContentType: 'application/json', ChecksumAlgorithm: 'SHA256' }));
}

/** Terraform's use_lockfile release: GetObject the lock file, compare IDs, then an unconditional DeleteObject. */
async function unlockFile(s3: S3Client, key: string, id: string): Promise<void> {
  const held = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
  const info = JSON.parse(await held.Body!.transformToString()) as { ID: string };
  assert.equal(info.ID, id, `lock ID '${id}' does not match the existing lock ID '${info.ID}'`);
  await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
}

/** The workspaces Terraform derives from the bucket: ListObjectsV2 prefix `env:/`, paginated; a key counts only as exactly `env:/W/<key>`. */
async function workspaces(s3: S3Client, key: string, maxKeys = 1000): Promise<{ names: string[]; keys: string[]; pages: number }> {
  const names = ['default'];
  const keys: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'env:/', MaxKeys: maxKeys, ...(token ? { ContinuationToken: token } : {}) }));
    pages++;
    for (const o of page.Contents ?? []) {
      keys.push(o.Key!);
      const rest = o.Key!.slice('env:/'.length);
      const slash = rest.indexOf('/');
      if (slash > 0 && rest.slice(slash + 1) === key) names.push(rest.slice(0, slash));
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
    if (page.IsTruncated) assert.ok(token, 'a truncated page carries a NextContinuationToken');
  } while (token);
  return { names, keys, pages };
}

/** The bytes the http backend door serves for a key, with its Content-MD5. */
async function viaHttpDoor(server: AwsServer, stateKey: string) {
  const res = await serverRequest(server, 'GET', `/state/${stateKey.split('/').map(encodeURIComponent).join('/')}`);
  return { status: res.status, body: res.body, md5: res.headers['content-md5'] };
}

const md5b64 = (b: Buffer) => createHash('md5').update(b).digest('base64');

for (const tls of [false, true]) {
  describe(`s3 backend sequences over ${tls ? 'HTTPS (aws-chunked bodies, trailing checksums)' : 'HTTP'}`, () => {
    let server: AwsServer;
    let s3: S3Client;
    let wire: Sent[];
    before(async () => {
      server = await startAwsServer({ tls });
      s3 = s3Client(server);
      wire = recordWire(s3);
      await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    });
    after(async () => {
      s3?.destroy();
      await server?.stop();
    });

    test('terraform init on a fresh key: no workspaces but default, HeadObject 404 means no state', async () => {
      const key = 'init/terraform.tfstate';
      assert.deepEqual((await workspaces(s3, key)).names, ['default']);
      assert.equal(await terraformRead(s3, key), null);
      const list = wire.find((w) => w.method === 'GET' && w.query['list-type'] === '2');
      assert.equal(list?.query['prefix'], 'env:/');
    });

    test('terraform apply: lock file, ranged read, SHA-256 checked writes, unlock — the state is stored byte for byte', async () => {
      const key = 'lesson-17/terraform.tfstate';
      const id = randomUUID();
      const lineage = randomUUID();
      const acquired = await lockFile(s3, key, lockBody(id));
      assert.equal(acquired.ETag, `"${createHash('md5').update(lockBody(id)).digest('hex')}"`);
      assert.equal(await terraformRead(s3, key), null, 'no state yet');

      const first = Buffer.from(stateBody(1, lineage));
      const put1 = await terraformWrite(s3, key, first, tls);
      assert.equal(put1.VersionId, '1');
      assert.equal(put1.ETag, `"${createHash('md5').update(first).digest('hex')}"`);
      assert.equal(put1.ChecksumSHA256, createHash('sha256').update(first).digest('base64'), 'the verified checksum is echoed');
      const second = Buffer.from(stateBody(2, lineage, { outputs: { greeting: { value: 'hello', type: 'string' } } }));
      assert.equal((await terraformWrite(s3, key, second, tls)).VersionId, '2');
      // Terraform re-uploads an unchanged state at the end of an apply: success, no new version.
      assert.equal((await terraformWrite(s3, key, second, tls)).VersionId, '2');

      const read = await terraformRead(s3, key);
      assert.ok(read?.equals(second), 'the ranged read returns the exact bytes');
      await unlockFile(s3, key, id);

      const stored = await viaHttpDoor(server, `${BUCKET}/${key}`);
      assert.equal(stored.status, 200);
      assert.ok(stored.body.equals(second), 'GET /state/<bucket>/<key> serves the bytes Terraform sent');
      assert.equal(stored.md5, md5b64(second));
      assert.equal((await serverRequest(server, 'GET', `/api/v1/locks/${BUCKET}/${key}`)).status, 404, 'the lock is free');

      const puts = wire.filter((w) => w.method === 'PUT' && w.path.endsWith('/lesson-17/terraform.tfstate'));
      assert.ok(puts.length >= 3);
      for (const p of puts) {
        assert.equal(p.headers['x-amz-sdk-checksum-algorithm'], 'SHA256');
        if (tls) {
          assert.match(p.headers['content-encoding'] ?? '', /aws-chunked/, 'HTTPS writes are aws-chunked');
          assert.equal(p.headers['x-amz-trailer'], 'x-amz-checksum-sha256');
        } else {
          assert.ok(p.headers['x-amz-checksum-sha256'], 'HTTP writes carry the checksum as a header');
        }
      }
    });

    test('opentofu apply: plain GetObject and a PutObject with a precomputed x-amz-checksum-sha256', async () => {
      const key = 'tofu/terraform.tfstate';
      const id = randomUUID();
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(id), IfNoneMatch: '*', ContentType: 'application/json' }));
      await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })), (err) => errorName(err) === 'NoSuchKey' && statusOf(err) === 404);
      const body = Buffer.from(stateBody(1, randomUUID()));
      const sum = createHash('sha256').update(body).digest('base64');
      const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentLength: body.length, ContentType: 'application/json', ChecksumSHA256: sum }));
      assert.equal(put.ChecksumSHA256, sum);
      const sent = wire.filter((w) => w.method === 'PUT' && w.path.endsWith('/tofu/terraform.tfstate')).pop()!;
      assert.equal(sent.headers['x-amz-checksum-sha256'], sum);
      assert.equal(sent.headers['content-encoding'], undefined, 'a precomputed checksum means a raw body, also over HTTPS');

      const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
      assert.equal(got.ChecksumSHA256, sum, 'x-amz-checksum-mode: ENABLED gets the SHA-256 back (and the SDK validated it)');
      assert.equal(got.VersionId, '1');
      await unlockFile(s3, key, id);
      assert.ok((await viaHttpDoor(server, `${BUCKET}/${key}`)).body.equals(body));
    });

    test('use_lockfile: another ID gets 412 PreconditionFailed and reads the holder back; the holder re-sending succeeds; DeleteObject frees it', async () => {
      const key = 'locking/terraform.tfstate';
      const holder = randomUUID();
      const other = randomUUID();
      await lockFile(s3, key, lockBody(holder, 'OperationTypeApply', 'alice@build-07'));

      for (const ifNoneMatch of [true, false]) {
        await assert.rejects(
          s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(other, 'OperationTypePlan', 'bob@laptop'), ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}) })),
          (err) => errorName(err) === 'PreconditionFailed' && statusOf(err) === 412 && /alice@build-07/.test((err as Error).message),
        );
      }
      // Any PutObject error makes Terraform read the lock file back to show the holder.
      const back = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
      assert.equal(back.ContentType, 'application/json');
      assert.equal(await back.Body!.transformToString(), lockBody(holder, 'OperationTypeApply', 'alice@build-07'), 'the holder info, verbatim');

      // The holder's own retry (the request whose answer was lost) succeeds.
      await lockFile(s3, key, lockBody(holder, 'OperationTypeApply', 'alice@build-07'));
      await unlockFile(s3, key, holder);
      await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` })), (err) => errorName(err) === 'NoSuchKey');
      await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` })), (err) => errorName(err) === 'NotFound' && statusOf(err) === 404);
      // Releasing twice is harmless; the other client can lock now.
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
      await lockFile(s3, key, lockBody(other));
      await unlockFile(s3, key, other);
    });

    test('a 20 MiB state goes up as a multipart upload (5 MiB parts, 5 at a time) and comes back through 5 MiB ranged GETs', async () => {
      const key = 'big/terraform.tfstate';
      const id = randomUUID();
      await lockFile(s3, key, lockBody(id));
      const body = Buffer.from(stateBody(7, randomUUID(), { outputs: { blob: { value: 'x'.repeat(20 * 1024 * 1024), type: 'string' } } }));
      const upload = new Upload({ client: s3, params: { Bucket: BUCKET, Key: key, Body: body, ContentType: 'application/json', ChecksumAlgorithm: 'SHA256' }, partSize: PART, queueSize: 5 });
      const done = await upload.done();
      const parts = Math.ceil(body.length / PART);
      const partMd5s = Array.from({ length: parts }, (_, i) => createHash('md5').update(body.subarray(i * PART, (i + 1) * PART)).digest());
      assert.equal(done.ETag, `"${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${parts}"`);
      assert.equal(done.VersionId, '1');
      assert.equal(wire.filter((w) => w.method === 'PUT' && w.query['uploadId'] !== undefined).length, parts, 'one UploadPart per 5 MiB');

      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      assert.equal(head.ContentLength, body.length, 'HEAD reports the exact size Terraform pre-sizes its buffer with');
      const read = await terraformRead(s3, key);
      assert.ok(read?.equals(body), 'the ranged download reassembles the exact bytes');
      await unlockFile(s3, key, id);
      const stored = await viaHttpDoor(server, `${BUCKET}/${key}`);
      assert.ok(stored.body.equals(body), 'one version holding the concatenated parts');
      const versions = JSON.parse((await serverRequest(server, 'GET', `/api/v1/versions/${BUCKET}/${key}`)).body.toString('utf8')) as { items: unknown[] };
      assert.equal(versions.items.length, 1);
    });

    test('encrypt = true: the SSE headers (AES256, aws:kms + key ID, the SSE-C trio) are accepted and echoed; an unknown algorithm is InvalidArgument', async () => {
      const lineage = randomUUID();
      const withAes = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sse/aes.tfstate', Body: stateBody(1, lineage), ServerSideEncryption: 'AES256', ChecksumAlgorithm: 'SHA256' }));
      assert.equal(withAes.ServerSideEncryption, 'AES256');
      const kms = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sse/kms.tfstate', Body: stateBody(1, lineage), ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'alias/terraform' }));
      assert.equal(kms.ServerSideEncryption, 'aws:kms');
      assert.equal(kms.SSEKMSKeyId, 'alias/terraform');
      const customerKey = Buffer.alloc(32, 7);
      const ssec = { SSECustomerAlgorithm: 'AES256', SSECustomerKey: customerKey.toString('base64'), SSECustomerKeyMD5: createHash('md5').update(customerKey).digest('base64') };
      const body = Buffer.from(stateBody(1, lineage));
      const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sse/ssec.tfstate', Body: body, ...ssec }));
      assert.equal(put.SSECustomerAlgorithm, 'AES256');
      // Terraform sends the SSE-C headers on reads too; the read-back after a failed lock sends none.
      const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sse/ssec.tfstate', ...ssec }));
      assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
      assert.ok((await viaHttpDoor(server, `${BUCKET}/sse/ssec.tfstate`)).body.equals(body), 'stored as sent (statelock does not apply S3 encryption)');
      await assert.rejects(
        s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sse/bad.tfstate', Body: stateBody(1, lineage), ServerSideEncryption: 'rot13' as 'AES256' })),
        (err) => errorName(err) === 'InvalidArgument' && statusOf(err) === 400,
      );
      assert.equal((await viaHttpDoor(server, `${BUCKET}/sse/bad.tfstate`)).status, 404);
    });

    test('workspaces: ListObjectsV2 env:/ finds each workspace and ignores the held lock file', async () => {
      const key = 'app/terraform.tfstate';
      await terraformWrite(s3, key, Buffer.from(stateBody(1, randomUUID())), tls);
      for (const ws of ['dev', 'staging', 'prod']) {
        const wsKey = `env:/${ws}/${key}`;
        // `workspace new`: lock (operation init), read (none), write an empty state, unlock.
        const id = randomUUID();
        await lockFile(s3, wsKey, lockBody(id, 'init'));
        assert.equal(await terraformRead(s3, wsKey), null);
        await terraformWrite(s3, wsKey, Buffer.from(stateBody(0, randomUUID())), tls);
        await unlockFile(s3, wsKey, id);
      }
      await lockFile(s3, `env:/dev/${key}`, lockBody(randomUUID()));
      const all = await workspaces(s3, key);
      assert.deepEqual(all.names.sort(), ['default', 'dev', 'prod', 'staging']);
      assert.ok(all.keys.includes(`env:/dev/${key}.tflock`), 'the held lock file is listed (and does not count as a workspace)');
      const paged = await workspaces(s3, key, 2);
      assert.deepEqual(paged.keys, all.keys, 'continuation tokens walk the same keys');
      assert.equal(paged.pages, 2);
      const env = wire.filter((w) => w.query['list-type'] === '2' && w.query['prefix'] === 'env:/');
      assert.ok(env.length > 0);
    });
  });
}

describe('workspace listing over more than 1000 keys', () => {
  let server: AwsServer;
  let s3: S3Client;
  const bucket = 'many-workspaces';
  before(async () => {
    server = await startAwsServer();
    s3 = s3Client(server);
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  test('states written through the http door make an implicit bucket; the Go paginator walks all 1005 workspaces', async () => {
    const n = 1005;
    const names = Array.from({ length: n }, (_, i) => `ws-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < n; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map(async (ws) => {
          const res = await serverRequest(server, 'POST', `/state/${bucket}/env:/${ws}/app.tfstate`, stateBody(1, ws));
          assert.equal(res.status, 200, res.body.toString('utf8'));
        }),
      );
    }
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'env:/', MaxKeys: 1000, ...(token ? { ContinuationToken: token } : {}) }));
      pages++;
      assert.equal(page.KeyCount, page.Contents?.length ?? 0);
      for (const o of page.Contents ?? []) seen.push(o.Key!.split('/')[1]!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    assert.equal(pages, 2);
    assert.deepEqual(seen, names);
  });
});
