import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  EMPTY_BODY_MD5,
  HttpBackendClient,
  ImportError,
  LockError,
  addressWithLockId,
  checkValidImport,
  contentMd5,
  decodeLockInfoGo,
  formatRfc3339Nano,
  goBase64StdError,
  isGoRfc3339,
  lockInfoString,
  makeEncryptedEnvelope,
  makeState,
  marshalLockInfo,
  newLineage,
  newLockInfo,
  newLockId,
  retryBackoffMs,
  sampleResources,
} from './support/terraform-client.js';
import type { BackendConfig, LockInfo } from './support/terraform-client.js';

const UUID_LAYOUT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FIXED_ID = '3f1c6a2e-9d0b-7c44-e1a8-5b2f0c9d7e61';
const FIXED_CREATED = new Date(Date.UTC(2026, 7, 21, 13, 10, 23, 120));

/* ------------------------------------------------------------------ */
/* pure parts                                                          */
/* ------------------------------------------------------------------ */

test('LockInfo JSON: struct key order, compact, Path always empty', () => {
  const info = newLockInfo({ operation: 'OperationTypeApply', who: 'alice@build-07', version: '1.15.0', id: FIXED_ID, created: FIXED_CREATED });
  assert.equal(
    marshalLockInfo(info).toString(),
    '{"ID":"3f1c6a2e-9d0b-7c44-e1a8-5b2f0c9d7e61","Operation":"OperationTypeApply","Info":"","Who":"alice@build-07","Version":"1.15.0","Created":"2026-08-21T13:10:23.12Z","Path":""}',
  );
  // Go's encoder escapes HTML characters
  const odd = newLockInfo({ operation: 'a<b>&c', who: 'w', version: 'v', id: 'x', created: FIXED_CREATED });
  assert.match(marshalLockInfo(odd).toString(), /"Operation":"a\\u003cb\\u003e\\u0026c"/);
});

test('Created: RFC3339Nano UTC with trailing fractional zeros trimmed', () => {
  assert.equal(formatRfc3339Nano(FIXED_CREATED), '2026-08-21T13:10:23.12Z');
  assert.equal(formatRfc3339Nano(new Date(Date.UTC(2026, 7, 21, 13, 10, 23, 0))), '2026-08-21T13:10:23Z');
  assert.equal(formatRfc3339Nano(new Date(Date.UTC(2026, 7, 21, 13, 10, 23, 5))), '2026-08-21T13:10:23.005Z');
  assert.ok(isGoRfc3339('2026-08-21T13:10:23.123456789Z'));
  assert.ok(isGoRfc3339('2026-08-21T15:10:23+02:00'));
  assert.ok(!isGoRfc3339('2026-08-21 13:10:23Z'));
  assert.ok(!isGoRfc3339('2026-02-30T13:10:23Z'));
  assert.ok(!isGoRfc3339('2026-08-21T13:10:23z'));
  assert.ok(!isGoRfc3339('2026-08-21T13:10:23'));
});

test('lock IDs and lineages: 128-bit lowercase hex in 8-4-4-4-12 layout', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const id = newLockId();
    const lineage = newLineage();
    assert.match(id, UUID_LAYOUT);
    assert.match(lineage, UUID_LAYOUT);
    ids.add(id);
  }
  assert.equal(ids.size, 50);
});

test('Content-MD5 of the empty body', () => {
  // base64(md5("")) = base64(d41d8cd98f00b204e9800998ecf8427e). The protocol reference's
  // '1B2M2Y8AsgTpfCZ7Ml6ysQ==' is a typo: it decodes to d41d8cd98f00b204e97c267b325eb2b1.
  assert.equal(contentMd5(Buffer.alloc(0)), '1B2M2Y8AsgTpgAmY7PhCfg==');
  assert.equal(EMPTY_BODY_MD5, '1B2M2Y8AsgTpgAmY7PhCfg==');
  assert.notEqual(contentMd5(Buffer.alloc(0)), '1B2M2Y8AsgTpfCZ7Ml6ysQ==');
  assert.equal(contentMd5(Buffer.from('{}')), 'mZFLkyvTelC5g8XnyQrpOw==');
});

test('?ID= merged into the address query like url.Values.Encode (sorted, re-encoded, overwritten)', () => {
  assert.equal(addressWithLockId('http://h/state', 'abc'), 'http://h/state?ID=abc');
  assert.equal(addressWithLockId('http://h/state?z=1&a=2&ID=old', 'abc'), 'http://h/state?ID=abc&a=2&z=1');
  assert.equal(addressWithLockId('https://h:8443/s/p?env=prod%20eu&x=%41&flag&b=1+2', 'i'), 'https://h:8443/s/p?ID=i&b=1+2&env=prod+eu&flag=&x=A');
  // repeated keys keep their order; lower-case "id" is a different key
  assert.equal(addressWithLockId('http://h/s?k=2&k=1&id=q', 'I'), 'http://h/s?ID=I&id=q&k=2&k=1');
});

