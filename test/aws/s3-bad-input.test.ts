import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { lockBody, stateBody } from '../support/http.js';
import { REGION, s3Client, serverRequest, startAwsServer, TEST_KEY, type AwsServer, type PlainResponse } from '../support/aws.js';

/**
 * What the S3 door refuses, and that a refusal stores nothing: signatures, payload hashes and body
 * checksums tampered with after signing, malformed multipart completions, bodies that are not states,
 * unsatisfiable ranges, bad names. Requests that the SDK would never send are signed with the real
 * signer and altered before they go out.
 */

const BUCKET = 'acme-terraform-state-123456789012';

const errorName = (err: unknown) => (err as { name: string }).name;
const statusOf = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const sha256hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const codeOf = (res: PlainResponse) => /<Code>([^<]*)<\/Code>/.exec(res.body.toString('utf8'))?.[1];

interface RawS3 {
  method: string;
  /** The path as it goes on the request line (already percent-encoded). */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** What is signed; `send` defaults to it. */
  body?: Buffer;
  /** The body actually sent (tampering after signing). */
  send?: Buffer;
  /** x-amz-content-sha256 as declared (signed); default the hex SHA-256 of `body`. */
  payloadHash?: string;
}

/** Signs with @smithy/signature-v4, then sends with node:http(s) — whatever the test changed after signing. */
async function rawS3(server: AwsServer, req: RawS3): Promise<PlainResponse> {
  const url = new URL(server.url);
  const body = req.body ?? Buffer.alloc(0);
  const query = req.query ?? {};
  const signer = new SignatureV4({ service: 's3', region: REGION, credentials: TEST_KEY, sha256: Sha256, uriEscapePath: false });
  const headers = { host: url.host, 'x-amz-content-sha256': req.payloadHash ?? sha256hex(body), ...(req.headers ?? {}) };
  const signed = await signer.sign({ method: req.method, protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: req.path, query, headers, body });
  const qs = Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
  const sent = req.send ?? body;
  return serverRequest(server, req.method, qs ? `${req.path}?${qs}` : req.path, sent.length ? sent : undefined, signed.headers as Record<string, string>);
}

