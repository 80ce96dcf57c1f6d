import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, GetObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { inflateRawSync } from 'node:zlib';
import { Keyring, keyIdOf, parseEncryptionKeys } from '../src/store/encryption.js';
import { StatelockError } from '../src/server/errors.js';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { runCli } from './support/cli.js';
import { StateTemplate } from '../bench/lib/state-gen.js';
import { INGEST_BATCH_BYTES } from '../src/store/content/ingest.js';
import { s3Client, startAwsServer } from './support/aws.js';
import { PG_SKIP_REASON, pgAvailable, psql, startPostgres } from './support/postgres.js';
import { startServer, tempDir, type RunningServer } from './support/server-process.js';

/**
 * Encryption at rest: with keys configured, no stored byte of a state (versions, fenced writes, AWS
 * secrets) is readable in the database files; keys rotate; `statelock rekey` re-seals old versions;
 * a missing key is a clear error, never a crash.
 */

const newKey = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const running: RunningServer[] = [];
after(async () => {
  for (const s of running) await s.stop();
});

function keyFile(...entries: string[]): string {
  const file = join(tempDir('statelock-keys-'), 'keys');
  writeFileSync(file, entries.join('\n') + '\n');
  return file;
}

async function serve(dataDir: string, file?: string): Promise<RunningServer> {
  const s = await startServer({ dataDir, args: file ? ['--encryption-key-file', file] : [] });
  running.push(s);
  return s;
}

/** Every file of the data directory, as raw bytes. */
function rawFiles(dir: string): Buffer {
  return Buffer.concat(readdirSync(dir).map((f) => readFileSync(join(dir, f))));
}

function assertAbsent(raw: Buffer, marker: string) {
  for (const form of [Buffer.from(marker), Buffer.from(marker, 'utf16le'), Buffer.from(Buffer.from(marker).toString('base64'))]) {
    assert.equal(raw.includes(form), false, `found ${form.toString('latin1').slice(0, 40)} in the raw database files`);
  }
}

/** The stored chunks, read from the SQLite file itself. */
function chunkRows(dir: string): Array<{ id: string; codec: string; data: Buffer }> {
  const db = new Database(join(dir, 'statelock.db'), { readonly: true });
  try {
    return db.prepare('SELECT id, codec, data FROM chunks ORDER BY rowid').all() as Array<{ id: string; codec: string; data: Buffer }>;
  } finally {
    db.close();
  }
}

/**
 * The key ids the stored chunks are sealed with (null: not sealed), each once, sorted. A sealed chunk's id
 * must be named by its key (`<key id>.<hmac>`), an unsealed one's is the SHA-256 of its plaintext.
 */
function storedKeyIds(dir: string): Array<string | null> {
  const ids = new Set<string | null>();
  for (const c of chunkRows(dir)) {
    const keyId = c.codec.startsWith('sealed-') ? keyIdOf(c.data) : null;
    assert.match(c.id, keyId ? new RegExp(`^${keyId}\\.[0-9a-f]{64}$`) : /^[0-9a-f]{64}$/, `chunk ${c.id} (${c.codec})`);
    ids.add(keyId);
  }
  return [...ids].sort();
}

/** Whether any unsealed chunk holds `marker` once decoded (compression hides it from a plain byte search). */
function plaintextChunksHold(dir: string, marker: string): boolean {
  return chunkRows(dir).some((c) => (c.codec === 'raw' ? c.data : c.codec === 'deflate' ? inflateRawSync(c.data) : Buffer.alloc(0)).includes(marker));
}

const markerState = (serial: number, marker: string) => stateBody(serial, 'L-enc', { outputs: { secret: { value: `${marker}-${serial}`, type: 'string', sensitive: true } } });