test('CheckValidImport messages', () => {
  const L1 = '11111111-1111-1111-1111-111111111111';
  const L2 = '22222222-2222-2222-2222-222222222222';
  const res = sampleResources();
  const existing = makeState({ serial: 5, lineage: L1, resources: res });
  assert.equal(
    checkValidImport(makeState({ serial: 9, lineage: L2, resources: res }), existing),
    `cannot import state with lineage "${L2}" over unrelated state with lineage "${L1}"`,
  );
  assert.equal(
    checkValidImport(makeState({ serial: 3, lineage: L1, resources: res }), existing),
    'cannot import state with serial 3 over newer state with serial 5',
  );
  assert.equal(
    checkValidImport(makeState({ serial: 5, lineage: L1, resources: [] , outputs: { a: { value: 1, type: 'number' } } }), existing),
    'cannot overwrite existing state with serial 5 with a different state that has the same serial',
  );
  assert.equal(checkValidImport(makeState({ serial: 5, lineage: L1, resources: res }), existing), null);
  assert.equal(checkValidImport(makeState({ serial: 6, lineage: L1 }), existing), null);
  // empty destination / legacy empty lineage / no destination
  assert.equal(checkValidImport(makeState({ serial: 1, lineage: L2 }), makeState({ serial: 40, lineage: L1 })), null);
  assert.equal(checkValidImport(makeState({ serial: 1, lineage: '' }), existing), null);
  assert.equal(checkValidImport(makeState({ serial: 1, lineage: L2 }), null), null);
});

test('lock info decoding follows Go encoding/json', () => {
  const info = decodeLockInfoGo(Buffer.from('{"id":"abc","OPERATION":"x","who":"w","created":"2026-08-21T13:10:23.5Z","extra":{"n":1}}'));
  assert.equal(info.ID, 'abc');
  assert.equal(info.Operation, 'x');
  assert.equal(info.Who, 'w');
  assert.equal(info.Created, '2026-08-21T13:10:23.5Z');
  assert.equal(decodeLockInfoGo(Buffer.from('{"ID":"a","Created":null}')).Created, '0001-01-01T00:00:00Z');
  assert.equal(decodeLockInfoGo(Buffer.from('null')).ID, '');
  assert.throws(() => decodeLockInfoGo(Buffer.from('{"ID":"a","Created":"yesterday"}')));
  assert.throws(() => decodeLockInfoGo(Buffer.from('{"ID":7}')));
  assert.throws(() => decodeLockInfoGo(Buffer.from('[]')));
  assert.throws(() => decodeLockInfoGo(Buffer.from('')));
  assert.throws(() => decodeLockInfoGo(Buffer.from('{"lock":{"ID":"nested"}} trailing')));
});

test('Go base64 validation of Content-MD5', () => {
  assert.equal(goBase64StdError(EMPTY_BODY_MD5), null);
  assert.equal(goBase64StdError('1B2M2Y8AsgTpfCZ7Ml6ysQ'), 'illegal base64 data at input byte 20');
  assert.equal(goBase64StdError('not base64!'), 'illegal base64 data at input byte 3');
  assert.equal(goBase64StdError('ab=c'), 'illegal base64 data at input byte 2');
});

test('state files: Terraform indented, OpenTofu compact, encrypted envelope', () => {
  const lineage = '5b0e7c1a-22f4-8d93-0a6e-c1d2e3f40516';
  assert.equal(
    makeState({ serial: 1, lineage }).toString(),
    `{\n  "version": 4,\n  "terraform_version": "1.15.0",\n  "serial": 1,\n  "lineage": "${lineage}",\n  "outputs": {},\n  "resources": [],\n  "check_results": null\n}\n`,
  );
  assert.equal(
    makeState({ serial: 2, lineage, flavor: 'opentofu' }).toString(),
    `{"version":4,"terraform_version":"1.10.3","serial":2,"lineage":"${lineage}","outputs":{},"resources":[],"check_results":null}\n`,
  );
  const full = JSON.parse(makeState({ serial: 3, lineage, resources: sampleResources() }).toString());
  assert.deepEqual(
    full.resources.map((r: { module?: string; type: string; name: string }) => `${r.module ? r.module + '.' : ''}${r.type}.${r.name}`),
    ['aws_s3_bucket.lesson17', 'aws_s3_object.marker', 'random_id.suffix', 'module.net.aws_vpc.main'],
  );
  assert.deepEqual(full.resources[1].instances.map((i: { index_key: unknown }) => i.index_key), [0, 1]);
  assert.equal(full.resources[3].instances[0].index_key, 'primary');
  const env = makeEncryptedEnvelope({ serial: 4, lineage });
  const parsed = JSON.parse(env.toString());
  assert.deepEqual(Object.keys(parsed), ['serial', 'lineage', 'meta', 'encrypted_data', 'encryption_version']);
  assert.equal(parsed.encryption_version, 'v0');
  assert.deepEqual(Object.keys(parsed.meta), ['key_provider.pbkdf2.main']);
  assert.ok(!env.toString().includes('\n'));
});

