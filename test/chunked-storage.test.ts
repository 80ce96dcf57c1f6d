import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { INGEST_BATCH_BYTES } from '../src/store/content/ingest.js';
import { StateTemplate, versionSeries } from '../bench/lib/state-gen.js';
import { rawRequest } from './support/http.js';
import { REGION, s3Client, serverRequest, startAwsServer, TEST_KEY, type AwsServer } from './support/aws.js';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { crc32 } from '../src/protocols/aws/checksums.js';
import { startServer, tempDir, type RunningServer } from './support/server-process.js';

/**
 * State bodies as compressed, deduplicated chunks (docs/storage.md), through the real server and the real
 * SQLite file: what is stored, what a refused streamed write leaves behind (nothing, once swept), old
 * databases, and byte ranges across chunk boundaries.
 */

const running: RunningServer[] = [];
after(async () => {
  for (const s of running) await s.stop();
});
async function serve(opts: Parameters<typeof startServer>[0] = {}): Promise<RunningServer> {
  const s = await startServer(opts);
  running.push(s);
  return s;
}

/** Reads the SQLite file beside the running server (WAL: readers do not block it). */
function inDb<T>(dir: string, fn: (db: Database.Database) => T): T {
  const db = new Database(join(dir, 'statelock.db'), { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
const chunkCount = (dir: string) => inDb(dir, (db) => (db.prepare('SELECT count(*) AS n, coalesce(sum(length(data)), 0) AS b FROM chunks').get() as { n: number; b: number }));
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('base64');

describe('chunked bodies through the http backend', () => {
  test('a new version that changes 3 resources stores only a few new chunks; chunks are compressed', async () => {
    const s = await serve();
    const [v1, v2] = versionSeries(300 * 1024, 2, 3);
    assert.equal((await rawRequest(`${s.url}/state/dedup/app`, { method: 'POST', body: v1!, headers: { 'Content-MD5': md5(v1!) } })).status, 200);
    const first = chunkCount(s.dataDir);
    assert.ok(first.n >= 25, `${first.n} chunks for ${v1!.length} bytes`);
    assert.ok(first.b < v1!.length * 0.3, `compressed: ${first.b} stored bytes for ${v1!.length}`);
    const codecs = inDb(s.dataDir, (db) => db.prepare('SELECT codec, count(*) AS n FROM chunks GROUP BY codec').all());
    assert.deepEqual(codecs, [{ codec: 'deflate', n: first.n }]);
    assert.equal((await rawRequest(`${s.url}/state/dedup/app`, { method: 'POST', body: v2!, headers: { 'Content-MD5': md5(v2!) } })).status, 200);
    const second = chunkCount(s.dataDir);
    assert.ok(second.n - first.n <= 8, `${second.n - first.n} new chunks for the second version`);
    assert.ok(second.b - first.b < v2!.length * 0.05, `${second.b - first.b} new stored bytes for a ${v2!.length}-byte version`);
    const refs = inDb(s.dataDir, (db) => db.prepare('SELECT version_id, count(*) AS n FROM version_chunk_refs GROUP BY version_id ORDER BY version_id').all() as Array<{ n: number }>);
    assert.equal(refs.length, 2);
    assert.ok(refs[1]!.n >= 25, 'the second version names all of its chunks, most of them shared');
    // Both versions read back byte for byte, with their digests.
    const current = await rawRequest(`${s.url}/state/dedup/app`);
    assert.ok(current.body.equals(v2!));
    assert.equal(current.headers['content-md5'], md5(v2!));
    assert.ok((await rawRequest(`${s.url}/api/v1/content/dedup/app?seq=1`)).body.equals(v1!));
  });

  test('a streamed write larger than one batch with a bad Content-MD5, or invalid JSON at its very end: 400, no version, and its chunks are swept later', async () => {
    const s = await serve();
    const key = 'refused/app';
    const good = StateTemplate.ofSize(1024 * 1024).body(1);
    assert.equal((await rawRequest(`${s.url}/state/${key}`, { method: 'POST', body: good, headers: { 'Content-MD5': md5(good) } })).status, 200);
    const before = chunkCount(s.dataDir);

    const big = StateTemplate.ofSize(3 * INGEST_BATCH_BYTES).body(2);
    const other = Buffer.from(big.toString().replaceAll('"prod"', '"qa"')); // other content: new chunks
    const badMd5 = await rawRequest(`${s.url}/state/${key}`, { method: 'POST', body: other, headers: { 'Content-MD5': md5('something else') } });
    assert.equal(badMd5.status, 400);
    assert.equal(badMd5.json<{ error: { code: string } }>().error.code, 'CONTENT_MD5_MISMATCH');

    const truncated = Buffer.concat([big.subarray(0, big.length - 3), Buffer.from('\n')]); // the closing brace is gone
    const badJson = await rawRequest(`${s.url}/state/${key}`, { method: 'POST', body: truncated, headers: { 'Content-MD5': md5(truncated) } });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.json<{ error: { code: string } }>().error.code, 'INVALID_STATE');

    const versions = (await rawRequest(`${s.url}/api/v1/versions/${key}`)).json<{ items: unknown[] }>();
    assert.equal(versions.items.length, 1, 'no version was stored');
    assert.ok((await rawRequest(`${s.url}/state/${key}`)).body.equals(good));
    const orphaned = chunkCount(s.dataDir);
    assert.ok(orphaned.n > before.n + 100, `the refused bodies' chunks were stored while they streamed in (${orphaned.n - before.n})`);
    await s.stop();

    // The server's sweep keeps them for a day (a write in flight may be about to name them); past that, they go.
    const store = new SqliteStore(s.dataDir);
    try {
      assert.equal(await store.sweepChunks(new Date(Date.now() - 3_600_000).toISOString()), 0);
      assert.equal(await store.sweepChunks(new Date(Date.now() + 60_000).toISOString()), orphaned.n - before.n);
    } finally {
      await store.close();
    }
    assert.deepEqual(chunkCount(s.dataDir), before);
    const again = await serve({ dataDir: s.dataDir });
    assert.ok((await rawRequest(`${again.url}/state/${key}`)).body.equals(good), 'the stored version is whole after the sweep');
  });

  test('a database written before chunking: old versions and rejected writes still read, new writes are chunked', async () => {
    const dir = tempDir();
    copyFileSync(new URL('../../test/fixtures/legacy-sqlite-v4/statelock.db', import.meta.url), join(dir, 'statelock.db'));
    const s = await serve({ dataDir: dir });
    const key = 'legacy/app/terraform.tfstate';
    const current = await rawRequest(`${s.url}/state/${key}`);
    assert.equal(current.status, 200);
    assert.match(current.text, /"id": "second"/);
    assert.equal(current.headers['content-md5'], md5(current.body), 'the stored digest is that of the bytes served');
    assert.match((await rawRequest(`${s.url}/api/v1/content/${key}?seq=1`)).text, /"id": "first"/);
    assert.match((await rawRequest(`${s.url}/api/v1/rejected-content/${key}?id=1`)).text, /"id": "fenced"/);
    const next = current.text.replace('"serial": 2', '"serial": 3').replace('"second"', '"third"');
    assert.equal((await rawRequest(`${s.url}/state/${key}`, { method: 'POST', body: next })).status, 200);
    assert.equal((await rawRequest(`${s.url}/state/${key}`)).text, next);
    const kinds = inDb(dir, (db) => db.prepare('SELECT seq, chunked FROM versions ORDER BY seq').all());
    assert.deepEqual(kinds, [{ seq: 1, chunked: 0 }, { seq: 2, chunked: 0 }, { seq: 3, chunked: 1 }]);
    // Restoring a legacy version stores it as chunks.
    const restored = await rawRequest(`${s.url}/api/v1/restore/${key}?seq=1`, { method: 'POST' });
    assert.equal(restored.status, 200, restored.text);
    assert.match((await rawRequest(`${s.url}/state/${key}`)).text, /"serial": 4,[\s\S]*"id": "first"/);
  });
});

describe('chunked bodies through S3', () => {
  test('GetObject Range across chunk boundaries (and suffix and open ranges) returns exactly those bytes', async () => {
    const server = await startAwsServer();
    running.push(server);
    const s3 = s3Client(server);
    await s3.send(new CreateBucketCommand({ Bucket: 'ranges' }));
    const body = StateTemplate.ofSize(1024 * 1024).body(1);
    await s3.send(new PutObjectCommand({ Bucket: 'ranges', Key: 'big.tfstate', Body: body, ContentType: 'application/json' }));
    const sizes = inDb(server.dataDir, (db) =>
      (db.prepare('SELECT c.size FROM version_chunk_refs r JOIN chunks c ON c.rowid = r.chunk ORDER BY r.version_id, r.n').all() as Array<{ size: number }>).map((r) => r.size),
    );
    assert.ok(sizes.length > 50);
    const edges: number[] = [];
    sizes.reduce((at, n) => (edges.push(at + n), at + n), 0);
    const ranges: Array<[string, number, number]> = [
      [`bytes=${edges[0]! - 10}-${edges[0]! + 10}`, edges[0]! - 10, edges[0]! + 10],
      [`bytes=${edges[4]!}-${edges[9]! - 1}`, edges[4]!, edges[9]! - 1],
      [`bytes=${edges[10]! - 1}-${edges[30]!}`, edges[10]! - 1, edges[30]!],
      [`bytes=0-0`, 0, 0],
      [`bytes=-5000`, body.length - 5000, body.length - 1],
      [`bytes=${edges[40]! + 3}-`, edges[40]! + 3, body.length - 1],
      [`bytes=${body.length - 10}-${body.length + 100}`, body.length - 10, body.length - 1],
    ];
    for (const [range, start, end] of ranges) {
      const got = await s3.send(new GetObjectCommand({ Bucket: 'ranges', Key: 'big.tfstate', Range: range }));
      const bytes = Buffer.from(await got.Body!.transformToByteArray());
      assert.ok(bytes.equals(body.subarray(start, end + 1)), `${range}: ${bytes.length} bytes`);
      assert.equal(got.ContentRange, `bytes ${start}-${end}/${body.length}`);
      assert.equal(got.ContentLength, end - start + 1);
    }
    const whole = await s3.send(new GetObjectCommand({ Bucket: 'ranges', Key: 'big.tfstate' }));
    assert.ok(Buffer.from(await whole.Body!.transformToByteArray()).equals(body));
  });

  test('PutObject streams a state body into the store; a wrong payload hash or checksum found at its end is a 400 and stores nothing', async () => {
    const server = await startAwsServer();
    running.push(server);
    await s3Client(server).send(new CreateBucketCommand({ Bucket: 'streamed' }));
    const body = StateTemplate.ofSize(3 * INGEST_BATCH_BYTES).body(1);
    const sha = createHash('sha256').update(body).digest('hex');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    const put = (headers: Record<string, string>, key = 'app/terraform.tfstate') => signedPut(server, `/streamed/${key}`, body, headers);

    const badHash = await put({ 'x-amz-content-sha256': sha.replace(/^./, sha[0] === '0' ? '1' : '0') });
    assert.equal(badHash.status, 400);
    assert.match(badHash.body.toString(), /<Code>XAmzContentSHA256Mismatch<\/Code>/);
    const badCrc = await put({ 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'x-amz-checksum-crc32': 'AAAAAA==' });
    assert.equal(badCrc.status, 400);
    assert.match(badCrc.body.toString(), /<Code>BadDigest<\/Code>/);
    const badMd5 = await put({ 'x-amz-content-sha256': sha, 'content-md5': md5('not the body') });
    assert.equal(badMd5.status, 400);
    assert.match(badMd5.body.toString(), /<Code>BadDigest<\/Code>/);
    const malformed = await put({ 'x-amz-content-sha256': sha, 'x-amz-checksum-crc32': 'not base64' });
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.toString(), /<Code>InvalidDigest<\/Code>/);
    assert.equal((await rawRequest(`${server.url}/state/streamed/app/terraform.tfstate`)).status, 404, 'nothing was stored');
    assert.ok(chunkCount(server.dataDir).n > 100, 'the refused bodies streamed into chunks (left for the sweep)');

    const ok = await put({ 'x-amz-content-sha256': sha, 'x-amz-checksum-crc32': crc.toString('base64'), 'content-md5': md5(body) });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(ok.headers.etag, `"${createHash('md5').update(body).digest('hex')}"`);
    assert.equal(ok.headers['x-amz-checksum-crc32'], crc.toString('base64'));
    assert.ok((await rawRequest(`${server.url}/state/streamed/app/terraform.tfstate`)).body.equals(body));
  });
});

/** A PutObject signed as the SDKs sign it (the given x-amz-content-sha256 is what the signature covers). */
async function signedPut(server: AwsServer, path: string, body: Buffer, headers: Record<string, string>) {
  const url = new URL(server.url);
  const signer = new SignatureV4({ service: 's3', region: REGION, credentials: TEST_KEY, sha256: Sha256, uriEscapePath: false });
  const signed = await signer.sign({ method: 'PUT', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path, headers: { host: url.host, ...headers }, body });
  return serverRequest(server, 'PUT', path, body, signed.headers as Record<string, string>);
}