describe('the envelope (pure)', () => {
  const k1 = parseEncryptionKeys(newKey('k1')) as Array<{ id: string; key: Buffer }>;
  const ring = new Keyring(k1);
  test('seal/open round trip; plaintext passes through; one changed byte or a relabelled key id is refused', () => {
    const plain = Buffer.from('{"serial":1}');
    const sealed = ring.seal(plain);
    assert.equal(keyIdOf(sealed), 'k1');
    assert.ok(ring.open(sealed).equals(plain));
    assert.ok(ring.open(plain).equals(plain), 'bodies stored before encryption stay readable');
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] ^= 1;
    assert.throws(() => ring.open(tampered), (e: unknown) => e instanceof StatelockError && e.code === 'ENCRYPTION_FAILED');
    const other = new Keyring([...k1, ...(parseEncryptionKeys(newKey('k2')) as Array<{ id: string; key: Buffer }>)]);
    const relabelled = Buffer.from(other.seal(plain));
    relabelled.write('k1', 5, 'latin1'); // same length id: claims to be under k1
    assert.throws(() => other.open(relabelled), (e: unknown) => e instanceof StatelockError && e.code === 'ENCRYPTION_FAILED');
    assert.throws(() => new Keyring(parseEncryptionKeys(newKey('k9')) as Array<{ id: string; key: Buffer }>).open(sealed), (e: unknown) => e instanceof StatelockError && e.code === 'ENCRYPTION_KEY_MISSING' && /"k1"/.test(e.message));
  });
  test('key lists: malformed entries are refused without echoing the key', () => {
    assert.match((parseEncryptionKeys('k1:' + Buffer.alloc(16).toString('base64')) as { error: string }).error, /16 bytes/);
    assert.match((parseEncryptionKeys('nocolon') as { error: string }).error, /no valid key id/);
    const secret = randomBytes(32).toString('base64');
    const dup = parseEncryptionKeys(`a:${secret},a:${secret}`) as { error: string };
    assert.match(dup.error, /twice/);
    assert.ok(!dup.error.includes(secret));
  });
});