test('retryablehttp backoff', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((i) => retryBackoffMs(1000, 30000, i)), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(retryBackoffMs(1000, 30000, 0, 503, '7'), 7000);
  assert.equal(retryBackoffMs(1000, 30000, 0, 429, '0'), 0);
  assert.equal(retryBackoffMs(1000, 30000, 1, 500, '7'), 2000);
  assert.equal(retryBackoffMs(1000, 30000, 1, 503, '-1'), 2000);
});

test('Lock Info block rendering', () => {
  const info: LockInfo = { ID: 'i', Path: '', Operation: 'OperationTypePlan', Who: 'a@b', Version: '1.15.0', Created: '2026-08-21T13:10:23.12345Z', Info: '' };
  assert.equal(
    lockInfoString(info),
    'Lock Info:\n  ID:        i\n  Path:      \n  Operation: OperationTypePlan\n  Who:       a@b\n  Version:   1.15.0\n  Created:   2026-08-21 13:10:23.12345 +0000 UTC\n  Info:      \n',
  );
});

/* ------------------------------------------------------------------ */
/* wire tests against a throwaway recording server                      */
/* ------------------------------------------------------------------ */

interface Rec {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}
type Handler = (req: Rec, res: ServerResponse, n: number) => void;

async function startServer(handler: Handler): Promise<{ base: string; recs: Rec[]; close: () => Promise<void> }> {
  const recs: Rec[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: Rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
      recs.push(rec);
      handler(rec, res, recs.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    recs,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A minimal well-behaved state server (state at /state, lock at /lock). */
function memoryBackend(): Handler {
  let state: Buffer | null = null;
  let lock: Buffer | null = null;
  let lockId = '';
  return (req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/state' && req.method === 'GET') {
      if (state === null) res.writeHead(404).end();
      else res.writeHead(200, { 'Content-Type': 'application/json', 'Content-MD5': contentMd5(state) }).end(state);
      return;
    }
    if (u.pathname === '/state' && req.method === 'POST') {
      if (lock !== null && u.searchParams.get('ID') !== lockId) {
        res.writeHead(409).end();
        return;
      }
      state = req.body;
      res.writeHead(200).end();
      return;
    }
    if (u.pathname === '/lock' && req.method === 'LOCK') {
      const info = JSON.parse(req.body.toString()) as LockInfo;
      if (lock !== null && lockId !== info.ID) {
        res.writeHead(423, { 'Content-Type': 'application/json' }).end(lock);
        return;
      }
      lock = req.body;
      lockId = info.ID;
      res.writeHead(200).end();
      return;
    }
    if (u.pathname === '/lock' && req.method === 'UNLOCK') {
      if (req.body.length > 0 && lock !== null && (JSON.parse(req.body.toString()) as LockInfo).ID !== lockId) {
        res.writeHead(409).end();
        return;
      }
      lock = null;
      lockId = '';
      res.writeHead(200).end();
      return;
    }
    res.writeHead(400).end();
  };
}

function cfg(base: string, extra: Partial<BackendConfig> = {}): BackendConfig {
  return { address: `${base}/state`, lockAddress: `${base}/lock`, unlockAddress: `${base}/lock`, retryWaitMinMs: 10, retryWaitMaxMs: 50, ...extra };
}

function headerNames(raw: string[]): string[] {
  return raw.filter((_, i) => i % 2 === 0);
}

test('terraform: LOCK, write with ?ID=, UNLOCK with the identical body; Go header order', async () => {
  const srv = await startServer((_req, res) => res.writeHead(200).end());
  try {
    const c = new HttpBackendClient(cfg(srv.base, { address: `${srv.base}/state?env=prod&ID=stale`, username: 'u', password: 'p' }), { who: 'alice@build-07' });
    const id = await c.lock('OperationTypeApply', { id: FIXED_ID, created: FIXED_CREATED });
    assert.equal(id, FIXED_ID);
    const lock = srv.recs[0]!;
    assert.equal(lock.method, 'LOCK');
    assert.equal(lock.url, '/lock');
    assert.equal(
      lock.body.toString(),
      `{"ID":"${FIXED_ID}","Operation":"OperationTypeApply","Info":"","Who":"alice@build-07","Version":"1.15.0","Created":"2026-08-21T13:10:23.12Z","Path":""}`,
    );
    assert.deepEqual(headerNames(lock.rawHeaders), ['Host', 'User-Agent', 'Content-Length', 'Authorization', 'Content-Md5', 'Content-Type', 'Accept-Encoding']);
    assert.equal(lock.headers['user-agent'], 'Go-http-client/1.1');
    assert.equal(lock.headers['accept-encoding'], 'gzip');
    assert.equal(lock.headers['authorization'], 'Basic ' + Buffer.from('u:p').toString('base64'));
    assert.equal(lock.headers['content-type'], 'application/json');
    assert.equal(lock.headers['content-md5'], contentMd5(lock.body));
    assert.equal(lock.headers['content-length'], String(lock.body.length));
    assert.equal(lock.headers['connection'], undefined);

    const state = makeState({ serial: 1, lineage: newLineage() });
    await c.write(state);
    const w = srv.recs[1]!;
    assert.equal(w.method, 'POST');
    assert.equal(w.url, `/state?ID=${FIXED_ID}&env=prod`);
    assert.ok(w.body.equals(state));
    assert.equal(w.headers['content-md5'], contentMd5(state));

    await c.unlock('ignored-by-terraform');
    const u = srv.recs[2]!;
    assert.equal(u.method, 'UNLOCK');
    assert.ok(u.body.equals(lock.body));
    assert.equal(u.headers['content-md5'], lock.headers['content-md5']);

    // quirk: the remembered lock ID survives the unlock
    await c.write(state);
    assert.equal(srv.recs[3]!.url, `/state?ID=${FIXED_ID}&env=prod`);
    assert.equal(c.log.length, 4);
    assert.equal(c.log[1]!.url, `${srv.base}/state?ID=${FIXED_ID}&env=prod`);

    // GET and DELETE carry no body and no framing headers
    await c.get();
    await c.delete();
    for (const r of srv.recs.slice(4)) {
      assert.equal(r.headers['content-length'], undefined);
      assert.equal(r.headers['transfer-encoding'], undefined);
      assert.equal(r.headers['content-type'], undefined);
    }
    c.close();
  } finally {
    await srv.close();
  }
});

test('terraform force-unlock: GET, then UNLOCK with an empty body that still has JSON/MD5 headers', async () => {
  const srv = await startServer((_req, res) => res.writeHead(_req.method === 'GET' ? 404 : 200).end());
  try {
    const c = new HttpBackendClient(cfg(srv.base));
    await c.forceUnlock('3f1c6a2e-0000-0000-0000-000000000000');
    assert.deepEqual(srv.recs.map((r) => r.method), ['GET', 'UNLOCK']);
    const u = srv.recs[1]!;
    assert.equal(u.body.length, 0);
    assert.equal(u.headers['content-type'], 'application/json');
    assert.equal(u.headers['content-md5'], EMPTY_BODY_MD5);
    // Go sends a non-nil zero-length body with unknown length => chunked for UNLOCK/POST
    assert.equal(u.headers['transfer-encoding'], 'chunked');
    assert.equal(u.headers['content-length'], undefined);
    assert.equal(c.log.length, 2, 'flow requests are mirrored into the parent log');

    // with unlock_method=DELETE Go probes the empty body and drops it: no framing headers at all
    const d = new HttpBackendClient(cfg(srv.base, { unlockMethod: 'DELETE' }));
    await d.forceUnlock('x');
    const del = srv.recs[3]!;
    assert.equal(del.method, 'DELETE');
    assert.equal(del.headers['transfer-encoding'], undefined);
    assert.equal(del.headers['content-length'], undefined);
    assert.equal(del.headers['content-md5'], EMPTY_BODY_MD5);
  } finally {
    await srv.close();
  }
});

test('opentofu: custom headers, UNLOCK body carries the ID, force-unlock sends zero-valued info without a GET', async () => {
  const srv = await startServer((_req, res) => res.writeHead(200).end());
  try {
    const config = cfg(srv.base, { headers: { 'x-api-key': 'k1', Authorization: 'Bearer tok' } });
    const c = new HttpBackendClient(config, { flavor: 'opentofu', who: 'bob@ci' });
    const id = await c.lock('OperationTypePlan', { created: FIXED_CREATED });
    const lock = srv.recs[0]!;
    assert.equal(JSON.parse(lock.body.toString()).Version, '1.10.3');
    assert.equal(lock.headers['x-api-key'], 'k1');
    assert.equal(lock.headers['authorization'], 'Bearer tok');
    assert.deepEqual(headerNames(lock.rawHeaders), ['Host', 'User-Agent', 'Content-Length', 'Authorization', 'Content-Md5', 'Content-Type', 'X-Api-Key', 'Accept-Encoding']);

    await assert.rejects(c.unlock('some-other-id'), (e: unknown) => {
      assert.ok(e instanceof LockError);
      assert.equal(e.message, 'lock id "some-other-id" does not match existing lock');
      assert.equal(e.holder?.ID, id);
      return true;
    });
    assert.equal(srv.recs.length, 1, 'mismatch is detected client-side');

    await c.unlock(id);
    assert.ok(srv.recs[1]!.body.equals(lock.body));

    const f = new HttpBackendClient(config, { flavor: 'opentofu' });
    await f.forceUnlock('dead-beef');
    assert.equal(srv.recs.length, 3, 'no GET before a tofu force-unlock');
    const fu = srv.recs[2]!;
    assert.equal(fu.method, 'UNLOCK');
    assert.equal(fu.body.toString(), '{"ID":"dead-beef","Operation":"","Info":"","Who":"","Version":"","Created":"0001-01-01T00:00:00Z","Path":""}');
    assert.equal(fu.headers['content-md5'], contentMd5(fu.body));

    // GET: no Content-Type / Content-MD5 (bodyless), custom headers still present
    await c.get();
    assert.equal(srv.recs[3]!.headers['content-type'], undefined);
    assert.equal(srv.recs[3]!.headers['x-api-key'], 'k1');

    assert.throws(() => new HttpBackendClient(cfg(srv.base, { headers: { 'Content-Type': 'x' } }), { flavor: 'opentofu' }), /headers "Content-Type" is reserved/);
    assert.throws(
      () => new HttpBackendClient(cfg(srv.base, { username: 'u', headers: { Authorization: 'x' } }), { flavor: 'opentofu' }),
      /cannot be set when providing username/,
    );
  } finally {
    await srv.close();
  }
});

test('409/423: LockError with the holder info (terraform >= 1.15 and opentofu rules)', async () => {
  const holder = '{"id":"holder-1","Operation":"OperationTypeApply","Info":"","Who":"carol@laptop","Version":"1.15.2","Created":"2026-08-21T13:10:23.123456789Z","Path":""}';
  let reply = holder;
  const srv = await startServer((_req, res) => res.writeHead(423, { 'Content-Type': 'application/json' }).end(reply));
  try {
    const tf = new HttpBackendClient(cfg(srv.base));
    await assert.rejects(tf.lock('OperationTypePlan'), (e: unknown) => {
      assert.ok(e instanceof LockError);
      assert.equal(e.message, 'HTTP remote state already locked: ID=holder-1');
      assert.equal(e.holder?.Who, 'carol@laptop');
      assert.equal(e.holder?.Created, '2026-08-21T13:10:23.123456789Z');
      assert.ok(e.retryable);
      return true;
    });
    assert.equal(tf.lockId, '');

    reply = '{"ID":"holder-1","Created":"21 Aug 2026"}';
    await assert.rejects(tf.lock('OperationTypePlan'), (e: unknown) => {
      assert.ok(e instanceof LockError);
      assert.equal(e.message, 'HTTP remote state already locked, failed to unmarshal body');
      assert.equal(e.holder, undefined);
      assert.ok(!e.retryable);
      return true;
    });

    const ot = new HttpBackendClient(cfg(srv.base), { flavor: 'opentofu' });
    await assert.rejects(ot.lock('OperationTypePlan', { id: FIXED_ID }), (e: unknown) => {
      assert.ok(e instanceof LockError);
      assert.equal(e.message, 'HTTP remote state already locked, failed to unmarshal body');
      assert.equal(e.holder?.ID, FIXED_ID, "tofu attaches the requester's own info");
      return true;
    });
  } finally {
    await srv.close();
  }
});

test('-lock-timeout: identical LOCK bodies, 1s/2s/… scaled delays, non-retryable errors stop at once', async () => {
  const holder = '{"ID":"holder-1","Operation":"OperationTypeApply","Info":"","Who":"carol@laptop","Version":"1.15.2","Created":"2026-08-21T13:10:23Z","Path":""}';
  let grantAt = 3;
  const srv = await startServer((_req, res, n) => {
    if (n >= grantAt) res.writeHead(200).end();
    else res.writeHead(423).end(holder);
  });
  try {
    const c = new HttpBackendClient(cfg(srv.base));
    const t0 = Date.now();
    const id = await c.lockWithTimeout('OperationTypeApply', 5000, { backoffScaleMs: 20 });
    const elapsed = Date.now() - t0;
    assert.equal(srv.recs.length, 3);
    assert.ok(srv.recs.every((r) => r.body.equals(srv.recs[0]!.body)), 'same ID and Created on every retry');
    assert.equal(JSON.parse(srv.recs[0]!.body.toString()).ID, id);
    assert.ok(elapsed >= 55, `waited 20ms + 40ms, got ${elapsed}ms`);

    // timeout expires: the last LockError is thrown
    grantAt = Infinity;
    const before = srv.recs.length;
    // 300 ms: tries at about 0, 20, 60 and 140 ms (100 ms gave a third try only when two round trips took under ~40 ms)
    await assert.rejects(c.lockWithTimeout('OperationTypeApply', 300, { backoffScaleMs: 20 }), /HTTP remote state already locked: ID=holder-1/);
    assert.ok(srv.recs.length - before >= 3);

    // timeout 0: exactly one attempt
    const before0 = srv.recs.length;
    await assert.rejects(c.lockWithTimeout('OperationTypeApply', 0), LockError);
    assert.equal(srv.recs.length - before0, 1);
  } finally {
    await srv.close();
  }
});

test('retries: 5xx (not 501) and 429 retried with backoff, then "giving up"', async () => {
  let plan: number[] = [];
  const srv = await startServer((req, res, n) => {
    const code = plan[n - 1] ?? 200;
    if (code === 200 && req.method === 'GET') res.writeHead(200, { 'Content-MD5': contentMd5(Buffer.from('{"version":4}')) }).end('{"version":4}');
    else if (code === 429) res.writeHead(429, { 'Retry-After': '0' }).end();
    else res.writeHead(code).end();
  });
  try {
    plan = [503, 503, 200];
    const c = new HttpBackendClient(cfg(srv.base, { retryWaitMinMs: 10 }));
    const got = await c.get();
    assert.equal(got?.toString(), '{"version":4}');
    assert.equal(srv.recs.length, 3);
    assert.deepEqual(c.log.map((r) => [r.status, r.attempt]), [[503, 1], [503, 2], [200, 3]]);
    assert.equal(c.lastResponse?.status, 200);
    assert.equal(c.lastResponse?.headers['content-md5'], contentMd5(Buffer.from('{"version":4}')));

    srv.recs.length = 0;
    plan = [503, 500, 502];
    await assert.rejects(c.get(), { message: `Failed to get state: GET ${srv.base}/state giving up after 3 attempt(s)` });

    srv.recs.length = 0;
    plan = [501];
    await assert.rejects(c.get(), { message: 'Unexpected HTTP response code 501' });
    assert.equal(srv.recs.length, 1);

    srv.recs.length = 0;
    plan = [429, 200];
    assert.notEqual(await c.get(), null);
    assert.equal(srv.recs.length, 2);

    srv.recs.length = 0;
    plan = [500, 500, 500, 500];
    await c.lock('OperationTypeApply').catch(() => undefined);
    assert.equal(srv.recs.length, 3);
    srv.recs.length = 0;
    const one = new HttpBackendClient(cfg(srv.base, { retryMax: 0 }));
    await assert.rejects(one.write('{}'), { message: `Failed to upload state: POST ${srv.base}/state giving up after 1 attempt(s)` });

    srv.recs.length = 0;
    plan = [409];
    await assert.rejects(c.write('{}'), { message: 'HTTP error: 409' });
  } finally {
    await srv.close();
  }
});

test('GET status handling and Content-MD5 validation', async () => {
  let mode = '';
  const srv = await startServer((_req, res) => {
    if (mode === '204') res.writeHead(204).end();
    else if (mode === 'empty') res.writeHead(200).end();
    else if (mode === '401') res.writeHead(401).end();
    else if (mode === '403') res.writeHead(403).end();
    else if (mode === '423') res.writeHead(423).end();
    else if (mode === 'badmd5') res.writeHead(200, { 'Content-MD5': 'zz' }).end('{"version":4}');
    else if (mode === 'gzip') res.writeHead(200, { 'Content-Encoding': 'gzip' }).end(gzipSync('{"version":4}'));
    else if (mode === 'badgzip') res.writeHead(200, { 'Content-Encoding': 'gzip' }).end('{"version":4}');
  });
  try {
    const c = new HttpBackendClient(cfg(srv.base));
    mode = '204';
    assert.equal(await c.get(), null);
    mode = 'empty';
    assert.equal(await c.get(), null);
    mode = '401';
    await assert.rejects(c.get(), { message: 'HTTP remote state endpoint requires auth' });
    mode = '403';
    await assert.rejects(c.get(), { message: 'HTTP remote state endpoint invalid auth' });
    mode = '423';
    await assert.rejects(c.get(), { message: 'Unexpected HTTP response code 423' });
    mode = 'badmd5';
    await assert.rejects(c.get(), { message: "Failed to decode Content-MD5 'zz': illegal base64 data at input byte 0" });
    mode = 'gzip';
    assert.equal((await c.get())?.toString(), '{"version":4}');
    mode = 'badgzip';
    await assert.rejects(c.get(), { message: 'Failed to read remote state: gzip: invalid header' });
  } finally {
    await srv.close();
  }
});

test('transport errors are retried and reported with the cause', async () => {
  const srv = await startServer((_req, res) => res.end());
  const base = srv.base;
  await srv.close();
  const c = new HttpBackendClient(cfg(base, { retryWaitMinMs: 5 }));
  await assert.rejects(c.get(), (e: unknown) => {
    assert.match((e as Error).message, new RegExp(`^Failed to get state: GET ${base}/state giving up after 3 attempt\\(s\\): Get "${base}/state": dial tcp .*connection refused$`));
    return true;
  });
  assert.equal(c.log.length, 3);
  assert.ok(c.log.every((r) => r.status === 0 && r.error !== undefined));
});

test('a 302 answer to LOCK is followed as a GET, and a 200 there counts as locked (Go redirect rules)', async () => {
  const srv = await startServer((req, res) => {
    if (req.method === 'LOCK') res.writeHead(302, { Location: '/elsewhere' }).end();
    else res.writeHead(200).end();
  });
  try {
    const c = new HttpBackendClient(cfg(srv.base));
    const id = await c.lock('OperationTypeApply');
    assert.notEqual(id, '');
    assert.deepEqual(srv.recs.map((r) => `${r.method} ${r.url}`), ['LOCK /lock', 'GET /elsewhere']);
    assert.equal(srv.recs[1]!.body.length, 0);
    assert.equal(srv.recs[1]!.headers['referer'], `${srv.base}/lock`);
  } finally {
    await srv.close();
  }
});

test('CLI flows: request sequences, serial/lineage stamping, state push checks', async () => {
  const srv = await startServer(memoryBackend());
  const seq = (from: number) => srv.recs.slice(from).map((r) => r.method);
  try {
    const c = new HttpBackendClient(cfg(srv.base), { who: 'alice@build-07' });

    let mark = srv.recs.length;
    const init = await c.init();
    assert.equal(init.remote, null);
    assert.deepEqual(seq(mark), ['GET', 'GET']);

    mark = srv.recs.length;
    await c.plan();
    assert.deepEqual(seq(mark), ['GET', 'LOCK', 'GET', 'UNLOCK']);
    assert.equal(JSON.parse(srv.recs[mark + 1]!.body.toString()).Operation, 'OperationTypePlan');

    // first apply into an empty remote: re-GET, then new lineage and serial 1
    mark = srv.recs.length;
    const a1 = await c.apply([makeState({ serial: 99, lineage: 'ignored', resources: sampleResources() })]);
    assert.deepEqual(seq(mark), ['GET', 'LOCK', 'GET', 'GET', 'POST', 'UNLOCK']);
    const s1 = JSON.parse(a1.uploads[0]!.toString());
    assert.equal(s1.serial, 1);
    assert.match(s1.lineage, UUID_LAYOUT);
    assert.equal(srv.recs[mark + 4]!.url, `/state?ID=${a1.lockId}`);

    // second apply: an intermediate and a final snapshot, then an unchanged one (skipped)
    mark = srv.recs.length;
    const more = makeState({ serial: 0, lineage: '', resources: sampleResources(), outputs: { bucket: { value: 'lesson17-ab5c3665', type: 'string' } } });
    const a2 = await c.apply([makeState({ serial: 0, lineage: '', resources: [] }), more, more]);
    assert.deepEqual(seq(mark), ['GET', 'LOCK', 'GET', 'POST', 'POST', 'UNLOCK']);
    assert.deepEqual(a2.uploads.map((b) => JSON.parse(b.toString()).serial), [2, 3]);
    assert.ok(a2.uploads.every((b) => JSON.parse(b.toString()).lineage === s1.lineage));

    // state push of an unrelated lineage without -force: refused after unlocking, nothing written
    mark = srv.recs.length;
    const foreign = makeState({ serial: 7, lineage: newLineage(), resources: sampleResources() });
    await assert.rejects(c.statePush(foreign), (e: unknown) => {
      assert.ok(e instanceof ImportError);
      assert.match(e.message, /^Failed to write state: cannot import state with lineage "[0-9a-f-]+" over unrelated state with lineage "/);
      return true;
    });
    assert.deepEqual(seq(mark), ['GET', 'LOCK', 'GET', 'UNLOCK']);
    assert.equal(JSON.parse(srv.recs[mark + 1]!.body.toString()).Operation, 'state-push');

    // with -force: file lineage, file serial + 1 (the server cannot tell a forced push)
    mark = srv.recs.length;
    const pushed = await c.statePush(foreign, { force: true });
    const p1 = JSON.parse(pushed.uploads[0]!.toString());
    assert.equal(p1.lineage, JSON.parse(foreign.toString()).lineage);
    assert.equal(p1.serial, 8);

    // migration into the non-empty destination: source lineage, source serial + 1
    mark = srv.recs.length;
    const src = makeState({ serial: 2, lineage: newLineage(), resources: sampleResources() });
    const m = await c.migrateInto(src);
    assert.deepEqual(seq(mark), ['GET', 'GET', 'LOCK', 'GET', 'POST', 'UNLOCK']);
    assert.equal(JSON.parse(srv.recs[mark + 2]!.body.toString()).Operation, 'migration destination state');
    assert.equal(JSON.parse(m.uploads[0]!.toString()).serial, 3);

    // opentofu: no GET at state-manager creation, compact upload
    mark = srv.recs.length;
    const ot = new HttpBackendClient(cfg(srv.base), { flavor: 'opentofu' });
    const o = await ot.apply([makeState({ serial: 0, lineage: '', resources: [] , flavor: 'opentofu' })]);
    assert.deepEqual(seq(mark), ['LOCK', 'GET', 'POST', 'UNLOCK']);
    assert.ok(!o.uploads[0]!.toString().includes('\n  '));
    assert.equal(JSON.parse(o.uploads[0]!.toString()).serial, 4);

    // force-unlock of a lock held by another process
    const holderProc = c.newProcess();
    await holderProc.lock('OperationTypeApply');
    await assert.rejects(c.plan(), /HTTP remote state already locked: ID=/);
    await c.forceUnlock(holderProc.lockId);
    await c.plan();
  } finally {
    await srv.close();
  }
});

test('migration into an empty destination re-GETs and starts a new lineage at serial 1; equal states are skipped', async () => {
  const srv = await startServer(memoryBackend());
  const seq = (from: number) => srv.recs.slice(from).map((r) => r.method);
  try {
    const c = new HttpBackendClient(cfg(srv.base));
    const src = makeState({ serial: 41, lineage: newLineage(), resources: sampleResources() });
    const m = await c.migrateInto(src);
    assert.deepEqual(seq(0), ['GET', 'GET', 'LOCK', 'GET', 'GET', 'POST', 'UNLOCK']);
    const up = JSON.parse(m.uploads[0]!.toString());
    assert.equal(up.serial, 1);
    assert.notEqual(up.lineage, JSON.parse(src.toString()).lineage);

    // same content and same lineage as the destination: nothing but the two GETs
    let mark = srv.recs.length;
    await c.migrateInto(m.uploads[0]!);
    assert.deepEqual(seq(mark), ['GET', 'GET']);

    // an empty source sends nothing at all
    mark = srv.recs.length;
    await c.migrateInto(makeState({ serial: 3, lineage: newLineage() }));
    assert.equal(srv.recs.length, mark);

    // state push into an empty remote behaves the same way (new lineage, serial 1)
    const srv2 = await startServer(memoryBackend());
    try {
      const c2 = new HttpBackendClient(cfg(srv2.base));
      const pushed = await c2.statePush(src);
      assert.deepEqual(srv2.recs.map((r) => r.method), ['GET', 'LOCK', 'GET', 'GET', 'POST', 'UNLOCK']);
      assert.equal(JSON.parse(pushed.uploads[0]!.toString()).serial, 1);
    } finally {
      await srv2.close();
    }
  } finally {
    await srv.close();
  }
});
