import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { after, before, test } from 'node:test';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { REGION, startAwsServer, TEST_KEY, type AwsServer } from '../support/aws.js';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { rng } from '../support/rng.js';

/**
 * A seeded fuzzer over every door of one real server (http backend, JSON API, S3, DynamoDB, STS, ops),
 * with SigV4 checked. Known data is set up first with valid requests; the fuzz never sends a valid
 * mutation to a known key, so afterwards every known state, lock, version list and audit trail must be
 * exactly as before, no answer may be a 5xx, and the server must still be up and ready.
 *
 * Replay: STATELOCK_FUZZ_SEED=<seed> [STATELOCK_FUZZ_COUNT=<n>].
 */

const SEED = process.env['STATELOCK_FUZZ_SEED'] ? Number(process.env['STATELOCK_FUZZ_SEED']) >>> 0 : randomBytes(4).readUInt32LE(0);
const COUNT = process.env['STATELOCK_FUZZ_COUNT'] ? Number(process.env['STATELOCK_FUZZ_COUNT']) : 10_000;
const CONCURRENCY = 16;
const KNOWN = ['fuzz-known/a', 'fuzz-known/b', 'fuzz-known/c'];
const KNOWN_LOCK_ID = '6f1a2b3c-0000-4000-8000-00000000f022';

interface FuzzRequest {
  gen: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** A Content-Length larger than the body: sent on its own connection, aborted after 1 s without answer. */
  truncated?: boolean;
}

type Outcome = { kind: 'status'; status: number; body: Buffer } | { kind: 'aborted' } | { kind: 'timeout' } | { kind: 'error'; code: string };

interface Snapshot {
  state: { status: number; md5: string };
  lock: { status: number; body: string };
  versions: number;
  audit: string[];
}

let server: AwsServer;
let host = '127.0.0.1';
let port = 0;
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const setupAudit = new Map<string, string[]>();
const snapshots = new Map<string, Snapshot>();

const u = (path: string) => `${server.url}${path}`;

async function snapshot(key: string): Promise<Snapshot> {
  const st = await rawRequest(u(`/state/${key}`));
  const lk = await rawRequest(u(`/api/v1/locks/${key}`));
  const vs = await rawRequest(u(`/api/v1/versions/${key}?limit=1000`));
  const au = await rawRequest(u(`/api/v1/audit?key=${encodeURIComponent(key)}&limit=1000`));
  assert.equal(au.status, 200, au.text);
  const items = au.json<{ items: Array<Record<string, unknown>> }>().items.filter((e) => e['key'] === key);
  return {
    state: { status: st.status, md5: createHash('md5').update(st.body).digest('hex') },
    // Without the fields that change with the clock alone.
    lock: { status: lk.status, body: lk.text.replace(/"(ageSeconds|lastActivitySeconds|idleSeconds)":\d+/g, '"$1":_') },
    versions: vs.status === 200 ? vs.json<{ items: unknown[] }>().items.length : -vs.status,
    audit: items.map((e) => JSON.stringify(e)),
  };
}

function send(r: FuzzRequest): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (abortTimer) clearTimeout(abortTimer);
      resolve(o);
    };
    const headers: OutgoingHttpHeaders = { ...r.headers };
    if (r.truncated) {
      headers['Content-Length'] = String(r.body.length + 1 + Math.floor(r.body.length / 2) + 10);
      headers['Connection'] = 'close';
    } else if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) {
      headers['Content-Length'] = String(r.body.length);
    }
    let req: ReturnType<typeof httpRequest>;
    try {
      req = httpRequest({ host, port, method: r.method, path: r.path, headers, agent: r.truncated ? false : agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < 4096) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => finish({ kind: 'status', status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', () => finish({ kind: 'status', status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      });
    } catch (err) {
      // Node refused to send it (e.g. an invalid header value): not the server's business.
      resolve({ kind: 'error', code: `client:${(err as NodeJS.ErrnoException).code ?? 'ERR'}` });
      return;
    }
    const timer = setTimeout(() => {
      req.destroy();
      finish({ kind: 'timeout' });
    }, 5_000);
    let abortTimer: NodeJS.Timeout | null = null;
    req.on('error', (err: NodeJS.ErrnoException) => finish(r.truncated ? { kind: 'aborted' } : { kind: 'error', code: err.code ?? err.message }));
    if (r.truncated) {
      req.write(r.body);
      abortTimer = setTimeout(() => {
        req.destroy();
        finish({ kind: 'aborted' });
      }, 1_000);
    } else {
      req.end(r.body);
    }
  });
}