describe('encryption at rest on SQLite (the real server, the real files)', () => {
  const k1 = newKey('k1');
  const k2 = newKey('k2');
  const dir = tempDir();
  const marker = `MARKER-${randomBytes(6).toString('hex')}`;
  const key = 'enc/app/terraform.tfstate';

  test('no stored state byte is readable in the database files; reads return the exact bytes and Content-MD5', async () => {
    const s = await serve(dir, keyFile(k1));
    for (const serial of [1, 2]) assert.equal((await rawRequest(`${s.url}/state/${key}?ID=`, { method: 'POST', body: markerState(serial, marker) })).status, 200);
    // A fenced write (a holder that lost its lock) is kept too: encrypted as well.
    assert.equal((await rawRequest(`${s.url}/state/${key}`, { method: 'LOCK', body: lockBody('lost-holder') })).status, 200);
    assert.equal((await rawRequest(`${s.url}/state/${key}`, { method: 'UNLOCK', body: '' })).status, 200);
    assert.equal((await rawRequest(`${s.url}/state/${key}?ID=lost-holder`, { method: 'POST', body: markerState(3, marker) })).status, 423);
    const created = await rawRequest(`${s.url}/api/v1/tokens`, { method: 'POST', body: JSON.stringify({ name: 'ci', allow: ['*:admin'], aws: true }) });
    assert.equal(created.status, 201);
    const { token, awsSecretAccessKey } = created.json<{ token: string; awsSecretAccessKey: string }>();
    const got = await rawRequest(`${s.url}/state/${key}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(got.text, markerState(2, marker));
    assert.equal(got.headers['content-md5'], (await import('node:crypto')).createHash('md5').update(markerState(2, marker)).digest('base64'));
    tokens.set(dir, token);
    await s.stop();
    const raw = rawFiles(dir);
    assertAbsent(raw, marker);
    assertAbsent(raw, awsSecretAccessKey);
    assert.deepEqual(storedKeyIds(dir), ['k1']);
    // A chunk's id is an HMAC under a key derived from k1, not the SHA-256 of its plaintext (which anyone with
    // the database could confirm for a guessed chunk).
    const ring = new Keyring(parseEncryptionKeys(k1) as Array<{ id: string; key: Buffer }>);
    for (const c of chunkRows(dir)) {
      const opened = ring.open(c.data);
      const plain = c.codec === 'sealed-deflate' ? inflateRawSync(opened) : opened;
      assert.notEqual(c.id.slice(3), createHash('sha256').update(plain).digest('hex'));
      assert.equal(c.id, ring.chunkId(plain));
    }
  });

  test('a second key: old versions stay readable, new writes use the newest; rekey re-seals; the old key can then go', async () => {
    let s = await serve(dir, keyFile(k1, k2));
    assert.equal((await rawRequest(`${s.url}/api/v1/content/${key}?seq=1`, { headers: { Authorization: `Bearer ${await adminToken(s)}` } })).text, markerState(1, marker));
    await s.stop();
    assert.deepEqual(storedKeyIds(dir), ['k1']);
    const rekey = await runCli(['rekey', '--data', dir, '--encryption-key-file', keyFile(k1, k2)]);
    assert.equal(rekey.code, 0, rekey.stderr);
    assert.match(rekey.stdout, /Re-encrypted 4 of 4 stored bodies and secrets with key "k2"/); // 2 versions, 1 fenced write, 1 AWS secret
    assert.deepEqual(storedKeyIds(dir), ['k2'], 'every chunk resealed and re-filed under k2');
    const again = await runCli(['rekey', '--data', dir, '--encryption-key-file', keyFile(k1, k2)]);
    assert.match(again.stdout, /Re-encrypted 0 of 4/);
    s = await serve(dir, keyFile(k2));
    const token = await adminToken(s);
    assert.equal((await rawRequest(`${s.url}/api/v1/content/${key}?seq=1`, { headers: { Authorization: `Bearer ${token}` } })).text, markerState(1, marker));
    assert.equal((await rawRequest(`${s.url}/api/v1/rejected-content/${key}?id=1`, { headers: { Authorization: `Bearer ${token}` } })).text, markerState(3, marker));
    await s.stop();
    assertAbsent(rawFiles(dir), marker);
  });

  test('without the key: reading an encrypted version is a clear error naming the key id; the server keeps serving', async () => {
    const s = await serve(dir);
    const token = await adminToken(s);
    const res = await rawRequest(`${s.url}/state/${key}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 500);
    assert.match(res.text, /ENCRYPTION_KEY_MISSING/);
    assert.match(res.text, /key \\"k2\\"/);
    assert.equal((await rawRequest(`${s.url}/readyz`)).status, 200);
    await s.stop();
  });

  test('turning encryption on for an existing plaintext database: old versions stay readable; rekey encrypts them and the plaintext leaves the files', async () => {
    const plainDir = tempDir();
    const plainMarker = `PLAIN-${randomBytes(6).toString('hex')}`;
    let s = await serve(plainDir);
    assert.equal((await rawRequest(`${s.url}/state/plain/k`, { method: 'POST', body: markerState(1, plainMarker) })).status, 200);
    await s.stop();
    assert.ok(plaintextChunksHold(plainDir, plainMarker), 'stored in the clear before');
    assert.deepEqual(storedKeyIds(plainDir), [null]);
    s = await serve(plainDir, keyFile(k1));
    assert.equal((await rawRequest(`${s.url}/state/plain/k`)).text, markerState(1, plainMarker));
    await s.stop();
    const rekey = await runCli(['rekey', '--data', plainDir, '--encryption-key-file', keyFile(k1)]);
    assert.equal(rekey.code, 0, rekey.stderr);
    assertAbsent(rawFiles(plainDir), plainMarker);
    assert.equal(plaintextChunksHold(plainDir, plainMarker), false);
    assert.deepEqual(storedKeyIds(plainDir), ['k1'], 'sealed, and re-filed under ids of k1: no SHA-256 id of plaintext is left');
    s = await serve(plainDir, keyFile(k1));
    assert.equal((await rawRequest(`${s.url}/state/plain/k`)).text, markerState(1, plainMarker));
    await s.stop();
  });
});

/** The admin token of a data dir whose first test created one (tokens survive restarts). */
const tokens = new Map<string, string>();
async function adminToken(s: RunningServer): Promise<string> {
  const known = tokens.get(s.dataDir);
  if (known) return known;
  const res = await rawRequest(`${s.url}/api/v1/tokens`, { method: 'POST', body: JSON.stringify({ name: 'admin', allow: ['*:admin'] }) });
  if (res.status === 201) {
    const t = res.json<{ token: string }>().token;
    tokens.set(s.dataDir, t);
    return t;
  }
  throw new Error(`no admin token for ${s.dataDir}: ${res.status} ${res.text}`);
}

