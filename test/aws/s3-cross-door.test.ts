import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { lockBody, stateBody } from '../support/http.js';
import { REGION, s3Client, serverRequest, startAwsServer, TEST_KEY, type AwsServer, type PlainResponse } from '../support/aws.js';

/**
 * One model behind every door: the object s3://<bucket>/<key> IS the state <bucket>/<key> of the http
 * backend door and the API, its S3 versions ARE statelock's versions, and <key>.tflock IS the lock.
 */

const BUCKET = 'acme-terraform-state-123456789012';

const errorName = (err: unknown) => (err as { name: string }).name;
const statusOf = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const md5 = (b: Buffer | string, enc: 'hex' | 'base64') => createHash('md5').update(b).digest(enc);

/** A path for the http door and the API: each segment percent-encoded. */
const keyPath = (stateKey: string) => stateKey.split('/').map(encodeURIComponent).join('/');

/** An S3 request signed with the real signer and sent as given (any Host header, raw query). */
async function signedS3(server: AwsServer, method: string, path: string, query: Record<string, string>, opts: { host?: string; body?: Buffer } = {}): Promise<PlainResponse> {
  const url = new URL(server.url);
  const body = opts.body ?? Buffer.alloc(0);
  const signer = new SignatureV4({ service: 's3', region: REGION, credentials: TEST_KEY, sha256: Sha256, uriEscapePath: false });
  const headers = { host: opts.host ?? url.host, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') };
  const signed = await signer.sign({ method, protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path, query, headers, body });
  const qs = Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
  return serverRequest(server, method, qs ? `${path}?${qs}` : path, body.length ? body : undefined, signed.headers as Record<string, string>);
}

describe('S3 door and the other doors share one model', () => {
  let server: AwsServer;
  let s3: S3Client;
  let n = 0;
  const freshKey = () => `cross/${++n}/terraform.tfstate`;
  const httpGet = (stateKey: string) => serverRequest(server, 'GET', `/state/${keyPath(stateKey)}`);
  const api = async <T>(path: string) => {
    const res = await serverRequest(server, 'GET', `/api/v1/${path}`);
    return { status: res.status, json: res.status === 200 ? (JSON.parse(res.body.toString('utf8')) as T) : null };
  };
  const versionsOf = async (stateKey: string) => (await api<{ items: Array<{ seq: number; serial: number }> }>(`versions/${keyPath(stateKey)}`)).json?.items ?? [];
  const bodyOf = async (res: { Body?: { transformToByteArray(): Promise<Uint8Array> } }) => Buffer.from(await res.Body!.transformToByteArray());

  before(async () => {
    server = await startAwsServer();
    s3 = s3Client(server);
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  test('written over S3, read over http: the same bytes, and the S3 ETag is the http Content-MD5 in hex', async () => {
    const key = freshKey();
    const body = Buffer.from(stateBody(3, randomUUID()));
    const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentType: 'application/json' }));
    const res = await httpGet(`${BUCKET}/${key}`);
    assert.equal(res.status, 200);
    assert.ok(res.body.equals(body));
    assert.equal(res.headers['content-md5'], md5(body, 'base64'));
    assert.equal(put.ETag, `"${md5(body, 'hex')}"`);
  });

  test('written over http, read over S3: the object is that state and its first version is VersionId 1', async () => {
    const key = freshKey();
    const body = stateBody(1, randomUUID());
    assert.equal((await serverRequest(server, 'POST', `/state/${BUCKET}/${key}`, body)).status, 200);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal((await bodyOf(got)).toString('utf8'), body);
    assert.equal(got.VersionId, '1');
    assert.equal(got.ETag, `"${md5(body, 'hex')}"`);
    assert.equal(got.ContentType, 'application/json');
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(head.ContentLength, Buffer.byteLength(body));
    assert.ok(head.LastModified instanceof Date && !Number.isNaN(head.LastModified.getTime()));
  });

  test('S3 writes obey serial and lineage: a lower serial or another lineage is 409 and nothing is stored', async () => {
    const key = freshKey();
    const lineage = randomUUID();
    const current = Buffer.from(stateBody(5, lineage));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: current }));
    const refusals: Array<[Buffer, string]> = [
      [Buffer.from(stateBody(4, lineage)), 'SERIAL_LOWER'],
      [Buffer.from(stateBody(6, randomUUID())), 'LINEAGE_MISMATCH'],
      [Buffer.from(stateBody(5, lineage, { outputs: { changed: { value: 1, type: 'number' } } })), 'SERIAL_SAME_DIFFERENT_CONTENT'],
    ];
    for (const [body, code] of refusals) {
      await assert.rejects(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body })), (err) => errorName(err) === code && statusOf(err) === 409);
    }
    assert.ok((await httpGet(`${BUCKET}/${key}`)).body.equals(current), 'the current state is untouched');
    assert.deepEqual((await versionsOf(`${BUCKET}/${key}`)).map((v) => v.serial), [5], 'no version was added');
  });

  test('a lock taken with a .tflock object makes an http LOCK 423 with the holder; after DeleteObject http can lock, and S3 then gets 412', async () => {
    const key = freshKey();
    const stateKey = `${BUCKET}/${key}`;
    const s3Holder = randomUUID();
    const httpHolder = randomUUID();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(s3Holder), IfNoneMatch: '*' }));
    const refused = await serverRequest(server, 'LOCK', `/state/${stateKey}`, lockBody(httpHolder));
    assert.equal(refused.status, 423);
    assert.equal((JSON.parse(refused.body.toString('utf8')) as { ID: string }).ID, s3Holder, 'the http client is shown the S3 holder');
    const writeUnderLock = await serverRequest(server, 'POST', `/state/${stateKey}?ID=${httpHolder}`, stateBody(1, randomUUID()));
    assert.equal(writeUnderLock.status, 423, 'an http write with another lock ID is refused while S3 holds the lock');

    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
    assert.equal((await api(`locks/${stateKey}`)).status, 404);
    assert.equal((await serverRequest(server, 'LOCK', `/state/${stateKey}`, lockBody(httpHolder))).status, 200);
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(s3Holder), IfNoneMatch: '*' })),
      (err) => errorName(err) === 'PreconditionFailed' && statusOf(err) === 412,
    );
    const shown = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
    assert.equal((await bodyOf(shown)).toString('utf8'), lockBody(httpHolder), 'the lock file is the http holder\'s info');
    assert.equal((await serverRequest(server, 'UNLOCK', `/state/${stateKey}`, lockBody(httpHolder))).status, 200);
  });

  test('double locking: one ID through .tflock and http LOCK; each door releases only its own hold', async () => {
    const key = freshKey();
    const stateKey = `${BUCKET}/${key}`;
    const id = randomUUID();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(id), IfNoneMatch: '*' }));
    assert.equal((await serverRequest(server, 'LOCK', `/state/${stateKey}`, lockBody(id))).status, 200, 'the same ID through the second door');
    assert.deepEqual((await api<{ holds: string[] }>(`locks/${stateKey}`)).json?.holds, ['s3', 'http']);

    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));
    const still = await api<{ holds: string[]; info: { ID: string } }>(`locks/${stateKey}`);
    assert.equal(still.status, 200, 'the http hold keeps the lock');
    assert.deepEqual(still.json?.holds, ['http']);
    assert.equal(still.json?.info.ID, id);
    assert.equal((await serverRequest(server, 'LOCK', `/state/${stateKey}`, lockBody(randomUUID()))).status, 423);

    assert.equal((await serverRequest(server, 'UNLOCK', `/state/${stateKey}`, lockBody(id))).status, 200);
    assert.equal((await api(`locks/${stateKey}`)).status, 404);
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` })), (err) => errorName(err) === 'NoSuchKey');
  });

  test('versions: ListObjectVersions lists the seqs newest first (paginated), GetObject?versionId returns the old bytes', async () => {
    const key = freshKey();
    const lineage = randomUUID();
    const bodies = [1, 2, 3].map((serial) => Buffer.from(stateBody(serial, lineage)));
    for (const [i, body] of bodies.entries()) {
      assert.equal((await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }))).VersionId, String(i + 1));
    }
    const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key }));
    assert.deepEqual(listed.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest, v.Size]), [
      [key, '3', true, bodies[2]!.length],
      [key, '2', false, bodies[1]!.length],
      [key, '1', false, bodies[0]!.length],
    ]);
    assert.deepEqual(listed.Versions?.map((v) => v.ETag), bodies.map((b) => `"${md5(b, 'hex')}"`).reverse());

    const first = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key, MaxKeys: 2 }));
    assert.equal(first.IsTruncated, true);
    assert.equal(first.NextKeyMarker, key);
    assert.equal(first.NextVersionIdMarker, '2');
    const second = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key, MaxKeys: 2, KeyMarker: first.NextKeyMarker, VersionIdMarker: first.NextVersionIdMarker }));
    assert.equal(second.IsTruncated, false);
    assert.deepEqual(second.Versions?.map((v) => v.VersionId), ['1']);

    const old = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, VersionId: '1' }));
    assert.ok((await bodyOf(old)).equals(bodies[0]!));
    assert.equal(old.VersionId, '1');
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key, VersionId: '2' }))).ContentLength, bodies[1]!.length);
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, VersionId: '9' })), (err) => errorName(err) === 'NoSuchVersion' && statusOf(err) === 404);
    assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: BUCKET }))).Status, 'Enabled');
  });

  test('DeleteObject soft-deletes: gone from S3, GET /state and listings; the versions stay in the API and in S3 version reads', async () => {
    const key = freshKey();
    const stateKey = `${BUCKET}/${key}`;
    const lineage = randomUUID();
    const bodies = [1, 2].map((serial) => Buffer.from(stateBody(serial, lineage)));
    for (const body of bodies) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    // Even under a lock: S3 has no way to refuse a DeleteObject, and workspace delete sends it under its own lock.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(randomUUID()) }));
    const deleted = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(deleted.$metadata.httpStatusCode, 204);
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock` }));

    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })), (err) => errorName(err) === 'NoSuchKey');
    assert.equal((await httpGet(stateKey)).status, 404);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: key }));
    assert.equal(listed.KeyCount, 0);
    assert.deepEqual((await versionsOf(stateKey)).map((v) => v.seq), [1, 2], 'the API still lists every version');
    const old = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, VersionId: '2' }));
    assert.ok((await bodyOf(old)).equals(bodies[1]!));
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key }));
    assert.deepEqual(versions.Versions?.map((v) => [v.VersionId, v.IsLatest]), [['2', false], ['1', false]], 'a deleted state named exactly by the prefix still lists its versions');

    const again = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(again.$metadata.httpStatusCode, 204, 'deleting what is not there is 204 too');
    const next = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.from(stateBody(1, randomUUID())) }));
    assert.equal(next.VersionId, '3', 'a new state after the delete continues the version numbers');
  });

  test('buckets: implied by http keys, listed, HeadBucket region; DeleteBucket refused while states live; CreateBucket keeps its LocationConstraint', async () => {
    assert.equal((await serverRequest(server, 'POST', '/state/implicit-bucket/app/terraform.tfstate', stateBody(1, 'x'))).status, 200);
    assert.equal((await serverRequest(server, 'POST', '/state/Not_A_Bucket/app/terraform.tfstate', stateBody(1, 'x'))).status, 200);
    const head = await s3.send(new HeadBucketCommand({ Bucket: 'implicit-bucket' }));
    assert.equal(head.BucketRegion, REGION);
    const names = (await s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name);
    assert.ok(names?.includes('implicit-bucket') && names.includes(BUCKET), String(names));
    assert.ok(!names?.includes('Not_A_Bucket'), 'a first segment that cannot be a bucket name is no bucket');
    await assert.rejects(s3.send(new CreateBucketCommand({ Bucket: 'implicit-bucket' })), (err) => errorName(err) === 'BucketAlreadyOwnedByYou' && statusOf(err) === 409);
    await assert.rejects(s3.send(new DeleteBucketCommand({ Bucket: 'implicit-bucket' })), (err) => errorName(err) === 'BucketNotEmpty' && statusOf(err) === 409);

    await s3.send(new CreateBucketCommand({ Bucket: 'eu-bucket', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }));
    assert.equal((await s3.send(new HeadBucketCommand({ Bucket: 'eu-bucket' }))).BucketRegion, 'eu-west-1');
    assert.equal((await s3.send(new GetBucketLocationCommand({ Bucket: 'eu-bucket' }))).LocationConstraint, 'eu-west-1');
    await s3.send(new DeleteBucketCommand({ Bucket: 'eu-bucket' }));
    await assert.rejects(s3.send(new HeadBucketCommand({ Bucket: 'eu-bucket' })), (err) => errorName(err) === 'NotFound' && statusOf(err) === 404);

    await assert.rejects(s3.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' })), (err) => errorName(err) === 'NoSuchBucket');
    await assert.rejects(s3.send(new PutObjectCommand({ Bucket: 'no-such-bucket', Key: 'k.tfstate', Body: stateBody(1, 'x') })), (err) => errorName(err) === 'NoSuchBucket');
    assert.equal((await httpGet('no-such-bucket/k.tfstate')).status, 404, 'nothing stored');
  });

  test('virtual-host addressing: Host <bucket>.localhost reaches the same state as path style', async () => {
    const key = freshKey();
    const body = Buffer.from(stateBody(1, randomUUID()));
    const port = new URL(server.url).port;
    const put = await signedS3(server, 'PUT', `/${key}`, {}, { host: `${BUCKET}.localhost:${port}`, body });
    assert.equal(put.status, 200, put.body.toString('utf8'));
    assert.ok((await httpGet(`${BUCKET}/${key}`)).body.equals(body));
    const got = await signedS3(server, 'GET', `/${key}`, {}, { host: `${BUCKET}.localhost:${port}` });
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(body));
    const listed = await signedS3(server, 'GET', '/', { 'list-type': '2', prefix: key }, { host: `${BUCKET}.localhost:${port}` });
    assert.match(listed.body.toString('utf8'), new RegExp(`<Key>${key}</Key>`));
  });

  test('DeleteObjects (aws s3 rm --recursive): each state soft-deleted, each lock file released, bad keys reported per key', async () => {
    const keys = [freshKey(), freshKey()];
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: stateBody(1, randomUUID()) }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${keys[0]}.tflock`, Body: lockBody(randomUUID()) }));
    const res = await s3.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [...keys, `${keys[0]}.tflock`, 'a//b'].map((Key) => ({ Key })) } }),
    );
    assert.deepEqual(res.Deleted?.map((d) => d.Key).sort(), [...keys, `${keys[0]}.tflock`].sort());
    assert.deepEqual(res.Errors?.map((e) => [e.Key, e.Code]), [['a//b', 'INVALID_KEY']]);
    for (const key of keys) {
      assert.equal((await httpGet(`${BUCKET}/${key}`)).status, 404);
      assert.equal((await versionsOf(`${BUCKET}/${key}`)).length, 1, 'soft delete: the version stays');
    }
    assert.equal((await api(`locks/${BUCKET}/${keys[0]}`)).status, 404);
  });

  test('listings: delimiter and common prefixes; encoding-type=url percent-encodes keys only when asked', async () => {
    const keys = ['odd/a b+c.tfstate', 'odd/env:/dev/terraform.tfstate', 'odd/env:/prod/terraform.tfstate'];
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: stateBody(1, 'x') }));
    const grouped = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'odd/', Delimiter: '/' }));
    assert.deepEqual(grouped.Contents?.map((c) => c.Key), ['odd/a b+c.tfstate']);
    assert.deepEqual(grouped.CommonPrefixes?.map((p) => p.Prefix), ['odd/env:/']);
    assert.equal(grouped.KeyCount, 2);

    const encoded = (await signedS3(server, 'GET', `/${BUCKET}`, { 'list-type': '2', prefix: 'odd/', 'encoding-type': 'url' })).body.toString('utf8');
    assert.match(encoded, /<EncodingType>url<\/EncodingType>/);
    assert.match(encoded, /<Key>odd\/a%20b%2Bc\.tfstate<\/Key>/);
    assert.match(encoded, /<Key>odd\/env%3A\/dev\/terraform\.tfstate<\/Key>/);
    const plain = (await signedS3(server, 'GET', `/${BUCKET}`, { 'list-type': '2', prefix: 'odd/' })).body.toString('utf8');
    assert.doesNotMatch(plain, /EncodingType/);
    assert.match(plain, /<Key>odd\/a b\+c\.tfstate<\/Key>/);

    const v1 = (await signedS3(server, 'GET', `/${BUCKET}`, { prefix: 'odd/', 'max-keys': '1' })).body.toString('utf8');
    assert.match(v1, /<IsTruncated>true<\/IsTruncated>/);
    assert.match(v1, /<NextMarker>odd\/a b\+c\.tfstate<\/NextMarker>/);
    const v1next = (await signedS3(server, 'GET', `/${BUCKET}`, { prefix: 'odd/', marker: 'odd/a b+c.tfstate' })).body.toString('utf8');
    assert.deepEqual([...v1next.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]), keys.slice(1));
  });
});
