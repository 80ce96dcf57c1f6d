import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, PutObjectCommand, type S3Client, type ChecksumAlgorithm } from '@aws-sdk/client-s3';
import { computeChecksum } from '../../src/protocols/aws/checksums.js';
import { s3Client, serverRequest, startAwsServer, type AwsServer } from '../support/aws.js';
import { putChunked, type ChunkedMode } from '../support/aws-chunked-upload.js';

/**
 * aws-chunked PutObject bodies stream into the store over HTTPS, as the AWS SDKs send them there (the JS SDK
 * here; Terraform's and OpenTofu's Go SDK send the same framing): round trips byte for byte, the signed
 * variants (hand-built per AWS's algorithm), refusals that leave the current version as it was, and the
 * server's peak RSS after a ~100 MiB upload (bounded buffering, not speed).
 */

const BUCKET = 'chunked';
const KiB = 1024;
const MiB = 1024 * KiB;
const LINEAGE = 'c0ffee00-1111-4222-8333-444455556666';

/** A valid state of exactly `size` bytes (at least ~90), with incompressible padding. */
function stateOfSize(size: number, serial: number): Buffer {
  const head = `{"version":4,"serial":${serial},"lineage":"${LINEAGE}","resources":[],"padding":"`;
  const tail = '"}\n';
  const room = size - head.length - tail.length;
  assert.ok(room >= 0, `a state cannot be ${size} bytes`);
  const pad = randomBytes(Math.ceil((room * 3) / 4) + 3).toString('base64').replace(/[+/=]/g, 'x').slice(0, room);
  const body = Buffer.from(head + pad + tail);
  assert.equal(body.length, size);
  return body;
}

/** The body as the pieces of a stream: the SDK sends one aws-chunk per piece (`size` 0 = one piece). */
function streamOf(body: Buffer, size: number): Readable {
  if (size === 0 || body.length === 0) return Readable.from(body.length === 0 ? [] : [body]);
  const pieces: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) pieces.push(body.subarray(i, i + size));
  return Readable.from(pieces);
}

/** Records the request headers the SDK puts on the wire (after checksums and signing). */
function recordHeaders(s3: S3Client): Array<Record<string, string>> {
  const seen: Array<Record<string, string>> = [];
  s3.middlewareStack.add(
    (next) => async (args) => {
      seen.push({ ...((args.request as { headers: Record<string, string> }).headers ?? {}) });
      return next(args);
    },
    { step: 'deserialize', name: 'recordWireHeaders' },
  );
  return seen;
}

let server: AwsServer;
let s3: S3Client;
let wire: Array<Record<string, string>>;

async function readBack(key: string): Promise<Buffer> {
  const got = await serverRequest(server, 'GET', `/state/${BUCKET}/${key}`);
  assert.equal(got.status, 200, got.body.toString());
  return got.body;
}

async function versionsOf(key: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key }));
  return (listed.Versions ?? []).filter((v) => v.Key === key).map((v) => v.VersionId!);
}