/**
 * The chunks of a PostgreSQL database, with the key ids they are sealed with (null: not sealed), checked as
 * storedKeyIds does: a sealed chunk's id is named by its key, an unsealed one's is a SHA-256.
 */
async function pgChunkKeyIds(pg: { port: number }): Promise<Array<string | null>> {
  const rows = (await psql(pg, "SELECT id || ' ' || codec || ' ' || encode(substring(data from 1 for 64), 'hex') FROM chunks ORDER BY pk")).split('\n').filter(Boolean);
  assert.ok(rows.length > 0, 'chunks are stored');
  const ids = new Set<string | null>();
  for (const row of rows) {
    const [id, codec, head] = row.split(' ') as [string, string, string];
    const keyId = codec.startsWith('sealed-') ? keyIdOf(Buffer.from(head, 'hex')) : null;
    assert.match(id, keyId ? new RegExp(`^${keyId}\\.[0-9a-f]{64}$`) : /^[0-9a-f]{64}$/, `chunk ${id} (${codec})`);
    ids.add(keyId);
  }
  return [...ids].sort();
}

describe('encryption at rest on PostgreSQL', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  test('the chunk rows hold no plaintext; reads return the exact bytes', async () => {
    const pg = await startPostgres();
    try {
      const marker = `PGMARK-${randomBytes(6).toString('hex')}`;
      const s = await startServer({ args: ['--database', pg.url, '--encryption-key-file', keyFile(newKey('pg1'))] });
      running.push(s);
      const big = markerState(1, marker).replace('"outputs"', `"padding": "${'x'.repeat(5 * 1024 * 1024)}", "outputs"`);
      assert.equal((await rawRequest(`${s.url}/state/pg/k`, { method: 'POST', body: big })).status, 200, 'a body over one 4 MiB chunk');
      assert.equal((await rawRequest(`${s.url}/state/pg/k`)).text, big);
      assert.equal(await psql(pg, 'SELECT sum(c.size) FROM version_chunk_refs r JOIN chunks c ON c.pk = r.chunk'), String(Buffer.byteLength(big)), 'the body is stored, in chunks');
      assert.equal(await psql(pg, 'SELECT count(*) FROM version_chunks'), '0', 'nothing in the pre-chunking table');
      assert.deepEqual(await pgChunkKeyIds(pg), ['pg1'], 'every chunk sealed, and named by an HMAC under pg1');
      assert.equal(await psql(pg, `SELECT count(*) FROM chunks WHERE position(convert_to('${marker}', 'UTF8') in data) > 0`), '0', 'no chunk holds the marker');
      assert.equal(await psql(pg, `SELECT count(*) FROM chunks WHERE position(convert_to('"padding"', 'UTF8') in data) > 0`), '0', 'no chunk holds any JSON of the state');
      await s.stop();
    } finally {
      await pg.stop('fast');
    }
  });
});

