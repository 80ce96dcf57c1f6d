import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Keyring, keyIdOf, parseEncryptionKeys } from '../src/store/encryption.js';
import { StatelockError } from '../src/server/errors.js';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { runCli } from './support/cli.js';
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

/** The key ids the stored version bodies are sealed with (null: plaintext), read from the SQLite file itself. */
function storedKeyIds(dir: string): Array<string | null> {
  const db = new Database(join(dir, 'statelock.db'), { readonly: true });
  try {
    return (db.prepare('SELECT body FROM versions ORDER BY id').all() as Array<{ body: Buffer }>).map((r) => keyIdOf(r.body));
  } finally {
    db.close();
  }
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
    assert.deepEqual(storedKeyIds(dir), ['k1', 'k1']);
  });

  test('a second key: old versions stay readable, new writes use the newest; rekey re-seals; the old key can then go', async () => {
    let s = await serve(dir, keyFile(k1, k2));
    assert.equal((await rawRequest(`${s.url}/api/v1/content/${key}?seq=1`, { headers: { Authorization: `Bearer ${await adminToken(s)}` } })).text, markerState(1, marker));
    await s.stop();
    assert.deepEqual(storedKeyIds(dir), ['k1', 'k1']);
    const rekey = await runCli(['rekey', '--data', dir, '--encryption-key-file', keyFile(k1, k2)]);
    assert.equal(rekey.code, 0, rekey.stderr);
    assert.match(rekey.stdout, /Re-encrypted 4 of 4 stored bodies and secrets with key "k2"/); // 2 versions, 1 fenced write, 1 AWS secret
    assert.deepEqual(storedKeyIds(dir), ['k2', 'k2']);
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
    assert.ok(rawFiles(plainDir).includes(Buffer.from(plainMarker)), 'stored in the clear before');
    s = await serve(plainDir, keyFile(k1));
    assert.equal((await rawRequest(`${s.url}/state/plain/k`)).text, markerState(1, plainMarker));
    await s.stop();
    const rekey = await runCli(['rekey', '--data', plainDir, '--encryption-key-file', keyFile(k1)]);
    assert.equal(rekey.code, 0, rekey.stderr);
    assertAbsent(rawFiles(plainDir), plainMarker);
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
      assert.ok(Number(await psql(pg, 'SELECT sum(length(data)) FROM version_chunks')) > 5 * 1024 * 1024, 'the body is stored, in chunks');
      assert.equal(await psql(pg, `SELECT count(*) FROM version_chunks WHERE position(convert_to('${marker}', 'UTF8') in data) > 0`), '0', 'no chunk holds the marker');
      assert.equal(await psql(pg, `SELECT count(*) FROM version_chunks WHERE position(convert_to('"padding"', 'UTF8') in data) > 0`), '0', 'no chunk holds any JSON of the state');
      await s.stop();
    } finally {
      await pg.stop('fast');
    }
  });
});