describe('aws-chunked PutObject over HTTPS streams into the store', () => {
  before(async () => {
    server = await startAwsServer({ tls: true, args: ['--max-body-bytes', String(160 * MiB)] });
    s3 = s3Client(server);
    wire = recordHeaders(s3);
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  for (const algorithm of ['CRC32', undefined] as Array<ChecksumAlgorithm | undefined>) {
    for (const [size, piece] of [[64 * KiB - 1, 0], [64 * KiB + 1, 0], [64 * KiB + 1, 4 * KiB], [20 * MiB + 7, 64 * KiB], [20 * MiB + 7, 0]] as const) {
      test(`the SDK's PutObject (${algorithm ?? 'default'} checksum), ${size} bytes in ${piece ? `${piece}-byte chunks` : 'one chunk'}: byte for byte`, async () => {
        const key = `rt/${algorithm ?? 'default'}-${size}-${piece}.tfstate`;
        const body = stateOfSize(size, 1);
        wire.length = 0;
        const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: streamOf(body, piece), ContentLength: body.length, ...(algorithm ? { ChecksumAlgorithm: algorithm } : {}) }));
        const headers = wire.at(-1)!;
        assert.equal(headers['x-amz-content-sha256'], 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'the SDK sent aws-chunked with a trailer');
        assert.match(headers['content-encoding'] ?? '', /aws-chunked/);
        assert.equal(headers['x-amz-trailer'], 'x-amz-checksum-crc32');
        assert.equal(put.ChecksumCRC32, computeChecksum('crc32', body), 'the verified trailing checksum is echoed');
        assert.ok((await readBack(key)).equals(body));
        const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body), 'GetObject serves the same bytes');
      });
    }
  }

  test('bodies of 0 and 1 bytes decode exactly: the state parser judges what arrived (a state cannot be that short)', async () => {
    for (const [body, reason] of [[Buffer.alloc(0), /invalid state/], [Buffer.from('x'), /not a JSON object/], [Buffer.from('{'), /not valid JSON/]] as const) {
      const answer = await putChunked(server, BUCKET, `tiny-${body.length}-${body[0] ?? 0}.tfstate`, { mode: 'unsigned-trailer', body });
      assert.equal(answer.status, 400, answer.body.toString());
      assert.match(answer.body.toString(), /<Code>INVALID_STATE<\/Code>/);
      assert.match(answer.body.toString(), reason);
    }
    // …and the SDK's own encoding of a 1-byte stream reaches the parser as that one byte.
    await assert.rejects(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tiny-sdk.tfstate', Body: streamOf(Buffer.from('x'), 0), ContentLength: 1, ChecksumAlgorithm: 'CRC32' })), /not a JSON object/);
  });

  for (const mode of ['signed', 'signed-trailer', 'unsigned-trailer'] as ChunkedMode[]) {
    test(`a hand-built ${mode} body (STREAMING-…), 1 MiB in 64 KiB chunks and 3 MiB in one: byte for byte`, async () => {
      for (const [size, chunkSize] of [[MiB + 3, 64 * KiB], [3 * MiB, 3 * MiB]] as const) {
        const key = `hand/${mode}-${size}.tfstate`;
        const body = stateOfSize(size, 1);
        const answer = await putChunked(server, BUCKET, key, { mode, body, chunkSize });
        assert.equal(answer.status, 200, answer.body.toString());
        assert.equal(answer.headers['x-amz-version-id'], '1');
        assert.ok((await readBack(key)).equals(body));
      }
    });
  }
});