describe('encryption at rest: S3 multipart, wrong keys, bad key lists', () => {
  test('a 6 MiB state through S3 multipart: the parts and the version are sealed; GetObject and the http door return the exact bytes', async () => {
    const marker = `S3MARK-${randomBytes(6).toString('hex')}`;
    const server = await startAwsServer({ args: ['--encryption-key-file', keyFile(newKey('s3k'))] });
    running.push(server);
    const s3 = s3Client(server);
    await s3.send(new CreateBucketCommand({ Bucket: 'enc-bucket' }));
    // The marker in both parts: one near the start (outputs), one after the padding.
    const body = Buffer.from(stateBody(1, 'L-mp', { outputs: { head: { value: `${marker}-head`, type: 'string' } }, padding: 'p'.repeat(6 * 1024 * 1024), tail: `${marker}-tail` }));
    const [first, second] = [body.subarray(0, 5 * 1024 * 1024), body.subarray(5 * 1024 * 1024)];
    assert.ok(first.includes(`${marker}-head`) && second.includes(`${marker}-tail`));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'enc-bucket', Key: 'mp/terraform.tfstate', ContentType: 'application/json' }));
    const parts = [];
    for (const [i, part] of [first, second].entries()) {
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket: 'enc-bucket', Key: 'mp/terraform.tfstate', UploadId, PartNumber: i + 1, Body: part }));
      assert.equal(ETag, `"${createHash('md5').update(part).digest('hex')}"`, 'a part ETag is the MD5 of the plaintext part');
      parts.push({ PartNumber: i + 1, ETag: ETag! });
    }
    assertAbsent(rawFiles(server.dataDir), marker); // the stored parts, before completion
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'enc-bucket', Key: 'mp/terraform.tfstate', UploadId, MultipartUpload: { Parts: parts } }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'enc-bucket', Key: 'mp/terraform.tfstate' }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
    assert.match(done.ETag!, /^"[0-9a-f]{32}-2"$/);
    assert.equal(got.ETag, `"${createHash('md5').update(body).digest('hex')}"`, 'digests are those of the plaintext');
    const http = await rawRequest(`${server.url}/state/enc-bucket/mp/terraform.tfstate`);
    assert.ok(http.body.equals(body));
    assert.equal(http.headers['content-md5'], createHash('md5').update(body).digest('base64'));
    await server.stop();
    assertAbsent(rawFiles(server.dataDir), marker);
    assert.deepEqual(storedKeyIds(server.dataDir), ['s3k']);
  });

  test('a different key under a known key ID: ENCRYPTION_FAILED naming it, and the server keeps serving', async () => {
    const dir = tempDir();
    let s = await serve(dir, keyFile(newKey('same')));
    assert.equal((await rawRequest(`${s.url}/state/wrong/k`, { method: 'POST', body: stateBody(1, 'L-w') })).status, 200);
    await s.stop();
    s = await serve(dir, keyFile(newKey('same')));
    const res = await rawRequest(`${s.url}/state/wrong/k`);
    assert.equal(res.status, 500);
    assert.equal(res.json<{ error: { code: string } }>().error.code, 'ENCRYPTION_FAILED');
    assert.match(res.text, /key \\"same\\"/);
    assert.equal((await rawRequest(`${s.url}/readyz`)).status, 200);
    assert.equal((await rawRequest(`${s.url}/state/wrong/other`, { method: 'POST', body: stateBody(1, 'L-o') })).status, 200, 'other keys still work');
    await s.stop();
  });

  test('rekey beside a running SQLite server restarted with the new key list first: its writes go on unharmed; a key missing from rekey\'s list stops it, naming the key', async () => {
    const [k1, k2] = [newKey('run1'), newKey('run2')];
    const old = await serve(tempDir(), keyFile(k1));
    for (let i = 1; i <= 12; i++) assert.equal((await rawRequest(`${old.url}/state/beside/k${i % 3}?ID=`, { method: 'POST', body: stateBody(i, `L${i % 3}`) })).status, 200);
    const missing = await runCli(['rekey', '--data', old.dataDir], { env: { STATELOCK_ENCRYPTION_KEY: k2 } });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /encrypted with key "run1"/);
    // The documented order: every server restarted with the new list, then rekey. (A server still on the old list
    // may see a write overtaken by the rekey: the next test.)
    await old.stop();
    const s = await serve(old.dataDir, keyFile(k1, k2));
    let stop = false;
    const statuses: number[] = [];
    const writer = (async () => {
      for (let serial = 100; !stop; serial++) statuses.push((await rawRequest(`${s.url}/state/beside/w`, { method: 'POST', body: stateBody(serial, 'LW') })).status);
    })();
    const rekey = await runCli(['rekey', '--data', s.dataDir], { env: { STATELOCK_ENCRYPTION_KEY: `${k1},${k2}` } });
    stop = true;
    await writer;
    assert.equal(rekey.code, 0, rekey.stderr);
    assert.match(rekey.stdout, /Re-encrypted \d+ of \d+/);
    assert.ok(statuses.length > 0 && statuses.every((st) => st === 200), `writes during the rekey: ${statuses.join(',')}`);
    await s.stop();
    const after = await serve(s.dataDir, keyFile(k1, k2));
    for (const k of ['k0', 'k1', 'k2']) assert.equal((await rawRequest(`${after.url}/state/beside/${k}`)).status, 200);
    assert.equal((await rawRequest(`${after.url}/state/beside/w`)).json<{ serial: number }>().serial, 99 + statuses.length);
    await after.stop();
  });

  test('a write overtaken by a rekey (the server still on the old key list): 503 CHUNK_GONE with Retry-After, nothing stored; the retry is stored whole', async () => {
    const [k1, k2] = [newKey('gone1'), newKey('gone2')];
    const s = await serve(tempDir(), keyFile(k1));
    const template = StateTemplate.ofSize(3 * INGEST_BATCH_BYTES);
    const [v1, v2] = [template.body(1), template.body(2)];
    assert.equal((await rawRequest(`${s.url}/state/gone/k`, { method: 'POST', body: v1 })).status, 200);
    const chunksBefore = chunkRows(s.dataDir).length;
    // v2 differs from v1 in its first chunk only (the serial). Send its first batch and more: the ingest finds its
    // shared chunks stored and stores the new one (a new row, so the test can see the batch was handled).
    const url = new URL(`${s.url}/state/gone/k`);
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': v2.length } });
    const answered = new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], body }));
      });
      req.on('error', reject);
    });
    const split = INGEST_BATCH_BYTES + 512 * 1024;
    req.write(v2.subarray(0, split));
    for (let i = 0; chunkRows(s.dataDir).length === chunksBefore; i++) {
      assert.ok(i < 1000, 'the first batch of the write never reached the store');
      await new Promise((r) => setTimeout(r, 10));
    }
    // A rekey with a newer key re-files every chunk under the new key's ids, those the write found stored included.
    const rekey = await runCli(['rekey', '--data', s.dataDir], { env: { STATELOCK_ENCRYPTION_KEY: `${k1},${k2}` } });
    assert.equal(rekey.code, 0, rekey.stderr);
    req.end(v2.subarray(split));
    const overtaken = await answered;
    assert.equal(overtaken.status, 503, overtaken.body);
    assert.equal(overtaken.retryAfter, '1');
    assert.match(overtaken.body, /"code":"CHUNK_GONE"/);
    assert.match(overtaken.body, /Nothing was stored; retry/);
    const versions = () => rawRequest(`${s.url}/api/v1/versions/gone/k`).then((r) => r.json<{ items: Array<{ serial: number }> }>().items.map((v) => v.serial));
    assert.deepEqual(await versions(), [1], 'nothing was stored');
    // (v1's chunks are sealed with the new key now: this server cannot read v1 until it is restarted with it.)
    // What Terraform does with a 503: send the same write again. It stores the chunks again, under the ids this server knows.
    assert.equal((await rawRequest(`${s.url}/state/gone/k`, { method: 'POST', body: v2 })).status, 200);
    assert.ok((await rawRequest(`${s.url}/state/gone/k`)).body.equals(v2), 'the retry is stored whole');
    assert.deepEqual(await versions(), [1, 2]);
    await s.stop();
    const restarted = await serve(s.dataDir, keyFile(k1, k2));
    // Restarted with the new list, it reads both versions whole: the overtaken write damaged nothing.
    assert.ok((await rawRequest(`${restarted.url}/api/v1/content/gone/k?seq=1`)).body.equals(v1));
    assert.ok((await rawRequest(`${restarted.url}/state/gone/k`)).body.equals(v2));
    await restarted.stop();
  });

  test('a malformed key list is a usage error (exit 2) that names the problem and never echoes key material', async () => {
    const short = randomBytes(16).toString('base64');
    const good = randomBytes(32).toString('base64');
    const cases: Array<{ args: string[]; env?: Record<string, string>; reason: RegExp; secret: string }> = [
      { args: ['--encryption-key-file', keyFile(`short:${short}`)], reason: /: key "short" is 16 bytes after base64 decoding; AES-256 needs 32/, secret: short },
      { args: [], env: { STATELOCK_ENCRYPTION_KEY: good }, reason: /STATELOCK_ENCRYPTION_KEY: entry 1 has no valid key id/, secret: good },
      { args: [], env: { STATELOCK_ENCRYPTION_KEY: `a:${good}, a:${good}` }, reason: /STATELOCK_ENCRYPTION_KEY: key id "a" appears twice/, secret: good },
      { args: ['--encryption-key-file', join(tempDir(), 'absent')], reason: /--encryption-key-file: cannot read/, secret: good },
      { args: ['--encryption-key-file', keyFile(`typo:${good.slice(0, 20)}!${good.slice(21)}`)], reason: /: key "typo" is not base64/, secret: good.slice(0, 20) },
    ];
    for (const c of cases) {
      const r = await runCli(['serve', '--port', '0', '--data', tempDir(), ...c.args], { env: { STATELOCK_ENCRYPTION_KEY: '', ...c.env } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, c.reason);
      assert.ok(!r.stderr.includes(c.secret) && !r.stderr.includes(c.secret.slice(0, 12)), 'no key material in the message');
    }
    const rekey = await runCli(['rekey', '--data', tempDir()], { env: { STATELOCK_ENCRYPTION_KEY: '' } });
    assert.equal(rekey.code, 2);
    assert.match(rekey.stderr, /rekey needs the keys/);
  });
});