/* ------------------------------------------------------------------ */
/* Generators                                                          */
/* ------------------------------------------------------------------ */

function makeGenerators(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => rand() < p;
  const hex = (n: number) => Array.from({ length: n }, () => '0123456789abcdef'[int(16)]).join('');
  const word = () => Array.from({ length: 1 + int(10) }, () => 'abcdefghijklmnopqrstuvwxyz0123456789-_.'[int(39)]).join('');
  let serialCounter = 0;

  const junkSegments = ['..', '%2e%2e', '%2E%2E', '.', '%2F', 'a%2Fb', '', '%00', 'a%00b', '%0d%0a', '%ff', '%c3%28', '%e2%82', '~', '%25', '%', '%zz', '*', ';', 'a;b=c', 'é', '%E2%98%83', encodeURIComponent('日本語'), encodeURIComponent('🔒'), '\u00e9', 'x'.repeat(255)];
  /** A key never under fuzz-known/ (even after decoding or normalising `..`). */
  const junkKey = (): string => {
    const kind = int(8);
    if (kind === 0) return 'fz/' + 'k'.repeat(1990 + int(20));
    if (kind === 1) return `fz/${word()}`;
    if (kind === 2) return `fz-trav/${pick(['..', '%2e%2e', '%2E%2e'])}/${pick(['..', '%2e%2e'])}/etc/passwd`;
    if (kind === 3) return `fz//${word()}//`;
    const parts = Array.from({ length: 1 + int(5) }, () => (chance(0.6) ? pick(junkSegments) : word()));
    return `fz-${int(100)}/${parts.join(chance(0.8) ? '/' : pick(['%2F', '//', '%2f', '\\']))}`;
  };
  /** A fresh valid key outside fuzz-known/. */
  const freshKey = () => `fz-fresh/${hex(8)}/terraform.tfstate`;
  const knownKey = () => pick(KNOWN);
  /** Known keys, sometimes spelled oddly (still the known key or an invalid one). */
  const knownRead = () => pick([knownKey(), `${knownKey()}?x=1`, `fuzz-known%2F${pick(['a', 'b', 'c'])}`, `fuzz-known/./${pick(['a', 'b'])}`, `fz/../fuzz-known/a`]);

  const malformedJson = (): Buffer => {
    const valid = stateBody(1 + int(5), `lin-${hex(6)}`);
    return Buffer.from(
      pick([
        '',
        '{',
        '}',
        'null',
        '[]',
        '"str"',
        '12',
        'true',
        '{"version":4,',
        valid.slice(0, int(valid.length - 2)), // cut before the closing "}\n": never a whole state (cutting only the \n left a valid one)
        valid.replace('"lineage"', '"lineage" "'),
        '{"version":"four","serial":"x","lineage":5}',
        '{"version":4,"serial":-1,"lineage":""}',
        '{"version":4,"serial":1e400,"lineage":"x"}',
        '{"__proto__":{"x":1},"constructor":{"prototype":{}}}',
        '['.repeat(5000),
        '{"a":'.repeat(2000),
        '\ufeff' + '{"version":4',
        'x'.repeat(int(3000)),
      ]),
    );
  };
  const invalidUtf8 = (): Buffer => {
    const s = stateBody(1, 'lin-utf8');
    const b = Buffer.from(s);
    const at = 1 + int(b.length - 2);
    return Buffer.concat([b.subarray(0, at), Buffer.from(pick([[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x00]])), b.subarray(at)]);
  };
  const invalidLockInfo = (): Buffer =>
    Buffer.from(
      pick([
        '',
        '{}',
        '{"ID":""}',
        '{"ID":5}',
        '{"ID":null,"Operation":"OperationTypeApply"}',
        '{"ID":"' + 'x'.repeat(int(70_000)) + '"}',
        '{"ID":"a","Created":"not-a-date"}',
        '{"ID":"a",',
        '[1,2,3]',
        'ID=abc',
        lockBody('x').slice(0, 20),
        '{"ID":["a"],"Who":{"x":1}}',
      ]),
    );
  /** Lock info that is never a valid lock request nor a force-unlock (an empty or zero-valued body is one). */
  const brokenLockInfo = (): Buffer =>
    Buffer.from(pick(['{"ID":5}', '{"ID":"a",', '[1,2,3]', 'ID=abc', '"x"', 'null', 'true', lockBody('x').slice(0, 20), '{"ID":["a"],"Who":{"x":1}}', '{"ID":{"x":1}}', '{"ID":"a","Created":5}']));
  const wrongMd5 = () => pick([Buffer.from('nope').toString('base64'), createHash('md5').update('other').digest('base64'), '!!!!', '', 'a'.repeat(400)]);
  /** A body that can never be a valid state write or lock request. */
  const invalidBody = (): Buffer => pick([malformedJson, invalidUtf8, invalidLockInfo])();
  const anyBody = (): Buffer => (chance(0.3) ? Buffer.from(stateBody(++serialCounter, `lin-${hex(6)}`)) : chance(0.3) ? Buffer.from(lockBody(hex(8))) : invalidBody());

  const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'LOCK', 'UNLOCK', 'PATCH', 'OPTIONS', 'FOO'] as const;
  const READ_METHODS = ['GET', 'HEAD', 'OPTIONS'];

  const amzDate = () => new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  /** A SigV4 Authorization header: garbage, or well formed with a wrong signature. */
  const badAuth = (service: string): Record<string, string> => {
    const date = amzDate();
    const scope = `${date.slice(0, 8)}/${pick([REGION, 'eu-west-1', ''])}/${service}/aws4_request`;
    const garbage = [
      'AWS4-HMAC-SHA256',
      'AWS4-HMAC-SHA256 ',
      'AWS4-HMAC-SHA256 Credential=',
      'AWS4-HMAC-SHA256 Credential=/,,,',
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}, Signature=zz`,
      `AWS4-HMAC-SHA256 Credential=${'A'.repeat(5000)}/x/y/z/aws4_request, SignedHeaders=host, Signature=${hex(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${scope}, SignedHeaders=, Signature=${hex(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${scope}, SignedHeaders=host;;;x-amz-date, Signature=${hex(63)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${scope}, SignedHeaders=host;x-amz-date, Signature=${hex(64)}, Signature=${hex(64)}`,
      `AWS ${TEST_KEY.accessKeyId}:${hex(20)}`,
      'Bearer x',
    ];
    const formatted = `AWS4-HMAC-SHA256 Credential=${pick([TEST_KEY.accessKeyId, 'AKIDOTHER'])}/${scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${hex(64)}`;
    const h: Record<string, string> = {
      authorization: chance(0.5) ? formatted : pick(garbage),
      'x-amz-date': chance(0.9) ? date : pick(['', 'yesterday', '19700101T000000Z', '20991231T235959Z']),
    };
    if (service === 's3') h['x-amz-content-sha256'] = pick(['UNSIGNED-PAYLOAD', hex(64), 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'zz', createHash('sha256').update('').digest('hex')]);
    if (chance(0.1)) delete h['authorization'];
    return h;
  };
  const xmlGarbage = () =>
    Buffer.from(
      pick([
        '',
        '<',
        '<?xml version="1.0"?><CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part>',
        '<CompleteMultipartUpload>' + '<Part>'.repeat(3000),
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><a>&lol2;</a>',
        '<Delete><Object><Key>fuzz-known/a</Key></Object></Delete>',
        '\u0000\u0001\u0002',
        'not xml at all',
      ]),
    );

  const gens: Record<string, () => FuzzRequest> = {
    httpBackendJunkKey: () => {
      const method = pick(HTTP_METHODS);
      const headers: Record<string, string> = {};
      if (chance(0.3)) headers['content-md5'] = wrongMd5();
      if (chance(0.2)) headers['content-type'] = pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', '']);
      const q = chance(0.3) ? `?ID=${pick([hex(8), '', '%00', KNOWN_LOCK_ID, 'x'.repeat(3000)])}` : chance(0.1) ? `?force=${pick(['1', 'true', 'junk'])}` : '';
      return { gen: 'httpBackendJunkKey', method, path: `/${pick(['state', 'lock', 'state', 'State', 'state/', 'lock//'])}/${junkKey()}${q}`, headers, body: method === 'GET' && chance(0.7) ? Buffer.alloc(0) : anyBody() };
    },
    httpBackendFreshKey: () => {
      const method = pick(HTTP_METHODS);
      const headers: Record<string, string> = {};
      const body = anyBody();
      if (chance(0.3)) headers['content-md5'] = chance(0.5) ? wrongMd5() : createHash('md5').update(body).digest('base64');
      return { gen: 'httpBackendFreshKey', method, path: `/${pick(['state', 'lock'])}/${freshKey()}${chance(0.3) ? `?ID=${hex(8)}` : ''}`, headers, body };
    },
    /** Known keys: reads with any method that reads, writes only with invalid bodies or a wrong Content-MD5. */
    httpBackendKnownKey: (): FuzzRequest => {
      const key = knownRead();
      if (chance(0.35)) {
        return { gen: 'httpBackendKnownKey', method: pick([...READ_METHODS, 'PATCH', 'FOO']), path: `/${pick(['state', 'lock'])}/${key}`, headers: {}, body: chance(0.5) ? Buffer.alloc(0) : invalidBody() };
      }
      const method = pick(['POST', 'PUT', 'LOCK', 'UNLOCK']);
      const q = chance(0.5) ? `?ID=${pick([KNOWN_LOCK_ID, hex(8), ''])}` : '';
      if ((method === 'POST' || method === 'PUT') && chance(0.3)) {
        // A well-formed state with a Content-MD5 that does not match it: must be refused before anything happens.
        const body = Buffer.from(stateBody(99, 'lin-md5'));
        return { gen: 'httpBackendKnownKey/md5', method, path: `/state/${key}${q}`, headers: { 'content-md5': createHash('md5').update(body.toString() + ' ').digest('base64') }, body };
      }
      return { gen: 'httpBackendKnownKey/invalid', method, path: `/state/${key}${q}`, headers: {}, body: method === 'LOCK' || method === 'UNLOCK' ? brokenLockInfo() : pick([malformedJson, invalidUtf8])() };
    },
    truncated: () => {
      const method = pick(['POST', 'PUT', 'LOCK', 'UNLOCK']);
      const known = (method === 'POST' || method === 'PUT') && chance(0.5);
      const full = Buffer.from(method === 'LOCK' || method === 'UNLOCK' ? lockBody(hex(8)) : stateBody(1, `lin-${hex(6)}`));
      const body = full.subarray(0, int(full.length));
      return { gen: 'truncated', method, path: `/state/${known ? knownKey() : freshKey()}`, headers: {}, body, truncated: true };
    },
    jsonApi: (): FuzzRequest => {
      const collection = pick(['states', 'versions', 'locks', 'audit', 'content', 'diff', 'rejected', 'rejected-content', 'restore', 'sessions', 'tokens', 'openapi', 'nope', '', '..', '%2e%2e']);
      const junk = () => pick(['-1', '0', '1', '999999999999999999999', 'abc', '1e3', '%00', '', '1.5', 'NaN', '-0', '0x10', '%27%22', '2026-13-45', 'now', '[]', 'x'.repeat(2100)]);
      const qs = ['limit', 'seq', 'since', 'cursor', 'from', 'to', 'key', 'prefix'].filter(() => chance(0.4)).map((p) => `${p}=${junk()}`);
      const useKnown = chance(0.35);
      const key = useKnown ? knownRead() : junkKey();
      // Non-read methods never touch known keys, nor tokens (a valid token request would switch authentication on).
      const method = useKnown || collection === 'tokens' ? pick([...READ_METHODS, 'FOO']) : pick(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'FOO', 'LOCK']);
      const body =
        method === 'GET' || method === 'HEAD'
          ? Buffer.alloc(0)
          : Buffer.from(pick(['{', '[]', 'null', '{"seq":"x"}', '{"version":-1}', '{"seq":1e999}', '{"name":' + '"x"'.repeat(10) + '}', '"', '{"a":'.repeat(1000), '\u00ff\u00fe']));
      const path = `/api/v1/${collection}${chance(0.9) ? '/' + key : ''}${qs.length ? '?' + qs.join('&') : ''}`;
      return { gen: `jsonApi`, method, path, headers: chance(0.3) ? { 'content-type': pick(['application/json', 'text/plain']) } : ({} as Record<string, string>), body };
    },
    s3: () => {
      const bucket = pick(['bucket', 'acme-state', 'fuzz-known', 'B', 'x'.repeat(300), '..', '%2e%2e']);
      const key = chance(0.4) ? knownKey() : junkKey();
      const query = pick(['', '?uploads', '?uploadId=x&partNumber=0', '?uploadId=x&partNumber=10001', '?uploadId=&partNumber=-1', '?list-type=2&max-keys=-1', '?list-type=2&max-keys=abc&continuation-token=%00', '?versions', '?versionId=null', '?delete', '?tagging', '?acl', '?x-id=PutObject']);
      const method = pick(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'FOO']);
      const path = chance(0.2) ? `/${bucket}${query}` : `/${bucket}/${key}${query}`;
      const headers: Record<string, string> = { ...badAuth('s3'), ...(chance(0.3) ? { 'content-md5': wrongMd5() } : {}), ...(chance(0.2) ? { 'x-amz-checksum-crc32': pick(['AAAAAA==', '!!', '']) } : {}), ...(chance(0.2) ? { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': pick(['10', '-1', 'x']) } : {}) };
      return { gen: 's3', method, path, headers, body: method === 'GET' || method === 'HEAD' ? Buffer.alloc(0) : chance(0.5) ? xmlGarbage() : anyBody() };
    },
    dynamodb: () => {
      const op = pick(['PutItem', 'GetItem', 'DeleteItem', 'Scan', 'CreateTable', 'Bogus', 'DescribeTable', 'UpdateItem', '']);
      const lockId = chance(0.4) ? `bucket/${knownKey()}` : chance(0.5) ? `bucket/${knownKey()}-md5` : junkKey();
      const body = pick([
        () => JSON.stringify({ TableName: 'terraform-state-lock', Item: { LockID: { S: lockId }, Info: { S: lockBody(hex(8)) } }, ConditionExpression: 'attribute_not_exists(LockID)' }),
        () => JSON.stringify({ TableName: 'terraform-state-lock', Key: { LockID: { S: lockId } } }),
        () => JSON.stringify({ TableName: 'x', Item: { LockID: { N: 'NaN' }, Digest: { B: '!!!' } } }),
        () => JSON.stringify({ TableName: 't'.repeat(300), Key: {} }),
        () => '{"TableName":',
        () => 'null',
        () => '[]',
        () => '{"Key":{"LockID":{"S":' + '{"S":'.repeat(500) + '}}}',
      ])();
      const headers: Record<string, string> = {
        ...badAuth('dynamodb'),
        'x-amz-target': chance(0.9) ? `DynamoDB_20120810.${op}` : pick(['DynamoDB_20120810', 'Other.PutItem', '', 'DynamoDB_20120810.PutItem.PutItem']),
        'content-type': pick(['application/x-amz-json-1.0', 'application/json', 'text/plain']),
      };
      return { gen: 'dynamodb', method: chance(0.9) ? 'POST' : pick(['GET', 'PUT', 'DELETE', 'FOO']), path: pick(['/', '/', '//', '/?x=1']), headers, body: Buffer.from(body) };
    },
    sts: () => {
      const body = pick(['Action=GetCallerIdentity&Version=2011-06-15', 'Action=GetUser&Version=2010-05-08', 'Action=AssumeRole&RoleArn=x', 'Action=&Version=', 'Action=%ZZ', 'Action=' + 'A'.repeat(5000), '=&&==', '']);
      return { gen: 'sts', method: pick(['POST', 'POST', 'GET', 'PUT']), path: pick(['/', '/?Action=GetCallerIdentity', '/sts']), headers: { ...badAuth('sts'), 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body: Buffer.from(body) };
    },
    ops: (): FuzzRequest => {
      const path = pick(['/healthz', '/readyz', '/metrics', '/livez', '/', '/favicon.ico', '/healthz/..', '/metrics?x=%00', '/api', '/api/v1', '/api/v1/', '/api/v1/openapi', '/api/v1/openapi.json', '/state', '/state/', '/lock', '/lock/', '*']);
      return { gen: 'ops', method: pick(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'FOO', 'LOCK', 'UNLOCK']), path, headers: chance(0.2) ? { 'content-type': 'application/json' } : ({} as Record<string, string>), body: chance(0.5) ? Buffer.alloc(0) : Buffer.from(pick(['{}', '{', 'x'])) };
    },
    oddHeaders: () => {
      const h = pick<Record<string, string>>([
        { 'content-length': '-1' },
        { 'content-length': 'abc' },
        { 'transfer-encoding': 'gzip' },
        { 'content-encoding': 'gzip' },
        { authorization: 'Basic ' + Buffer.from('x:y').toString('base64') },
        { authorization: 'Bearer ' + 'x'.repeat(6000) },
        { authorization: 'Basic !!!' },
        { 'x-amz-content-sha256': 'zz' },
        { 'x-amz-date': 'x' },
        { expect: '100-continue' },
        { 'if-match': '"x"' },
        { range: 'bytes=5-1' },
      ]);
      const key = chance(0.5) ? knownRead() : junkKey();
      const known = key.includes('fuzz-known');
      return { gen: 'oddHeaders', method: known ? pick(['GET', 'HEAD']) : pick(HTTP_METHODS), path: `/state/${key}`, headers: h, body: known ? Buffer.alloc(0) : anyBody() };
    },
  };
  const weights: Array<[string, number]> = [
    ['httpBackendJunkKey', 14],
    ['httpBackendFreshKey', 8],
    ['httpBackendKnownKey', 14],
    ['truncated', 1],
    ['jsonApi', 16],
    ['s3', 14],
    ['dynamodb', 12],
    ['sts', 4],
    ['ops', 6],
    ['oddHeaders', 5],
  ];
  const total = weights.reduce((s, [, w]) => s + w, 0);
  return () => {
    let x = rand() * total;
    for (const [name, w] of weights) {
      if ((x -= w) < 0) return gens[name]!();
    }
    return gens['ops']!();
  };
}

/* ------------------------------------------------------------------ */
/* The test                                                            */
/* ------------------------------------------------------------------ */

before(async () => {
  server = await startAwsServer();
  const url = new URL(server.url);
  host = url.hostname;
  port = Number(url.port);

  // Known data, written with valid requests.
  for (const [i, key] of KNOWN.entries()) {
    const lineage = `fuzz-lineage-${i}`;
    for (const serial of [1, 2]) {
      const res = await rawRequest(u(`/state/${key}`), { method: 'POST', body: stateBody(serial, lineage, { outputs: { n: { value: `${key}#${serial}`, type: 'string' } } }) });
      assert.equal(res.status, 200, `setup write ${key}#${serial}: ${res.status} ${res.text}`);
    }
  }
  const locked = await rawRequest(u('/state/fuzz-known/a'), { method: 'LOCK', body: lockBody(KNOWN_LOCK_ID) });
  assert.equal(locked.status, 200, `setup lock: ${locked.text}`);
  for (const key of KNOWN) {
    const snap = await snapshot(key);
    assert.equal(snap.state.status, 200);
    assert.equal(snap.versions, 2, `${key} has 2 versions`);
    snapshots.set(key, snap);
    setupAudit.set(key, snap.audit);
  }
  assert.equal(snapshots.get('fuzz-known/a')!.lock.status, 200, 'fuzz-known/a is locked');
});

after(async () => {
  agent.destroy();
  await server?.stop();
});

test(`fuzz every door (seed ${SEED}, ${COUNT} requests)`, { timeout: 120_000 }, async () => {
  console.log(`fuzz seed ${SEED} (replay: STATELOCK_FUZZ_SEED=${SEED} STATELOCK_FUZZ_COUNT=${COUNT})`);
  const rand = rng(SEED);
  const next = makeGenerators(rand);

  // The REPLAY requests: one DynamoDB PutItem, validly signed for a fresh key, then re-sent altered.
  const replays: FuzzRequest[] = [];
  {
    const body = JSON.stringify({ TableName: 'terraform-state-lock', Item: { LockID: { S: `fuzz-replay-bucket/fz-replay/${SEED}/terraform.tfstate` }, Info: { S: lockBody(`replay-${SEED}`) } }, ConditionExpression: 'attribute_not_exists(LockID)' });
    const signer = new SignatureV4({ service: 'dynamodb', region: REGION, credentials: TEST_KEY, sha256: Sha256 });
    const signed = await signer.sign({ method: 'POST', protocol: 'http:', hostname: host, port, path: '/', headers: { host: `${host}:${port}`, 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.PutItem' }, body });
    const headers = signed.headers as Record<string, string>;
    const original = await send({ gen: 'replay/original', method: 'POST', path: '/', headers, body: Buffer.from(body) });
    assert.equal(original.kind === 'status' ? original.status : original.kind, 200, `the validly signed PutItem is accepted: ${original.kind === 'status' ? original.body.toString() : ''}`);
    const known = body.replace(`fz-replay/${SEED}/terraform.tfstate`, 'fuzz-known/b');
    replays.push(
      { gen: 'replay/body-known-key', method: 'POST', path: '/', headers, body: Buffer.from(known) },
      { gen: 'replay/body-known-key-md5', method: 'POST', path: '/', headers, body: Buffer.from(body.replace(`fz-replay/${SEED}/terraform.tfstate`, 'fuzz-known/a-md5')) },
      { gen: 'replay/body-appended', method: 'POST', path: '/', headers, body: Buffer.from(body + ' ') },
      { gen: 'replay/body-truncated', method: 'POST', path: '/', headers, body: Buffer.from(body.slice(0, -1)) },
      { gen: 'replay/path', method: 'POST', path: '/?x=1', headers, body: Buffer.from(body) },
      // (`//` is not an alteration: SigV4 normalises the path of non-S3 requests, so it signs as `/`.)
      { gen: 'replay/path2', method: 'POST', path: '/x', headers, body: Buffer.from(body) },
      { gen: 'replay/path3', method: 'POST', path: '/fuzz-known/a', headers, body: Buffer.from(body) },
      { gen: 'replay/target', method: 'POST', path: '/', headers: { ...headers, 'x-amz-target': 'DynamoDB_20120810.DeleteItem' }, body: Buffer.from(body) },
      { gen: 'replay/method', method: 'PUT', path: '/', headers, body: Buffer.from(body) },
    );
  }

  const requests: FuzzRequest[] = [];
  for (let i = 0; i < COUNT; i++) {
    if (i % Math.max(1, Math.floor(COUNT / 40)) === 0 && replays.length) requests.push(replays[i % replays.length]!);
    else requests.push(next());
  }

  const statuses: Record<string, number> = {};
  const offenders: Array<{ r: FuzzRequest; o: Outcome }> = [];
  const timeouts: FuzzRequest[] = [];
  const replayAnswers: string[] = [];
  const started = Date.now();
  let cursor = 0;
  const worker = async () => {
    while (cursor < requests.length) {
      const r = requests[cursor++]!;
      const o = await send(r);
      const label = o.kind === 'status' ? String(o.status) : o.kind === 'error' ? `error:${o.code}` : o.kind;
      statuses[label] = (statuses[label] ?? 0) + 1;
      if (o.kind === 'status' && o.status >= 500) offenders.push({ r, o });
      if (o.kind === 'timeout') timeouts.push(r);
      if (r.gen.startsWith('replay/') && replayAnswers.length < 9) replayAnswers.push(`${r.gen}: ${label}${o.kind === 'status' ? ' ' + o.body.subarray(0, 60).toString('utf8') : ''}`);
      if (r.gen.startsWith('replay/') && o.kind === 'status' && o.status < 400) offenders.push({ r, o });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const sorted = Object.fromEntries(Object.entries(statuses).sort(([a], [b]) => a.localeCompare(b)));
  console.log(`fuzz: ${requests.length} requests, statuses ${JSON.stringify(sorted)}, seed ${SEED}, ${seconds} s`);
  console.log(`replays: ${replayAnswers.join('; ')}`);

  const describeReq = ({ r, o }: { r: FuzzRequest; o: Outcome }) =>
    `${r.gen}: ${r.method} ${r.path.length > 300 ? r.path.slice(0, 300) + '…' : r.path}\n  headers ${JSON.stringify(r.headers).slice(0, 400)}\n  body ${JSON.stringify(r.body.subarray(0, 200).toString('latin1'))}${r.truncated ? ' (truncated)' : ''}\n  answer ${o.kind === 'status' ? `${o.status} ${o.body.subarray(0, 300).toString('utf8')}` : o.kind}`;
  const errors: string[] = [];
  if (offenders.length) errors.push(`${offenders.length} bad answers (5xx, or an altered replay accepted); first 5:\n${offenders.slice(0, 5).map(describeReq).join('\n')}`);
  if (timeouts.length) errors.push(`${timeouts.length} requests got no answer in 5 s; first 5:\n${timeouts.slice(0, 5).map((r) => describeReq({ r, o: { kind: 'timeout' } })).join('\n')}`);

  // The server is still up and ready.
  if (server.proc.exitCode !== null || server.proc.signalCode !== null) errors.push(`the server exited (${server.proc.exitCode ?? server.proc.signalCode}); stderr tail: ${server.stderr().slice(-2000)}`);
  else {
    const ready = await rawRequest(u('/readyz'), { keepAlive: false }).catch((e: Error) => ({ status: 0, text: e.message }));
    if (ready.status !== 200) errors.push(`/readyz answers ${ready.status}: ${ready.text}`);
    // Nothing known changed, and no audit entry appeared for a known key.
    for (const key of KNOWN) {
      const now = await snapshot(key);
      const before = snapshots.get(key)!;
      if (JSON.stringify(now.state) !== JSON.stringify(before.state)) errors.push(`${key}: state changed ${JSON.stringify(before.state)} → ${JSON.stringify(now.state)}`);
      if (JSON.stringify(now.lock) !== JSON.stringify(before.lock)) errors.push(`${key}: lock changed ${JSON.stringify(before.lock).slice(0, 300)} → ${JSON.stringify(now.lock).replace(/x{40,}/g, (m) => `x{${m.length}}`).slice(0, 600)}`);
      if (now.versions !== before.versions) errors.push(`${key}: versions ${before.versions} → ${now.versions}`);
      const extra = now.audit.filter((e) => !setupAudit.get(key)!.includes(e));
      if (extra.length) errors.push(`${key}: ${extra.length} new audit entries, first: ${extra.slice(0, 3).map((e) => e.replace(/x{40,}/g, (m) => `x{${m.length}}`).slice(0, 600)).join(' | ')}`);
    }
  }
  assert.deepEqual(errors, [], `seed ${SEED}:\n${errors.join('\n')}`);
});