describe('refused aws-chunked bodies store nothing: the current version stays', () => {
  const KEY = 'refused/state.tfstate';
  let v1: Buffer;
  let v2: Buffer;

  before(async () => {
    server = await startAwsServer({ tls: true });
    s3 = s3Client(server);
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    v1 = stateOfSize(300 * KiB, 1);
    assert.equal((await putChunked(server, BUCKET, KEY, { mode: 'signed-trailer', body: v1 })).status, 200);
    v2 = stateOfSize(2 * MiB, 2); // would be stored as version 2 if any refusal below let it through
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  async function assertUnchanged(): Promise<void> {
    assert.ok((await readBack(KEY)).equals(v1), 'the current version is still the first one');
    assert.deepEqual(await versionsOf(KEY), ['1'], 'no version was added');
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: KEY }))).VersionId, '1');
  }

  /** Replaces one chunk-signature (the n-th, 0-based) with another well-formed one. */
  const otherSignature = (n: number) => (encoded: Buffer): Buffer => {
    let seen = -1;
    return Buffer.from(encoded.toString('latin1').replace(/chunk-signature=([0-9a-f]{64})/g, (all, sig: string) => (++seen === n ? `chunk-signature=${sig.slice(1)}${sig[0] === '0' ? '1' : '0'}` : all)), 'latin1');
  };

  const cases: Array<[string, Parameters<typeof putChunked>[3], number, RegExp]> = [
    ['a wrong chunk signature in the middle of the body', { mode: 'signed', body: Buffer.alloc(0), tamper: otherSignature(10) }, 403, /SignatureDoesNotMatch/],
    ['a wrong signature on the final 0-length chunk', { mode: 'signed', body: Buffer.alloc(0), tamper: otherSignature(32) }, 403, /SignatureDoesNotMatch/],
    ['data changed after signing', { mode: 'signed-trailer', body: Buffer.alloc(0), tamper: (e) => Buffer.from(e.toString('latin1').replace('"serial":2', '"serial":3'), 'latin1') }, 403, /SignatureDoesNotMatch/],
    ['a wrong trailer signature', { mode: 'signed-trailer', body: Buffer.alloc(0), tamper: (e) => Buffer.from(e.toString('latin1').replace(/x-amz-trailer-signature:([0-9a-f])/, (_, c: string) => `x-amz-trailer-signature:${c === '0' ? '1' : '0'}`), 'latin1') }, 403, /SignatureDoesNotMatch/],
    ['a wrong trailing checksum (unsigned trailer)', { mode: 'unsigned-trailer', body: Buffer.alloc(0), crc32: 'AAAAAA==' }, 400, /BadDigest/],
    ['a trailing checksum that is not base64 of 4 bytes', { mode: 'unsigned-trailer', body: Buffer.alloc(0), crc32: 'nonsense' }, 400, /InvalidDigest/],
    ['a declared decoded length one byte short (refused at the last chunk\'s size line)', { mode: 'unsigned-trailer', body: Buffer.alloc(0), decodedLength: -1 }, 400, /IncompleteBody.*past the/s],
    ['a declared decoded length one byte long', { mode: 'unsigned-trailer', body: Buffer.alloc(0), decodedLength: +1 }, 400, /IncompleteBody.*x-amz-decoded-content-length says/s],
    ['a body truncated in the middle of a chunk', { mode: 'unsigned-trailer', body: Buffer.alloc(0), tamper: (e) => e.subarray(0, Math.floor(e.length / 2)) }, 400, /IncompleteBody.*declares 65536 bytes but only/s],
    ['a body that ends without its trailer section', { mode: 'unsigned-trailer', body: Buffer.alloc(0), tamper: (e) => e.subarray(0, e.indexOf('\r\n0\r\n') + 5) }, 400, /IncompleteBody.*announces x-amz-checksum-crc32, but the body ends without/s],
    ['a body missing its final CRLF', { mode: 'unsigned-trailer', body: Buffer.alloc(0), tamper: (e) => e.subarray(0, e.length - 2) }, 400, /IncompleteBody.*not terminated by an empty line/s],
    ['extra bytes after the trailer section', { mode: 'signed-trailer', body: Buffer.alloc(0), tamper: (e) => Buffer.concat([e, Buffer.from('0\r\n\r\n')]) }, 400, /IncompleteBody.*bytes after the end of the body/s],
    ['a size line longer than 4096 bytes', { mode: 'unsigned-trailer', body: Buffer.alloc(0), tamper: (e) => Buffer.concat([e.subarray(0, e.indexOf('\r\n')), Buffer.from(`;x=${'y'.repeat(5000)}`), e.subarray(e.indexOf('\r\n'))]) }, 400, /IncompleteBody.*longer than 4096 bytes/s],
  ];

  for (const [name, put, status, expected] of cases) {
    test(`${name}: ${status}, and nothing stored`, async () => {
      const decodedLength = put.decodedLength === undefined ? undefined : v2.length + put.decodedLength;
      const answer = await putChunked(server, BUCKET, KEY, { ...put, body: v2, ...(decodedLength === undefined ? {} : { decodedLength }) });
      assert.equal(answer.status, status, answer.body.toString());
      assert.match(answer.body.toString(), expected);
      await assertUnchanged();
    });
  }

  test('after every refusal, the same body sent intact is stored as version 2', async () => {
    const answer = await putChunked(server, BUCKET, KEY, { mode: 'signed', body: v2 });
    assert.equal(answer.status, 200, answer.body.toString());
    assert.equal(answer.headers['x-amz-version-id'], '2');
    assert.ok((await readBack(KEY)).equals(v2));
  });
});

describe('memory: a ~100 MiB aws-chunked PutObject is not buffered whole', () => {
  test("the server's peak RSS (VmHWM) stays well under twice the body", async () => {
    const body = stateOfSize(100 * MiB, 1);
    const big = await startAwsServer({ tls: true, args: ['--max-body-bytes', String(160 * MiB)] });
    const client = s3Client(big);
    try {
      await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      // 64 KiB chunks, as the SDK makes them from a file stream (the one-chunk form is what the Go SDK sends; both stream).
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'big.tfstate', Body: streamOf(body, 64 * KiB), ContentLength: body.length, ChecksumAlgorithm: 'CRC32' }));
      const status = readFileSync(`/proc/${big.proc.pid}/status`, 'utf8');
      const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
      // Buffered whole, the raw body and its decoded copy alone were 2× the body (3.9× measured with the idle process).
      assert.ok(peak < 1.75 * body.length, `VmHWM ${(peak / MiB).toFixed(1)} MiB is ${(peak / body.length).toFixed(2)}× the ${(body.length / MiB).toFixed(0)} MiB body`);
      const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'big.tfstate' }));
      assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
    } finally {
      client.destroy();
      await big.stop();
    }
  });
});