describe('S3 door: bad input is refused and nothing is stored', () => {
  let server: AwsServer;
  let s3: S3Client;
  let n = 0;
  const freshKey = () => `bad/${++n}/terraform.tfstate`;
  const stored = (key: string) => serverRequest(server, 'GET', `/state/${BUCKET}/${key}`);
  const versionCount = async (key: string) => {
    const res = await serverRequest(server, 'GET', `/api/v1/versions/${BUCKET}/${key}`);
    return res.status === 200 ? (JSON.parse(res.body.toString('utf8')) as { items: unknown[] }).items.length : 0;
  };
  const assertNothingStored = async (key: string) => {
    assert.equal((await stored(key)).status, 404, `nothing is stored at ${key}`);
    assert.equal(await versionCount(key), 0, `no version of ${key}`);
  };

  before(async () => {
    server = await startAwsServer();
    s3 = s3Client(server);
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  test('a wrong secret key: 403 SignatureDoesNotMatch', async () => {
    const key = freshKey();
    const wrong = s3Client(server, { credentials: { accessKeyId: TEST_KEY.accessKeyId, secretAccessKey: 'not-the-secret' } });
    await assert.rejects(wrong.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: stateBody(1, 'x') })), (err) => errorName(err) === 'SignatureDoesNotMatch' && statusOf(err) === 403);
    wrong.destroy();
    await assertNothingStored(key);
  });

  test('a body that does not match the signed x-amz-content-sha256: 400 XAmzContentSHA256Mismatch', async () => {
    const key = freshKey();
    const signedBody = Buffer.from(stateBody(1, 'x'));
    const res = await rawS3(server, { method: 'PUT', path: `/${BUCKET}/${key}`, body: signedBody, send: Buffer.from(stateBody(2, 'x')) });
    assert.equal(res.status, 400);
    assert.equal(codeOf(res), 'XAmzContentSHA256Mismatch');
    await assertNothingStored(key);
  });

  test('a body altered after signing (UNSIGNED-PAYLOAD) is caught by Content-MD5: 400 BadDigest', async () => {
    const key = freshKey();
    const body = Buffer.from(stateBody(1, 'x'));
    const res = await rawS3(server, {
      method: 'PUT',
      path: `/${BUCKET}/${key}`,
      payloadHash: 'UNSIGNED-PAYLOAD',
      headers: { 'content-md5': createHash('md5').update(stateBody(2, 'x')).digest('base64') },
      body,
    });
    assert.equal(res.status, 400);
    assert.equal(codeOf(res), 'BadDigest');
    await assertNothingStored(key);
  });

  test('a wrong x-amz-checksum-sha256 header: 400 BadDigest', async () => {
    const key = freshKey();
    const body = Buffer.from(stateBody(1, 'x'));
    const res = await rawS3(server, {
      method: 'PUT',
      path: `/${BUCKET}/${key}`,
      headers: { 'x-amz-sdk-checksum-algorithm': 'SHA256', 'x-amz-checksum-sha256': createHash('sha256').update('something else').digest('base64') },
      body,
    });
    assert.equal(res.status, 400);
    assert.equal(codeOf(res), 'BadDigest');
    await assertNothingStored(key);
  });

  test('a wrong trailing checksum in an aws-chunked body: 400 BadDigest', async () => {
    const key = freshKey();
    const data = Buffer.from(stateBody(1, 'x'));
    const wrongSum = createHash('sha256').update('tampered').digest('base64');
    const chunked = Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from(`\r\n0\r\nx-amz-checksum-sha256:${wrongSum}\r\n\r\n`)]);
    const res = await rawS3(server, {
      method: 'PUT',
      path: `/${BUCKET}/${key}`,
      payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      headers: {
        'content-encoding': 'aws-chunked',
        'x-amz-trailer': 'x-amz-checksum-sha256',
        'x-amz-decoded-content-length': String(data.length),
        'x-amz-sdk-checksum-algorithm': 'SHA256',
      },
      body: chunked,
    });
    assert.equal(res.status, 400);
    assert.equal(codeOf(res), 'BadDigest');
    await assertNothingStored(key);
  });

  test('multipart: malformed CompleteMultipartUpload XML is 400 MalformedXML; wrong order, ETags, sizes and uploads are refused; nothing is stored', async () => {
    const key = freshKey();
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ContentType: 'application/json' }));
    assert.ok(UploadId);
    const body = Buffer.from(stateBody(1, 'x'));
    const first = body.subarray(0, 20);
    const second = body.subarray(20);
    const p1 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: first }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: second }));
    assert.equal(p1.ETag, `"${createHash('md5').update(first).digest('hex')}"`);
    const listed = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId }));
    assert.deepEqual(listed.Parts?.map((p) => [p.PartNumber, p.ETag, p.Size]), [[1, p1.ETag, first.length], [2, p2.ETag, second.length]]);

    for (const xml of [
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>',
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Prt></CompleteMultipartUpload>',
      '<Complete><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Complete>',
      '<CompleteMultipartUpload></CompleteMultipartUpload>',
      'not xml at all',
      '<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>',
      '<!DOCTYPE x [<!ENTITY e "boom">]><CompleteMultipartUpload/>',
    ]) {
      const res = await rawS3(server, { method: 'POST', path: `/${BUCKET}/${key}`, query: { uploadId: UploadId }, body: Buffer.from(xml) });
      assert.equal(res.status, 400, xml);
      assert.equal(codeOf(res), 'MalformedXML', xml);
    }
    const complete = (parts: Array<{ PartNumber: number; ETag: string }>, uploadId = UploadId) =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    await assert.rejects(complete([{ PartNumber: 2, ETag: p2.ETag! }, { PartNumber: 1, ETag: p1.ETag! }]), (err) => errorName(err) === 'InvalidPartOrder');
    await assert.rejects(complete([{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }, { PartNumber: 2, ETag: p2.ETag! }]), (err) => errorName(err) === 'InvalidPart');
    await assert.rejects(complete([{ PartNumber: 1, ETag: p1.ETag! }, { PartNumber: 3, ETag: p2.ETag! }]), (err) => errorName(err) === 'InvalidPart');
    await assert.rejects(complete([{ PartNumber: 1, ETag: p1.ETag! }, { PartNumber: 2, ETag: p2.ETag! }]), (err) => errorName(err) === 'EntityTooSmall' && statusOf(err) === 400);
    await assert.rejects(complete([{ PartNumber: 1, ETag: p1.ETag! }], 'no-such-upload'), (err) => errorName(err) === 'NoSuchUpload' && statusOf(err) === 404);
    await assertNothingStored(key);

    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId }));
    await assert.rejects(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: first })), (err) => errorName(err) === 'NoSuchUpload');
    await assert.rejects(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: 'x', PartNumber: 10001, Body: first })), (err) => errorName(err) === 'InvalidArgument');
    await assertNothingStored(key);
  });

  test('a single-part upload whose body is not a state is refused at completion', async () => {
    const key = freshKey();
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: 'not json' }));
    await assert.rejects(
      s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag! }] } })),
      (err) => errorName(err) === 'INVALID_STATE' && statusOf(err) === 400,
    );
    await assertNothingStored(key);
  });

  test('a body that is not a Terraform state: 400 INVALID_STATE', async () => {
    const key = freshKey();
    for (const body of ['hello', '{"version":4}', '[]', '']) {
      await assert.rejects(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body })), (err) => errorName(err) === 'INVALID_STATE' && statusOf(err) === 400, body);
    }
    await assertNothingStored(key);
  });

  test('a lock file whose body is not lock info: 400 and the state stays unlocked', async () => {
    const key = freshKey();
    await assert.rejects(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: 'locked!', IfNoneMatch: '*' })), (err) => errorName(err) === 'INVALID_LOCK_INFO' && statusOf(err) === 400);
    assert.equal((await serverRequest(server, 'GET', `/api/v1/locks/${BUCKET}/${key}`)).status, 404);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${key}.tflock`, Body: lockBody(randomUUID()) }));
    assert.equal((await serverRequest(server, 'GET', `/api/v1/locks/${BUCKET}/${key}`)).status, 200);
  });

  test('ranges: beyond the end is 416 InvalidRange; a suffix, an open end and an over-long end are served', async () => {
    const key = freshKey();
    const body = Buffer.from(stateBody(1, 'x'));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: `bytes=${body.length}-` })), (err) => errorName(err) === 'InvalidRange' && statusOf(err) === 416);
    const raw = await rawS3(server, { method: 'GET', path: `/${BUCKET}/${key}`, headers: { range: 'bytes=99999-100000' } });
    assert.equal(raw.status, 416);
    assert.equal(raw.headers['content-range'], `bytes */${body.length}`);
    const cases: Array<[string, number, number]> = [
      ['bytes=-10', body.length - 10, body.length - 1],
      ['bytes=5-', 5, body.length - 1],
      ['bytes=0-5242879', 0, body.length - 1],
      ['bytes=3-7', 3, 7],
    ];
    for (const [range, start, end] of cases) {
      const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: range }));
      assert.equal(got.ContentRange, `bytes ${start}-${end}/${body.length}`, range);
      assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body.subarray(start, end + 1)), range);
    }
  });

  test('bad names: a bucket name S3 forbids, a key with an empty segment; HEAD errors carry no body', async () => {
    const badBucket = await rawS3(server, { method: 'GET', path: '/Bad_Bucket', query: { 'list-type': '2' } });
    assert.equal(badBucket.status, 400);
    assert.equal(codeOf(badBucket), 'InvalidBucketName');
    const badKey = await rawS3(server, { method: 'PUT', path: `/${BUCKET}/a//b.tfstate`, body: Buffer.from(stateBody(1, 'x')) });
    assert.equal(badKey.status, 400);
    assert.equal(codeOf(badKey), 'INVALID_KEY');
    assert.equal((await serverRequest(server, 'GET', `/api/v1/states?prefix=${BUCKET}/a`)).body.toString('utf8').includes('b.tfstate'), false);
    const head = await rawS3(server, { method: 'HEAD', path: `/${BUCKET}/no/such.tfstate` });
    assert.equal(head.status, 404);
    assert.equal(head.body.length, 0);
    const missing = await rawS3(server, { method: 'GET', path: `/${BUCKET}/no/such.tfstate` });
    assert.equal(missing.status, 404);
    assert.equal(codeOf(missing), 'NoSuchKey');
    assert.match(missing.body.toString('utf8'), /<Key>no\/such\.tfstate<\/Key>/);
    assert.ok(missing.headers['x-amz-request-id']);
  });

  test('operations statelock does not implement: 501 NotImplemented naming them, nothing changed', async () => {
    const key = freshKey();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: stateBody(1, 'x') }));
    await assert.rejects(s3.send(new PutBucketVersioningCommand({ Bucket: BUCKET, VersioningConfiguration: { Status: 'Suspended' } })), (err) => errorName(err) === 'NotImplemented' && statusOf(err) === 501 && /PutBucketVersioning/.test((err as Error).message));
    await assert.rejects(s3.send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: key, Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] } })), (err) => errorName(err) === 'NotImplemented' && /PutObjectTagging/.test((err as Error).message));
    const copy = await rawS3(server, { method: 'PUT', path: `/${BUCKET}/${freshKey()}`, headers: { 'x-amz-copy-source': `/${BUCKET}/${key}` } });
    assert.equal(copy.status, 501);
    assert.match(copy.body.toString('utf8'), /CopyObject/);
    const deleteVersion = await rawS3(server, { method: 'DELETE', path: `/${BUCKET}/${key}`, query: { versionId: '1' } });
    assert.equal(deleteVersion.status, 501);
    assert.equal(await versionCount(key), 1, 'the version is still there');
  });
});