describe('statelock rekey on PostgreSQL', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  test('rekey reseals and re-files every chunk under the newest key; the old key can then go', async () => {
    const pg = await startPostgres();
    try {
      const marker = `PGREKEY-${randomBytes(6).toString('hex')}`;
      const [old, next] = [newKey('pg-old'), newKey('pg-new')];
      let s = await startServer({ args: ['--database', pg.url, '--encryption-key-file', keyFile(old)] });
      running.push(s);
      const big = markerState(1, marker).replace('"outputs"', `"padding": "${'y'.repeat(5 * 1024 * 1024)}", "outputs"`);
      assert.equal((await rawRequest(`${s.url}/state/pg/rk?ID=`, { method: 'POST', body: big })).status, 200);
      assert.equal((await rawRequest(`${s.url}/state/pg/rk?ID=`, { method: 'POST', body: markerState(2, marker) })).status, 200);
      assert.deepEqual(await pgChunkKeyIds(pg), ['pg-old']);
      const chunks = await psql(pg, 'SELECT count(*) FROM chunks');
      const rekey = await runCli(['rekey', '--database', pg.url], { env: { STATELOCK_ENCRYPTION_KEY: `${old},${next}` } });
      assert.equal(rekey.code, 0, rekey.stderr);
      assert.match(rekey.stdout, new RegExp(`Re-encrypted ${chunks} of ${chunks} .*"pg-new"`), 'every chunk (no fenced write, no AWS secret here)');
      assert.match((await runCli(['rekey', '--database', pg.url], { env: { STATELOCK_ENCRYPTION_KEY: `${old},${next}` } })).stdout, new RegExp(`Re-encrypted 0 of ${chunks}`), 'idempotent');
      assert.deepEqual(await pgChunkKeyIds(pg), ['pg-new'], 'every chunk resealed and re-filed under pg-new');
      // Beside the running server (still on the old key only): it now lacks the key of every version.
      const missing = await rawRequest(`${s.url}/state/pg/rk`);
    assert.equal(missing.status, 500);
    assert.equal(missing.json<{ error: { code: string } }>().error.code, 'ENCRYPTION_KEY_MISSING');
    assert.match(missing.text, /pg-new/);
      await s.stop();
      s = await startServer({ args: ['--database', pg.url, '--encryption-key-file', keyFile(next)] });
      running.push(s);
      assert.equal((await rawRequest(`${s.url}/state/pg/rk`)).text, markerState(2, marker));
      const token = await adminToken(s);
      assert.equal((await rawRequest(`${s.url}/api/v1/content/pg/rk?seq=1`, { headers: { Authorization: `Bearer ${token}` } })).text, big);
      assert.equal(await psql(pg, `SELECT count(*) FROM chunks WHERE position(convert_to('${marker}', 'UTF8') in data) > 0`), '0');
      assert.equal(await psql(pg, 'SELECT count(*) FROM chunks'), chunks, 'no chunk left behind under an old id');
      await s.stop();
    } finally {
      await pg.stop('fast');
    }
  });
});
