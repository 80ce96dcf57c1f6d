import assert from 'node:assert/strict';
import { createHash, createHmac, randomInt, randomUUID } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { dynamoClient, REGION, s3Client, startAwsServer, TEST_KEY, type AwsServer } from '../support/aws.js';
import { lockBody, stateBody } from '../support/http.js';
import { rng } from '../support/rng.js';

/**
 * A fuzz test over every door of ONE real server (SigV4 signatures checked): the http backend (/state,
 * /lock), the JSON API, S3, DynamoDB, STS, the ops endpoints, and malformed HTTP on the raw socket.
 *
 * Before fuzzing, known state is laid down under the snapshot keys (states with versions, a deleted
 * state, locks held through the http door, GitLab's /lock, DynamoDB and an S3 .tflock) and read back.
 * The generators then send valid and invalid requests. A request that could legitimately change
 * something only ever targets keys disjoint from the snapshot (fuzz/…, fuzzbkt/…); a request aimed at a
 * snapshot key is invalid by construction (a Content-MD5 that does not match, a bad or replayed
 * signature, a malformed parameter, a truncated body). So afterwards the snapshot must be exactly as it
 * was — bytes, versions, locks, rejected writes — and its audit trail may only have grown by 'refused'
 * entries. No answer may be a 5xx (S3's 501 NotImplemented for operations statelock does not offer is
 * counted apart), the server must not exit, count a 5xx or log an unexpected error, and /readyz stays 200.
 *
 * Before the random run, a few deterministic tests on the same server pin down what the fuzzer found
 * or must never miss: replayed and altered signatures (chunk signatures of aws-chunked uploads, an
 * unsigned X-Amz-Target), deeply nested DynamoDB input, S3 response-* overrides no header can carry.
 *
 * STATELOCK_FUZZ_SEED replays a run (the seed is printed); STATELOCK_FUZZ_COUNT changes its length.
 */

const SEED = envInt('STATELOCK_FUZZ_SEED') ?? randomInt(1, 2 ** 31 - 1);
const COUNT = envInt('STATELOCK_FUZZ_COUNT') ?? 10_000;
const CONCURRENCY = 6;
/** Small enough that bodies over it are cheap to send, large enough for every legitimate request here. */
const MAX_BODY = 1024 * 1024;
/** A request that takes longer than this has hung: the server never answered. */
const REQUEST_TIMEOUT_MS = 30_000;

function envInt(name: string): number | null {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return null;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a non-negative integer, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/* ================================================================== */
/* The known state                                                     */
/* ================================================================== */

const SNAP = {
  free: 'snap/free',
  httpLocked: 'snap/http-locked',
  lockOnly: 'snap/lock-only',
  deleted: 'snap/deleted',
  dynamo: 'snapbkt/dyn/terraform.tfstate',
  s3: 'snapbkt/s3/terraform.tfstate',
} as const;
const SNAP_KEYS: readonly string[] = Object.values(SNAP);
const SNAP_BUCKET = 'snapbkt';
const FUZZ_BUCKET = 'fuzzbkt';

/* ================================================================== */
/* Randomness                                                          */
/* ================================================================== */

class R {
  constructor(private readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    const total = items.reduce((n, [w]) => n + w, 0);
    let x = this.next() * total;
    for (const [w, v] of items) {
      if ((x -= w) < 0) return v;
    }
    return items[items.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(16)];
    return s;
  }
  id(): string {
    return `${this.hex(8)}-${this.hex(4)}-${this.hex(4)}-${this.hex(4)}-${this.hex(12)}`;
  }
}

/* ================================================================== */
/* Requests                                                            */
/* ================================================================== */

type Door = 'http:/state' | 'http:/lock' | 'api' | 's3' | 'dynamodb' | 'sts' | 'ops' | 'raw';

interface Req {
  door: Door;
  /** What generated it, for the report. */
  kind: string;
  method: string;
  /** The request-target exactly as sent (latin1: one char per byte). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Send the body with Transfer-Encoding: chunked, in these pieces. */
  chunks?: Buffer[];
  /** Bytes on a fresh socket instead of an HTTP client request. */
  raw?: { bytes: Buffer; halfClose: boolean; expectAnswer: boolean };
  /** Remember something from a 2xx answer (upload IDs, session IDs). */
  learn?: (status: number, body: Buffer) => void;
}

interface Outcome {
  status: number | null;
  error?: string;
  body: Buffer;
  ms: number;
}

const md5b64 = (b: Buffer | string) => createHash('md5').update(b).digest('base64');
const sha256hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const EMPTY_SHA256 = sha256hex('');

/** A Content-MD5 that is well-formed but not the body's (or garbage): the body can never be accepted. */
function wrongMd5(r: R, body: Buffer): string {
  return r.pick([md5b64(Buffer.concat([body, Buffer.from('x')])), md5b64('something else'), '1B2M2Y8AsgTpfCZ7Ml6ysQ==', 'not-base64!!', 'AAAAAAAAAAAAAAAAAAAAAA==']);
}

function describeReq(req: Req): string {
  const head = `${req.door} ${req.kind}: ${req.method} ${JSON.stringify(req.path.length > 160 ? req.path.slice(0, 160) + '…' : req.path)}`;
  const headers = Object.entries(req.headers)
    .map(([k, v]) => `${k}: ${v.length > 120 ? v.slice(0, 120) + '…' : v}`)
    .join(' | ');
  const body = req.raw ? req.raw.bytes : req.body ?? (req.chunks ? Buffer.concat(req.chunks) : Buffer.alloc(0));
  const shown = body.subarray(0, 300).toString('latin1');
  return `${head}\n      headers: ${headers || '(none)'}\n      body (${body.length} bytes): ${JSON.stringify(shown)}${body.length > 300 ? '…' : ''}`;
}

/* ================================================================== */
/* SigV4, written independently of the server's implementation         */
/* ================================================================== */

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

function awsEncode(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += UNRESERVED.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function pctDecode(s: string): Buffer {
  const out: number[] = [];
  const src = Buffer.from(s, 'latin1');
  for (let i = 0; i < src.length; i++) {
    const hex = src.subarray(i + 1, i + 3).toString('latin1');
    if (src[i] === 0x25 && /^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else out.push(src[i]!);
  }
  return Buffer.from(out);
}

function canonicalQueryString(rawQuery: string): string {
  if (rawQuery === '') return '';
  return rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      return [awsEncode(pctDecode(eq < 0 ? p : p.slice(0, eq))), awsEncode(pctDecode(eq < 0 ? '' : p.slice(eq + 1)))] as const;
    })
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

interface SignSpec {
  method: string;
  /** request-target: path and optional ?query, as sent */
  target: string;
  /** lower-case names; must hold host and x-amz-date */
  headers: Record<string, string>;
  service: string;
  /** S3: the declared x-amz-content-sha256; others: the hex SHA-256 of the body */
  payloadHash: string;
  signed?: string[];
  region?: string;
  accessKeyId?: string;
  secret?: string;
  /** The date in the credential scope (default the x-amz-date's). */
  scopeDate?: string;
}

/** Returns the Authorization header value and the seed signature. */
function signV4(spec: SignSpec): { authorization: string; signature: string; scope: string; key: Buffer } {
  const q = spec.target.indexOf('?');
  const path = q < 0 ? spec.target : spec.target.slice(0, q);
  const query = q < 0 ? '' : spec.target.slice(q + 1);
  const signed = (spec.signed ?? Object.keys(spec.headers)).map((h) => h.toLowerCase()).sort();
  const canonicalHeaders = signed.map((h) => `${h}:${(spec.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const uri = spec.service === 's3' ? path || '/' : '/';
  const canonical = [spec.method, uri, canonicalQueryString(query), canonicalHeaders, signed.join(';'), spec.payloadHash].join('\n');
  const date = spec.headers['x-amz-date']!;
  const scopeDate = spec.scopeDate ?? date.slice(0, 8);
  const region = spec.region ?? REGION;
  const scope = `${scopeDate}/${region}/${spec.service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256hex(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${spec.secret ?? TEST_KEY.secretAccessKey}`, scopeDate), region), spec.service), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  return {
    authorization: `AWS4-HMAC-SHA256 Credential=${spec.accessKeyId ?? TEST_KEY.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`,
    signature,
    scope,
    key,
  };
}

/** A signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): every chunk chained on the seed signature. */
function signedChunkedBody(pieces: Buffer[], seed: string, date: string, scope: string, key: Buffer): Buffer {
  let previous = seed;
  const out: Buffer[] = [];
  for (const piece of [...pieces, Buffer.alloc(0)]) {
    const toSign = ['AWS4-HMAC-SHA256-PAYLOAD', date, scope, previous, EMPTY_SHA256, sha256hex(piece)].join('\n');
    const sig = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
    out.push(Buffer.from(`${piece.length.toString(16)};chunk-signature=${sig}\r\n`), piece, Buffer.from('\r\n'));
    previous = sig;
  }
  return Buffer.concat(out);
}

/** An unsigned aws-chunked body (STREAMING-UNSIGNED-PAYLOAD-TRAILER), with a trailer. */
function unsignedChunkedBody(body: Buffer, chunkSize: number, trailers: Record<string, string>): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += chunkSize) {
    const c = body.subarray(i, i + chunkSize);
    out.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
  }
  out.push(Buffer.from('0\r\n'));
  for (const [k, v] of Object.entries(trailers)) out.push(Buffer.from(`${k}:${v}\r\n`));
  out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

/* ================================================================== */
/* Sending                                                             */
/* ================================================================== */

class Sender {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
  constructor(readonly port: number) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  close(): void {
    this.agent.destroy();
  }

  async send(req: Req): Promise<Outcome> {
    if (req.raw) return this.sendRaw(req.raw.bytes, req.raw.halfClose);
    try {
      return await this.sendHttp(req, false);
    } catch (err) {
      // Node's client refuses some bytes in paths or header values: send those raw.
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (!/ERR_INVALID_CHAR|ERR_UNESCAPED_CHARACTERS|ERR_INVALID_HTTP_TOKEN|ERR_HTTP_INVALID_HEADER_VALUE|ERR_INVALID_ARG/.test(code)) throw err;
      return this.sendRaw(toRaw(req, this.host), false);
    }
  }

  private sendHttp(req: Req, retried: boolean): Promise<Outcome> {
    const started = Date.now();
    return new Promise<Outcome>((resolve, reject) => {
      const headers: Record<string, string> = { Host: this.host, ...req.headers };
      if (req.chunks) headers['Transfer-Encoding'] = 'chunked';
      else if (req.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) headers['Content-Length'] = String(req.body.length);
      const r = httpRequest({ host: '127.0.0.1', port: this.port, method: req.method, path: req.path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: Date.now() - started }));
        res.on('error', (e: Error) => resolve({ status: res.statusCode ?? 0, error: `response: ${e.message}`, body: Buffer.concat(chunks), ms: Date.now() - started }));
      });
      r.setTimeout(REQUEST_TIMEOUT_MS, () => r.destroy(new Error('timeout: no answer')));
      r.on('error', (e: NodeJS.ErrnoException) => {
        if (!retried && r.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
          this.sendHttp(req, true).then(resolve, reject);
          return;
        }
        resolve({ status: null, error: e.code ?? e.message, body: Buffer.alloc(0), ms: Date.now() - started });
      });
      if (req.chunks) {
        for (const c of req.chunks) if (c.length) r.write(c);
        r.end();
      } else r.end(req.body);
    });
  }

  sendRaw(bytes: Buffer, halfClose: boolean): Promise<Outcome> {
    const started = Date.now();
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let settled = false;
      let error: string | undefined;
      const socket = connect(this.port, '127.0.0.1', () => {
        socket.write(bytes);
        if (halfClose) socket.end();
      });
      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        const data = Buffer.concat(chunks);
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(data.subarray(0, 20).toString('latin1'));
        resolve({ status: m ? Number(m[1]) : null, ...(error ? { error } : m ? {} : { error: data.length ? 'garbled answer' : 'no answer' }), body: data.subarray(data.indexOf('\r\n\r\n') + 4), ms: Date.now() - started });
      };
      const timer = setTimeout(() => {
        error = 'timeout: no answer';
        finish();
      }, REQUEST_TIMEOUT_MS);
      socket.on('data', (c: Buffer) => {
        // A connection the server keeps open (keep-alive, an ignored Upgrade): take the first answer and go.
        if (chunks.length === 0) setTimeout(finish, 1000);
        chunks.push(c);
      });
      socket.on('close', finish);
      socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    });
  }
}

/** The request as bytes on the wire, with Connection: close. */
function toRaw(req: Req, host: string): Buffer {
  const body = req.body ?? (req.chunks ? Buffer.concat(req.chunks) : undefined);
  const headers: Record<string, string> = { Host: host, ...req.headers, Connection: 'close' };
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) headers['Content-Length'] = String(body.length);
  const head = `${req.method} ${req.path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body ?? Buffer.alloc(0)]);
}

/* ================================================================== */
/* Building blocks for the generators                                  */
/* ================================================================== */

/** Keys any valid request may change. */
function fuzzKey(r: R): string {
  return r.weighted([
    [6, () => `fuzz/${r.pick(['a', 'b', 'c', 'd'])}/${r.int(6)}`],
    [3, () => `${FUZZ_BUCKET}/k${r.int(8)}/terraform.tfstate`],
    [1, () => `fuzz/${r.pick(['é', '日本', 'emoji-😀', 'sp ace', 'plus+sign', 'semi;colon', "quote'"])}/${r.int(3)}`],
  ])();
}

/** Percent-encodes a key for a path the way clients do (keeping '/'). */
function pathOf(key: string): string {
  return key
    .split('/')
    .map((s) => awsEncode(Buffer.from(s, 'utf8')))
    .join('/');
}

/** Raw path tails that are never a valid key — traversal, encoded slashes, bad escapes, control bytes, overlong. */
function badKeyTail(r: R): string {
  return r.pick([
    '',
    '..',
    '.',
    'a//b',
    'a/',
    '/a',
    'a/../b',
    'x/../snap/free',
    'snap/free/..',
    'snap/./free',
    'snap//free',
    './snap/free',
    'snap/free/.',
    '%2e%2e/snap/free',
    'x/%2e%2e/snap/free',
    'x/%2E%2e/snap/free',
    'x/%2e/snap/free',
    'snap%2Ffree',
    'snap%2ffree',
    '..%2fsnap%2ffree',
    '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    'snap/free%00',
    'snap/free%0a',
    'snap/%00free',
    'snap/free%7f',
    'snap/fr%ffee',
    'snap/fr%c3%28ee',
    'snap/fr%ed%a0%80ee',
    'snap/fr%e2%82ee',
    'snap/free%',
    'snap/free%2',
    'snap/fr%zzee',
    'snap/fr%%ee',
    `${'k'.repeat(1025)}`,
    `deep/${'s/'.repeat(600)}x`,
    `${'é'.repeat(600)}`,
    'snap/free\u0000',
    'snap/fr ee',
    'snap/fr\tee',
    'snap\\free',
    // A CR LF ends the request line early (Node then reads it HTTP/0.9-style): the key must stay a fuzz key.
    'fuzz/crlf\r\nX-Injected: 1',
    'snap/fr\u00ffee',
    '\u0080\u0081',
  ]);
}

/** A state body for a fuzz key: valid, or broken in one of many ways. */
function stateBodyFor(r: R, opts: { mayBeValid: boolean }): Buffer {
  const lineage = r.pick(['lin-a', 'lin-b', 'lin-c']);
  const serial = r.int(6) + 1;
  const valid = () => Buffer.from(stateBody(serial, lineage, r.chance(0.3) ? { outputs: { o: { value: r.hex(r.int(40)), type: 'string' } } } : {}));
  const broken = (): Buffer =>
    r.weighted<() => Buffer>([
      [2, () => Buffer.from('')],
      [1, () => Buffer.from(' \n\t ')],
      [2, () => Buffer.from(r.pick(['{', '}', '[]', 'null', 'true', '"str"', '1', '{}', '{"serial":1', '{"serial":1,"lineage":"x"', 'not json at all']))],
      [2, () => Buffer.from(r.pick(['{"lineage":"x"}', '{"serial":1}', '{"serial":"1","lineage":"x"}', '{"serial":-1,"lineage":"x"}', '{"serial":1.5,"lineage":"x"}', '{"serial":1e400,"lineage":"x"}', '{"serial":9007199254740993,"lineage":"x"}', '{"serial":1,"lineage":null}', '{"serial":1,"lineage":5}', '{"serial":null,"lineage":"x"}', '{"serial":[1],"lineage":"x"}']))],
      [2, () => valid().subarray(0, r.int(valid().length))],
      [1, () => Buffer.concat([valid(), Buffer.from(r.pick(['x', '}', '{}', '\u0000', ' garbage']))])],
      [1, () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), valid()])],
      [1, () => Buffer.from(stateBody(serial, lineage).replace('"lineage"', '"lin\u0000eage"'))],
      [2, () => Buffer.concat([Buffer.from('{"version":4,"serial":1,"lineage":"x","o":"'), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from('"}')])],
      [1, () => Buffer.from(stateBody(serial, lineage), 'utf16le')],
      [1, () => Buffer.from(`{"version":4,"serial":1,"lineage":"x","outputs":${'['.repeat(1100)}${']'.repeat(1100)}}`)],
      [1, () => Buffer.from(`{"version":4,"serial":1,"lineage":"x","outputs":${'['.repeat(5000)}`)],
      [1, () => Buffer.from(`{"serial":1,"serial":2,"lineage":"x","lineage":"y"}`)],
      [1, () => Buffer.from(`{"serial":1,"lineage":"${'l'.repeat(5000)}"}`)],
      [1, () => Buffer.from(`{"encryption_version":"v0","serial":1,"lineage":"x","encrypted_data":"${r.hex(30)}","meta":{}}`)],
      [1, () => Buffer.from(`{"encryption_version":"v0","encrypted_data":"AAAA"}`)],
      [1, () => r.bytes(r.int(200))],
      [1, () => Buffer.from(`{"version":4,"serial":1,"lineage":"x",${Array.from({ length: 2000 }, (_, i) => `"k${i}":${i}`).join(',')}}`)],
    ])();
  return opts.mayBeValid && r.chance(0.45) ? valid() : broken();
}

/** A lock info body: valid, zero-valued (force-unlock style), or broken. */
function lockBodyFor(r: R, opts: { mayBeValid: boolean }): Buffer {
  const id = r.chance(0.5) ? r.pick(['fuzz-lock-1', 'fuzz-lock-2', 'fuzz-lock-3']) : r.id();
  const valid = () => Buffer.from(lockBody(id, r.pick(['OperationTypeApply', 'OperationTypePlan', 'state-push', 'migration destination state', '']), r.pick(['fuzz@ci', '', 'x'.repeat(300), 'ünï@cödé'])));
  const broken = (): Buffer =>
    r.weighted<() => Buffer>([
      [2, () => Buffer.from(r.pick(['', ' ', '\n', 'nope', '{', '[]', 'null', '"ID"', '{}', '{"ID":""}', '{"ID":null}', '{"ID":5}', '{"ID":true}', '[{"ID":"x"}]']))],
      [2, () => Buffer.from(r.pick([`{"ID":"${id}","Created":"not a time"}`, `{"ID":"${id}","Created":"2026-13-45T99:99:99Z"}`, `{"ID":"${id}","Created":5}`, `{"ID":"${id}","Created":"2026-02-30T00:00:00Z"}`, `{"ID":"${id}","Created":"2026-01-01T00:00:00"}`]))],
      [2, () => Buffer.from(r.pick([`{"ID":"${id}","Who":{"nested":true}}`, `{"ID":"${id}","Info":["a"]}`, `{"ID":"${id}","Operation":1}`, `{"ID":{"x":1}}`, `{"id":"${id}","iD":"other"}`]))],
      [1, () => Buffer.from(JSON.stringify({ ID: id, Operation: '', Info: '', Who: '', Version: '', Created: '0001-01-01T00:00:00Z', Path: '' }))],
      [1, () => valid().subarray(0, r.int(valid().length))],
      [1, () => Buffer.concat([Buffer.from(`{"ID":"${id}","Who":"`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')])],
      [1, () => Buffer.from(`{"ID":"${id}",${'"x":"y",'.repeat(3000)}"Path":""}`)],
      [1, () => Buffer.from(`{"ID":"${id}","Info":${'['.repeat(3000)}${']'.repeat(3000)}}`)],
      [1, () => r.bytes(r.int(100))],
    ])();
  return opts.mayBeValid && r.chance(0.5) ? valid() : broken();
}

function queryOf(r: R, names: readonly string[]): string {
  const values = ['', '0', '1', '2', '-1', 'abc', '1e3', '1.5', '99999999999999999999', '999999999999999', '1001', '%zz', '%00', '%ff', 'true', 'false', 'fuzz/a/1', 'snap/free', '%2e%2e', 'x'.repeat(3000), '2026-01-01T00:00:00Z', 'yesterday', '+275760-09-13T00:00:00.001Z', 'lock.acquire', 'token.create', 'state.write.refused'];
  const n = r.int(4);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(r.chance(0.1) ? r.pick(values) : `${r.pick(names)}=${r.pick(values)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

const AUTH_GARBAGE = ['Basic', 'Basic !!!', 'Basic ' + Buffer.from('user:wrong').toString('base64'), 'Bearer', 'Bearer ' + 'x'.repeat(60), 'Bearer sl_fake_token', 'Negotiate abc', 'AWS4-HMAC-SHA256', 'AWS4-HMAC-SHA256 garbage', 'Digest username="x"'];

function maybeOddHeaders(r: R, headers: Record<string, string>): void {
  if (r.chance(0.08)) headers['Authorization'] = r.pick(AUTH_GARBAGE);
  if (r.chance(0.05)) headers['Content-Type'] = r.pick(['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', '']);
  if (r.chance(0.03)) headers['Content-Encoding'] = r.pick(['gzip', 'br', 'identity', 'x']);
  if (r.chance(0.03)) headers['Expect'] = r.pick(['100-continue', 'nonsense']);
  if (r.chance(0.03)) headers['X-Forwarded-For'] = r.pick(['1.2.3.4', 'garbage', '::1, 10.0.0.1']);
}

/* ================================================================== */
/* Generators, one family per door                                     */
/* ================================================================== */

interface Pools {
  uploads: Array<{ key: string; uploadId: string; etag: string }>;
  sessions: string[];
}

/** /state/<key> and /lock/<key>. */
function httpBackend(r: R, pools: Pools): Req {
  const lockDoor = r.chance(0.2);
  const door: Door = lockDoor ? 'http:/lock' : 'http:/state';
  const prefix = lockDoor ? '/lock/' : '/state/';
  const methods = lockDoor ? ['POST', 'DELETE', 'LOCK', 'UNLOCK', 'GET', 'PUT', 'PATCH'] : ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'LOCK', 'UNLOCK', 'PATCH', 'OPTIONS', 'PROPFIND', 'MKCOL', 'COPY', 'MOVE', 'TRACE', 'SEARCH', 'PURGE'];
  const method = r.weighted<string>(methods.map((m, i) => [i < 7 ? 6 : 1, m] as const));
  const target = r.weighted<'fuzz' | 'snap' | 'bad'>([
    [5, 'fuzz'],
    [3, 'snap'],
    [2, 'bad'],
  ]);
  const isLock = method === 'LOCK' || method === 'UNLOCK' || (lockDoor && (method === 'POST' || method === 'DELETE'));
  const headers: Record<string, string> = {};
  let body: Buffer | undefined;
  if (!['GET', 'HEAD'].includes(method) || r.chance(0.1)) body = isLock ? lockBodyFor(r, { mayBeValid: target !== 'snap' }) : stateBodyFor(r, { mayBeValid: target !== 'snap' });
  let tail: string;
  if (target === 'fuzz') tail = pathOf(fuzzKey(r));
  else if (target === 'bad') tail = badKeyTail(r);
  else {
    // A snapshot key: only reads, or requests that can never be accepted.
    const key = r.pick(SNAP_KEYS);
    tail = pathOf(key);
    if (method === 'DELETE' && !lockDoor) return { door, kind: 'snapshot read', method: 'GET', path: `${prefix}${tail}`, headers };
    if (!['GET', 'HEAD'].includes(method)) {
      body = body && body.length ? body : Buffer.from(r.pick(['{"ID":"x"}', stateBody(99, 'lin-x'), ' ']));
      headers['Content-MD5'] = wrongMd5(r, body);
    }
  }
  const query = queryOf(r, ['ID', 'wait', 'session', 'force', 'lock', 'x']);
  let path = `${prefix}${tail}${r.chance(0.3) ? query : ''}`;
  const add = (param: string) => (path += `${path.includes('?') ? '&' : '?'}${param}`);
  if (target !== 'snap' && r.chance(0.1) && pools.sessions.length) add(`session=${r.pick(pools.sessions)}`);
  // Writes under the fuzz locks (held, released, taken over): the lock rules and fencing get exercised.
  if (target !== 'snap' && (method === 'POST' || method === 'PUT') && !lockDoor && r.chance(0.4)) add(`ID=${r.pick(['fuzz-lock-1', 'fuzz-lock-2', 'fuzz-lock-3'])}`);
  if (target !== 'snap' && body && r.chance(0.3)) headers['Content-MD5'] = r.chance(0.6) ? md5b64(body) : wrongMd5(r, body);
  else if (target !== 'snap' && body && r.chance(0.5)) headers['Content-MD5'] = md5b64(body);
  if (body && r.chance(0.5)) headers['Content-Type'] = 'application/json';
  // `?wait` beyond a second would only make the run slow (a LOCK waits that long for a held fuzz lock).
  path = path.replace(/wait=[^&]*/g, () => `wait=${r.pick(['abc', '', '0', '1', '-1', '1x', '%zz', '0s', '500ms'])}`);
  maybeOddHeaders(r, headers);
  return { door, kind: `${target} ${method}`, method, path, headers, ...(body !== undefined ? { body } : {}) };
}

/** /api/v1/… */
function jsonApi(r: R, pools: Pools): Req {
  const headers: Record<string, string> = {};
  const anyKey = () => (r.chance(0.5) ? pathOf(fuzzKey(r)) : r.chance(0.5) ? pathOf(r.pick(SNAP_KEYS)) : badKeyTail(r));
  const routes: ReadonlyArray<readonly [number, () => Req]> = [
    [3, () => ({ door: 'api', kind: 'list states', method: 'GET', path: `/api/v1/states${queryOf(r, ['prefix', 'after', 'limit'])}`, headers })],
    [3, () => ({ door: 'api', kind: 'get state', method: r.pick(['GET', 'HEAD']), path: `/api/v1/states/${anyKey()}`, headers })],
    [2, () => ({ door: 'api', kind: 'delete state', method: 'DELETE', path: `/api/v1/states/${r.chance(0.7) ? pathOf(fuzzKey(r)) : badKeyTail(r)}`, headers })],
    [3, () => ({ door: 'api', kind: 'versions', method: 'GET', path: `/api/v1/versions/${anyKey()}${queryOf(r, ['after', 'limit'])}`, headers })],
    [3, () => ({ door: 'api', kind: 'content', method: 'GET', path: `/api/v1/content/${anyKey()}${queryOf(r, ['seq', 'serial'])}`, headers })],
    [3, () => ({ door: 'api', kind: 'diff', method: 'GET', path: `/api/v1/diff/${anyKey()}${queryOf(r, ['from', 'to', 'fromSerial', 'toSerial'])}`, headers })],
    [
      2,
      () => {
        const snap = r.chance(0.4);
        // On a snapshot key only a restore that names no valid version (it must be refused before anything).
        const q = snap ? r.pick(['', '?seq=abc', '?seq=-1', '?serial=x', '?seq=', '?seq=1e2', '?serial=%zz']) : queryOf(r, ['seq', 'serial', 'lockId']);
        return { door: 'api', kind: snap ? 'restore snapshot (bad version)' : 'restore', method: 'POST', path: `/api/v1/restore/${snap ? pathOf(r.pick(SNAP_KEYS)) : r.chance(0.8) ? pathOf(fuzzKey(r)) : badKeyTail(r)}${q}`, headers };
      },
    ],
    [3, () => ({ door: 'api', kind: 'list locks', method: 'GET', path: `/api/v1/locks${queryOf(r, ['prefix', 'after', 'limit'])}`, headers })],
    [3, () => ({ door: 'api', kind: 'get lock', method: 'GET', path: `/api/v1/locks/${anyKey()}`, headers })],
    [
      2,
      () => {
        // Force-unlock needs the holder's ID; a snapshot lock's is never sent.
        const snap = r.chance(0.4);
        const id = r.pick(['', 'fuzz-lock-1', 'fuzz-lock-2', r.id(), '%zz', 'x'.repeat(500)]);
        const params = [...(id ? [`id=${id}`] : []), ...(r.chance(0.3) ? ['evenIfAlive=true'] : [])];
        return { door: 'api', kind: snap ? 'force-unlock snapshot (wrong id)' : 'force-unlock', method: 'DELETE', path: `/api/v1/locks/${snap ? pathOf(r.pick(SNAP_KEYS)) : pathOf(fuzzKey(r))}${params.length ? `?${params.join('&')}` : ''}`, headers };
      },
    ],
    [3, () => ({ door: 'api', kind: 'audit', method: 'GET', path: `/api/v1/audit${queryOf(r, ['key', 'since', 'action', 'after', 'limit'])}`, headers })],
    [2, () => ({ door: 'api', kind: 'rejected', method: 'GET', path: `/api/v1/rejected/${anyKey()}${queryOf(r, ['after', 'limit'])}`, headers })],
    [2, () => ({ door: 'api', kind: 'rejected content', method: 'GET', path: `/api/v1/rejected-content/${anyKey()}${queryOf(r, ['id'])}`, headers })],
    [
      3,
      () => {
        const body = r.weighted<() => Buffer>([
          [3, () => Buffer.from(JSON.stringify({ key: fuzzKey(r), ttlSeconds: r.pick([undefined, 1, 30, 0, -1, 86401, 'abc', null, 1e308, 3600]), holder: r.pick([undefined, { pid: 1 }, 'str', [1], null]), ci: r.pick([undefined, { job: 'x', n: 1, deep: { a: 1 } }, 'x']) }))],
          [2, () => Buffer.from(JSON.stringify({ key: r.pick(['', '..', 'a//b', 'x'.repeat(2000), 5, null, ['a']]) }))],
          [2, () => Buffer.from(r.pick(['', '{', 'null', '[]', '"x"', '{"ttlSeconds":5}']))],
          [1, () => Buffer.concat([Buffer.from('{"key":"fuzz/'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])],
        ])();
        return {
          door: 'api',
          kind: 'create session',
          method: 'POST',
          path: '/api/v1/sessions',
          headers: { 'Content-Type': 'application/json' },
          body,
          learn: (status, answer) => {
            if (status === 201 && pools.sessions.length < 50) {
              try {
                pools.sessions.push(String((JSON.parse(answer.toString('utf8')) as { id: string }).id));
              } catch {
                // not JSON: nothing to learn
              }
            }
          },
        };
      },
    ],
    [
      2,
      () => {
        const id = pools.sessions.length && r.chance(0.6) ? r.pick(pools.sessions) : r.pick(['nope', '%zz', '..', 'x'.repeat(300), '']);
        const action = r.pick(['', '/heartbeat', '/end', '/other', '/end/extra']);
        const method = r.pick(['GET', 'POST', 'DELETE', 'PUT']);
        const body = method === 'POST' && action === '/end' ? Buffer.from(r.pick(['', '{"reason":"fuzz"}', '{', '[]', '{"reason":5}'])) : undefined;
        return { door: 'api', kind: `session ${method} ${action}`, method, path: `/api/v1/sessions/${id}${action}`, headers, ...(body ? { body } : {}) };
      },
    ],
    [
      2,
      () => {
        // Never a valid token request: statelock would then require tokens and the run would change meaning.
        const body = Buffer.from(r.pick(['', '{', '[]', 'null', '{"allow":["*:admin"]}', '{"name":5,"allow":["*:read"]}', '{"name":null,"allow":[]}', '{"name":["x"],"allow":["*:admin"],"aws":true}']));
        return { door: 'api', kind: 'create token (invalid)', method: 'POST', path: '/api/v1/tokens', headers: { 'Content-Type': 'application/json', ...(r.chance(0.4) ? { 'Content-MD5': wrongMd5(r, body) } : {}) }, body };
      },
    ],
    [1, () => ({ door: 'api', kind: 'list tokens', method: 'GET', path: '/api/v1/tokens', headers })],
    [1, () => ({ door: 'api', kind: 'revoke token', method: 'DELETE', path: `/api/v1/tokens/${r.pick(['nope', '%', '%zz', 'x'.repeat(500), 'a/b', '%2e%2e'])}`, headers })],
    [1, () => ({ door: 'api', kind: 'openapi', method: r.pick(['GET', 'HEAD', 'POST']), path: '/api/v1/openapi.json', headers })],
    [
      3,
      () => ({
        door: 'api',
        kind: 'odd route',
        method: r.pick(['GET', 'PUT', 'PATCH', 'LOCK', 'UNLOCK', 'POST', 'DELETE', 'OPTIONS', 'PROPFIND']),
        path: r.pick(['/api/v1/', '/api/v1', '/api/v2/states', '/api/v1//states', '/api/v1/states/', '/api/v1/nothing', '/api/v1/locks', '/api/v1/states', '/api/v1/audit', '/api/v1/restore', '/api/v1/tokens', '/api/v1/sessions', '/api/v1/openapi.json/x', '/api/v1/%73tates', '/api/v1/__proto__', '/api/v1/constructor', '/api/v1/__proto__/x', '/api/v1/hasOwnProperty/x']) + (r.chance(0.3) ? queryOf(r, ['limit', 'prefix']) : ''),
        headers,
        ...(r.chance(0.3) ? { body: Buffer.from(r.pick(['{}', '{', 'x'])) } : {}),
      }),
    ],
  ];
  const req = r.weighted(routes)();
  maybeOddHeaders(r, req.headers);
  return req;
}

type SignMode = 'valid' | 'unsigned' | 'garbage' | 'unknown-key' | 'wrong-secret' | 'skewed' | 'scope-date' | 'tampered';

function signMode(r: R): SignMode {
  return r.weighted<SignMode>([
    [12, 'valid'],
    [2, 'unsigned'],
    [2, 'garbage'],
    [1, 'unknown-key'],
    [1, 'wrong-secret'],
    [1, 'skewed'],
    [1, 'scope-date'],
    [3, 'tampered'],
  ]);
}

interface AwsShape {
  service: 's3' | 'dynamodb' | 'sts' | string;
  method: string;
  target: string;
  headers: Record<string, string>;
  body: Buffer;
  /** S3 only: the declared payload hash (default the body's hex SHA-256). */
  payloadHash?: string;
  /** The aws-chunked body to send instead, built from the seed signature. */
  streaming?: (seed: string, date: string, scope: string, key: Buffer) => Buffer;
}

/**
 * Signs `shape` as `mode` says. Only 'valid' may produce an acceptable request; the other modes are
 * each refused by the signature checks, so they may aim at snapshot keys (`snapTarget`).
 */
function signed(r: R, door: Door, kind: string, shape: AwsShape, mode: SignMode, snapTarget: () => { target: string; method?: string; body?: Buffer }): Req {
  const host = `127.0.0.1:${PORT}`;
  const now = Date.now();
  const date = amzDate(mode === 'skewed' ? now + r.pick([-1, 1]) * (16 + r.int(10000)) * 60_000 : now);
  const headers: Record<string, string> = { host: shape.headers['host'] ?? host, 'x-amz-date': date, ...shape.headers };
  const payloadHash = shape.service === 's3' ? shape.payloadHash ?? sha256hex(shape.body) : sha256hex(shape.body);
  if (shape.service === 's3') headers['x-amz-content-sha256'] = payloadHash;
  let target = shape.target;
  let method = shape.method;
  let body = shape.body;
  const aimAtSnapshot = () => {
    const snap = snapTarget();
    target = snap.target;
    if (snap.method) method = snap.method;
    if (snap.body) body = snap.body;
  };
  // Refused by the signature checks whatever it asks: aimed at the snapshot half of the time.
  if (mode !== 'valid' && mode !== 'tampered' && r.chance(0.5)) aimAtSnapshot();
  const spec: SignSpec = { method, target, headers: lower(headers), service: shape.service, payloadHash: shape.service === 's3' ? payloadHash : sha256hex(body) };
  if (mode === 'wrong-secret') spec.secret = 'not-the-secret';
  if (mode === 'unknown-key') spec.accessKeyId = r.pick(['AKIDUNKNOWN', 'ASIAFAKE', 'x', '%00', 'AKID/with/slash'.replace(/\//g, '')]);
  if (mode === 'scope-date') spec.scopeDate = r.pick(['20200101', '99999999', date.slice(0, 8).replace(/\d$/, (d) => String((Number(d) + 1) % 10))]);
  const sig = signV4(spec);
  let authorization = sig.authorization;
  let sendBody = shape.streaming && target === shape.target ? shape.streaming(sig.signature, date, sig.scope, sig.key) : body;
  const out: Record<string, string> = { ...headers, authorization };
  if (mode === 'unsigned') delete out['authorization'];
  if (mode === 'garbage') {
    out['authorization'] = r.pick([
      'AWS4-HMAC-SHA256',
      'AWS4-HMAC-SHA256 ',
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/${shape.service}/aws4_request`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/${shape.service}/aws4_request, SignedHeaders=host, Signature=zz`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/${shape.service}/aws4_request, SignedHeaders=x-amz-date, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/${shape.service}/aws4_request, SignedHeaders=host;HOST, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/${shape.service}/wrong, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=/${date.slice(0, 8)}/${REGION}/${shape.service}/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}//${shape.service}/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${date.slice(0, 8)}/${REGION}/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=a, Credential=b, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Foo=bar`,
      `AWS AKID:signature`,
      sig.authorization.replace(/Signature=[0-9a-f]+/, `Signature=${'a'.repeat(63)}`),
      sig.authorization.replace(/Signature=[0-9a-f]+/, `Signature=${'g'.repeat(64)}`),
      sig.authorization + ', Extra=1',
      `${sig.authorization}${'x'.repeat(3000)}`,
    ]);
    if (r.chance(0.2)) delete out['x-amz-date'];
    if (r.chance(0.2)) out['x-amz-date'] = r.pick(['yesterday', '20261301T000000Z', `${date}, ${date}`, '']);
  }
  if (mode === 'tampered') {
    // A valid signature, then the request is changed: a replay with another path, method, query, header or body.
    const change = r.pick(['path', 'method', 'query', 'header', 'body', 'signature', 'host', 'date', 'signed-headers', 'service']);
    switch (change) {
      case 'path': {
        const snap = snapTarget();
        target = snap.target;
        if (snap.body && r.chance(0.5)) sendBody = snap.body;
        break;
      }
      case 'method':
        method = r.pick(['DELETE', 'PUT', 'POST', 'GET'].filter((m) => m !== method));
        if (method === 'PUT' || method === 'POST') target = snapTarget().target;
        break;
      case 'query':
        target = `${target}${target.includes('?') ? '&' : '?'}${r.pick(['versionId=1', 'uploads', 'delete', 'x-id=DeleteObject', 'uploadId=abc', 'Action=GetUser'])}`;
        break;
      case 'header':
        if (out['x-amz-content-sha256']) out['x-amz-content-sha256'] = r.pick(['UNSIGNED-PAYLOAD', sha256hex('other'), 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'].filter((h) => h !== out['x-amz-content-sha256']));
        else out['x-amz-target'] = r.pick(['DynamoDB_20120810.DeleteItem', 'DynamoDB_20120810.PutItem', 'DynamoDB_20120810.DeleteTable'].filter((t) => t !== out['x-amz-target']));
        break;
      case 'body':
        sendBody = Buffer.concat([body, Buffer.from(' ')]);
        if (r.chance(0.5)) target = snapTarget().target;
        break;
      case 'signature':
        out['authorization'] = authorization.replace(/Signature=([0-9a-f])/, (_, c: string) => `Signature=${c === '0' ? '1' : '0'}`);
        if (r.chance(0.5)) aimAtSnapshot();
        break;
      case 'host':
        out['host'] = r.pick([`${SNAP_BUCKET}.localhost:${PORT}`, `snap.localhost:${PORT}`, 'example.com', `localhost:${PORT}`]);
        break;
      case 'date':
        out['x-amz-date'] = amzDate(now - 1000);
        if (r.chance(0.5)) aimAtSnapshot();
        break;
      case 'signed-headers':
        out['authorization'] = authorization.replace(/SignedHeaders=([^,]+)/, 'SignedHeaders=host');
        if (r.chance(0.5)) aimAtSnapshot();
        break;
      case 'service':
        out['authorization'] = authorization.replace(`/${shape.service}/aws4_request`, `/${shape.service === 's3' ? 'dynamodb' : 's3'}/aws4_request`);
        if (r.chance(0.5)) aimAtSnapshot();
        break;
    }
    authorization = out['authorization']!;
  }
  return { door, kind: `${mode} ${kind}`, method, path: target, headers: out, body: sendBody };
}

function lower(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

let PORT = 0;

/** The S3 door. */
function s3(r: R, pools: Pools): Req {
  const mode = signMode(r);
  const objKey = () => r.weighted<string>([
    [6, `k${r.int(8)}/terraform.tfstate`],
    [2, `k${r.int(8)}/terraform.tfstate.tflock`],
    [1, r.pick(['.tflock', 'a//b', '../snapbkt/s3/terraform.tfstate', '%2e%2e/x', 'x%2Fy', 'bad%zz', 'bad%ff', 'k/%00', `${'k'.repeat(1100)}`, 'sp%20ace', 'plus+', 'é'])],
  ]);
  const bucket = () => r.weighted<string>([
    [8, FUZZ_BUCKET],
    [1, `fz-${r.int(4)}`],
    [1, r.pick(['A', 'ab', 'x'.repeat(64), 'bad_name', 'nosuch-bucket', '..', 'a%2fb', '%zz', '-'])],
  ]);
  const snapTarget = () => {
    const which = r.pick([`/${SNAP_BUCKET}/s3/terraform.tfstate`, `/${SNAP_BUCKET}/s3/terraform.tfstate.tflock`, `/${SNAP_BUCKET}/dyn/terraform.tfstate`, '/snap/free', '/snap/http-locked', `/${SNAP_BUCKET}`, `/${SNAP_BUCKET}?delete`]);
    return { target: which, method: r.pick(['PUT', 'DELETE', 'POST', 'GET']), body: Buffer.from(stateBody(50, 'lin-evil')) };
  };
  const objectPath = () => `/${bucket()}/${objKey()}`;
  const rangeValues = ['bytes=0-0', 'bytes=0-', 'bytes=-1', 'bytes=-0', 'bytes=5-1', 'bytes=999999-', 'bytes=0-1,3-4', 'bytes=abc', 'items=0-1', 'bytes=-', 'bytes=', `bytes=${'9'.repeat(30)}-`, `bytes=0-${'9'.repeat(30)}`, 'bytes = 1 - 2', 'bytes=-99999999'];
  const shape: AwsShape = r.weighted<() => AwsShape>([
    [1, () => ({ service: 's3', method: 'GET', target: r.pick(['/', '/?x-id=ListBuckets', '/?max-buckets=abc']), headers: {}, body: Buffer.alloc(0) })],
    [1, () => ({ service: 's3', method: 'PUT', target: `/fz-${r.int(4)}`, headers: {}, body: Buffer.from(r.pick(['', '<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>', '<CreateBucketConfiguration>', 'garbage', '<Other/>', '<CreateBucketConfiguration><LocationConstraint><x/></LocationConstraint></CreateBucketConfiguration>'])) })],
    [1, () => ({ service: 's3', method: r.pick(['HEAD', 'DELETE']), target: `/${r.pick([`fz-${r.int(4)}`, 'nosuch-bucket', 'A'])}`, headers: {}, body: Buffer.alloc(0) })],
    [
      4,
      () => ({
        service: 's3',
        method: 'GET',
        target: `/${r.chance(0.9) ? FUZZ_BUCKET : bucket()}${r.pick(['', '/'])}${queryOf(r, ['list-type', 'prefix', 'delimiter', 'max-keys', 'continuation-token', 'start-after', 'encoding-type', 'marker', 'fetch-owner']).replace(/list-type=[^&]*/, (m) => (r.chance(0.5) ? 'list-type=2' : m))}`,
        headers: {},
        body: Buffer.alloc(0),
      }),
    ],
    [2, () => ({ service: 's3', method: 'GET', target: `/${FUZZ_BUCKET}?versions${queryOf(r, ['prefix', 'key-marker', 'version-id-marker', 'max-keys', 'delimiter', 'encoding-type']).replace('?', '&')}`, headers: {}, body: Buffer.alloc(0) })],
    [1, () => ({ service: 's3', method: 'GET', target: `/${FUZZ_BUCKET}?${r.pick(['versioning', 'location', 'acl', 'policy', 'tagging', 'cors', 'uploads', 'lifecycle', 'object-lock', 'website'])}`, headers: {}, body: Buffer.alloc(0) })],
    [
      7,
      () => {
        const key = objKey();
        const isLock = key.endsWith('.tflock');
        const body = isLock ? lockBodyFor(r, { mayBeValid: true }) : stateBodyFor(r, { mayBeValid: true });
        const headers: Record<string, string> = {};
        if (r.chance(0.2)) headers['content-md5'] = r.chance(0.5) ? md5b64(body) : wrongMd5(r, body);
        if (r.chance(0.25)) {
          const alg = r.pick(['sha256', 'crc32', 'crc32c', 'sha1', 'crc64nvme', 'md5', 'bogus']);
          headers[`x-amz-checksum-${alg}`] = r.pick([alg === 'sha256' ? createHash('sha256').update(body).digest('base64') : 'AAAAAA==', 'not base64!', '', createHash('sha256').update('x').digest('base64')]);
          if (r.chance(0.5)) headers['x-amz-sdk-checksum-algorithm'] = alg.toUpperCase();
        }
        if (r.chance(0.1)) headers['if-none-match'] = r.pick(['*', '"etag"', '']);
        if (r.chance(0.05)) headers['x-amz-copy-source'] = `/${SNAP_BUCKET}/s3/terraform.tfstate`;
        if (r.chance(0.1)) Object.assign(headers, r.pick([{ 'x-amz-server-side-encryption': r.pick(['AES256', 'aws:kms', 'bogus']) }, { 'x-amz-server-side-encryption-customer-algorithm': 'AES256', 'x-amz-server-side-encryption-customer-key': r.pick(['', Buffer.alloc(32).toString('base64'), 'short']), 'x-amz-server-side-encryption-customer-key-md5': md5b64(Buffer.alloc(32)) }]));
        const variant = r.weighted<string>([
          [6, 'plain'],
          [1, 'unsigned-payload'],
          [2, 'unsigned-chunked'],
          [1, 'signed-chunked'],
          [1, 'bad-payload-hash'],
        ]);
        const target = `/${r.chance(0.9) ? FUZZ_BUCKET : bucket()}/${key}${r.chance(0.1) ? queryOf(r, ['x-id', 'versionId']) : ''}`;
        if (variant === 'unsigned-payload') return { service: 's3', method: 'PUT', target, headers, body, payloadHash: 'UNSIGNED-PAYLOAD' };
        if (variant === 'bad-payload-hash') return { service: 's3', method: 'PUT', target, headers, body, payloadHash: r.pick([sha256hex('other'), 'xyz', 'STREAMING-NONSENSE', '', 'A'.repeat(64), 'unsigned-payload']) };
        if (variant === 'unsigned-chunked') {
          const sum = createHash('sha256').update(body).digest('base64');
          let chunked = unsignedChunkedBody(body, 1 + r.int(64), r.chance(0.7) ? { 'x-amz-checksum-sha256': r.chance(0.8) ? sum : 'AAAA' } : {});
          if (r.chance(0.4)) {
            const s = chunked.toString('latin1');
            chunked = Buffer.from(
              r.pick([
                s.replace(/^[0-9a-f]+/, 'zz'),
                s.slice(0, Math.max(0, s.length - 3 - r.int(10))),
                s + 'garbage',
                s.replace('\r\n', '\n'),
                s.replace(/^[0-9a-f]+/, 'fffffffffffff'),
                s.replace(/^[0-9a-f]+/, '1'.repeat(20)),
                s.replace(/^([0-9a-f]+)/, '$1;chunk-signature=abc'),
                s.replace(/0\r\n/, '0\r\nx-amz-checksum-sha256:a\r\nx-amz-checksum-sha256:b\r\n'),
                s.replace(/0\r\n/, '0\r\n__proto__:x\r\n'),
                `0\r\n\r\n`,
                '',
              ]),
              'latin1',
            );
          }
          return {
            service: 's3',
            method: 'PUT',
            target,
            headers: { ...headers, 'content-encoding': r.pick(['aws-chunked', 'gzip,aws-chunked', 'aws-chunked, identity']), 'x-amz-decoded-content-length': r.chance(0.85) ? String(body.length) : r.pick(['abc', '0', String(body.length + 1), '-1']), 'x-amz-trailer': 'x-amz-checksum-sha256' },
            body: chunked,
            payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
          };
        }
        // Signed aws-chunked: the chunk signatures chain on the seed signature.
        const pieces = [body.subarray(0, Math.floor(body.length / 2)), body.subarray(Math.floor(body.length / 2))].filter((p) => p.length);
        const corrupt = r.chance(0.5);
        return {
          service: 's3',
          method: 'PUT',
          target,
          headers: { ...headers, 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(body.length) },
          body: Buffer.alloc(0),
          payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
          streaming: (seed, date, scope, key) => {
            const encoded = signedChunkedBody(pieces, seed, date, scope, key);
            if (!corrupt) return encoded;
            const s = encoded.toString('latin1');
            return Buffer.from(r.pick([s.replace(/chunk-signature=[0-9a-f]{64}/, `chunk-signature=${'0'.repeat(64)}`), s.replace(/chunk-signature=[0-9a-f]{64}/g, ''), s.slice(0, s.length - 5)]), 'latin1');
          },
        };
      },
    ],
    [
      5,
      () => {
        const headers: Record<string, string> = {};
        if (r.chance(0.5)) headers['range'] = r.pick(rangeValues);
        if (r.chance(0.2)) headers['x-amz-checksum-mode'] = r.pick(['ENABLED', 'enabled', 'x']);
        if (r.chance(0.1)) headers['if-match'] = r.pick(['"x"', '*']);
        const base = r.chance(0.85) ? `/${FUZZ_BUCKET}/${objKey()}` : objectPath();
        const q = r.chance(0.4) ? queryOf(r, ['versionId', 'response-content-type', 'response-content-disposition', 'response-cache-control', 'response-expires', 'partNumber', 'x-id']) : '';
        const extra = r.chance(0.1) ? `${q ? '&' : '?'}response-content-type=${r.pick(['text%2Fhtml', '%E2%82%AC', '%00', '%0d%0aX-Evil%3A%201', '%7f', 'a%09b', '%ff'])}` : '';
        return { service: 's3', method: r.pick(['GET', 'HEAD']), target: `${base}${q}${extra}`, headers, body: Buffer.alloc(0) };
      },
    ],
    [3, () => ({ service: 's3', method: 'DELETE', target: `/${r.chance(0.9) ? FUZZ_BUCKET : bucket()}/${objKey()}${r.chance(0.2) ? r.pick(['?versionId=1', '?versionId=null', '?versionId=abc']) : ''}`, headers: {}, body: Buffer.alloc(0) })],
    [
      2,
      () => {
        const keys = Array.from({ length: 1 + r.int(4) }, () => r.pick([objKey(), '../snapbkt/s3/terraform.tfstate', '', 'k1/terraform.tfstate', '&amp;', '<x>']));
        const xml = r.chance(0.7)
          ? `<Delete>${r.chance(0.3) ? '<Quiet>true</Quiet>' : ''}${keys.map((k) => `<Object><Key>${k}</Key>${r.chance(0.1) ? '<VersionId>1</VersionId>' : ''}</Object>`).join('')}</Delete>`
          : r.pick(['', 'garbage', '<Delete>', '<Delete><Object></Object></Delete>', '<Other/>', '<!DOCTYPE x><Delete/>', '<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>', `<Delete>${'<Object><Key>k</Key></Object>'.repeat(1500)}</Delete>`]);
        const body = Buffer.from(xml);
        return { service: 's3', method: 'POST', target: `/${FUZZ_BUCKET}?delete`, headers: { 'content-md5': r.chance(0.8) ? md5b64(body) : wrongMd5(r, body) }, body };
      },
    ],
    [2, () => ({ service: 's3', method: 'POST', target: `/${r.chance(0.9) ? FUZZ_BUCKET : bucket()}/${objKey()}?uploads`, headers: r.chance(0.2) ? { 'x-amz-checksum-algorithm': r.pick(['SHA256', 'bogus']) } : {}, body: Buffer.alloc(0), learn: true } as AwsShape)],
    [
      5,
      (): AwsShape => {
        const upload = pools.uploads.length && r.chance(0.85) ? r.pick(pools.uploads) : { key: `${FUZZ_BUCKET}/k1/terraform.tfstate`, uploadId: r.pick(['nope', '', '%zz', 'x'.repeat(300)]), etag: '"x"' };
        const path = `/${r.chance(0.9) ? upload.key : `${FUZZ_BUCKET}/${objKey()}`}`;
        const op = r.weighted<string>([
          [3, 'part'],
          [1, 'list'],
          [1, 'abort'],
          [5, 'complete'],
        ]);
        if (op === 'part') {
          const body = r.chance(0.5) ? Buffer.from(stateBody(3, 'lin-mp').slice(0, 40)) : r.bytes(r.int(300));
          return { service: 's3', method: 'PUT', target: `${path}?partNumber=${r.pick(['1', '2', '0', '10001', '-1', 'abc', '99999', '', '1.5'])}&uploadId=${encodeURIComponent(upload.uploadId)}`, headers: r.chance(0.1) ? { 'x-amz-copy-source': '/snapbkt/s3/terraform.tfstate' } : {}, body };
        }
        if (op === 'list') return { service: 's3', method: 'GET', target: `${path}?uploadId=${encodeURIComponent(upload.uploadId)}${queryOf(r, ['max-parts', 'part-number-marker']).replace('?', '&')}`, headers: {}, body: Buffer.alloc(0) };
        if (op === 'abort') return { service: 's3', method: 'DELETE', target: `${path}?uploadId=${encodeURIComponent(upload.uploadId)}`, headers: {}, body: Buffer.alloc(0) };
        const part = (n: string, etag: string) => `<Part><PartNumber>${n}</PartNumber><ETag>${etag}</ETag></Part>`;
        const xml = r.pick([
          '',
          'garbage',
          '<CompleteMultipartUpload>',
          '<CompleteMultipartUpload></CompleteMultipartUpload>',
          `<CompleteMultipartUpload>${part('1', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${part('1', upload.etag)}${part('2', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('2', upload.etag)}${part('1', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('1', '"wrong"')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('abc', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('99999999', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('', '')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>`,
          `<!DOCTYPE lolz [<!ENTITY lol "lol">]><CompleteMultipartUpload>${part('1', '&lol;')}</CompleteMultipartUpload>`,
          `<?xml version="1.0"?><CompleteMultipartUpload>${part('1', '&#x110000;')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('1', '&unknown;')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('1', '&amp')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload><![CDATA[${part('1', upload.etag)}]]></CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${'<a>'.repeat(20000)}${'</a>'.repeat(20000)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${'<a>'.repeat(20000)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload a="1" a="2">${part('1', upload.etag)}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload <x>>`,
          `<x:CompleteMultipartUpload xmlns:x="y">${part('1', upload.etag)}</x:CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('1', upload.etag)}</CompleteMultipartUpload><Second/>`,
          `<CompleteMultipartUpload>${Array.from({ length: 1200 }, (_, i) => part(String(i + 1), upload.etag)).join('')}</CompleteMultipartUpload>`,
          `<CompleteMultipartUpload>${part('1', upload.etag)}`,
          '\u0000\u0001\u0002',
          `<CompleteMultipartUpload>${part('1', `"${'f'.repeat(100000)}"`)}</CompleteMultipartUpload>`,
        ]);
        const body = r.chance(0.1) ? Buffer.concat([Buffer.from('<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>'), Buffer.from([0xff, 0xfe]), Buffer.from('</ETag></Part></CompleteMultipartUpload>')]) : Buffer.from(xml);
        return { service: 's3', method: 'POST', target: `${path}?uploadId=${encodeURIComponent(upload.uploadId)}`, headers: r.chance(0.1) ? { 'x-amz-checksum-sha256': 'AAAA' } : {}, body };
      },
    ],
    [1, () => ({ service: 's3', method: r.pick(['PATCH', 'OPTIONS', 'LOCK', 'POST', 'PUT']), target: `/${FUZZ_BUCKET}/${objKey()}?${r.pick(['acl', 'tagging', 'restore', 'select', 'retention', 'legal-hold', 'torrent', 'attributes', 'renameObject'])}`, headers: {}, body: Buffer.from('<x/>') })],
    [1, () => ({ service: 's3', method: 'GET', target: `/${objKey()}`, headers: { host: `${FUZZ_BUCKET}.localhost:${PORT}` }, body: Buffer.alloc(0) })],
  ])();
  const learnUploads = (shape as AwsShape & { learn?: boolean }).learn === true;
  delete (shape as AwsShape & { learn?: boolean }).learn;
  const req = signed(r, 's3', `${shape.method} ${shape.target.split('?')[1]?.split('=')[0] ?? 'object'}`, shape, mode, snapTarget);
  if (learnUploads && mode === 'valid') {
    const key = req.path.split('?')[0]!.slice(1);
    req.learn = (status, answer) => {
      const m = /<UploadId>([^<]+)<\/UploadId>/.exec(answer.toString('utf8'));
      if (status === 200 && m && pools.uploads.length < 60) pools.uploads.push({ key, uploadId: m[1]!, etag: '"none"' });
    };
  }
  return req;
}

/** Deeply nested DynamoDB attribute values and expressions. */
function deepValue(kind: 'L' | 'M', depth: number): string {
  return kind === 'L' ? `${'{"L":['.repeat(depth)}{"S":"x"}${']}'.repeat(depth)}` : `${'{"M":{"a":'.repeat(depth)}{"S":"x"}${'}}'.repeat(depth)}`;
}

/** The DynamoDB door. */
function dynamodb(r: R): Req {
  const mode = signMode(r);
  const fuzzLockId = () => r.weighted<string>([
    [6, `${FUZZ_BUCKET}/k${r.int(8)}/terraform.tfstate`],
    [2, `${FUZZ_BUCKET}/k${r.int(8)}/terraform.tfstate-md5`],
    [1, r.pick(['', '..', 'a//b', '-md5', 'x'.repeat(2000), 'a\u0000b', 'fuzz/a/../b', 'fuzzbkt/%2e%2e'])],
  ]);
  const readLockId = () => (r.chance(0.3) ? r.pick([SNAP.dynamo, `${SNAP.dynamo}-md5`, SNAP.s3, SNAP.httpLocked, `${SNAP.free}-md5`]) : fuzzLockId());
  const table = () => r.pick(['locks', 'terraform-locks', 'fuzz-table', '', 'x'.repeat(300), 'bad name!', 'é']);
  const cond = () =>
    r.pick([
      'attribute_not_exists(LockID)',
      'attribute_exists(LockID)',
      'Info = :info',
      '#l = :v',
      'attribute_not_exists(LockID) OR Info = :info',
      'NOT attribute_exists(LockID)',
      '(attribute_not_exists(LockID))',
      'attribute_not_exists(',
      'attribute_not_exists(LockID, Info)',
      'begins_with(LockID, :v)',
      'size(Info) > :v',
      'LockID < :v',
      'LockID BETWEEN :a AND :b',
      'a.b = :v',
      'a[0] = :v',
      'Info = :undefined',
      '#undefined = :v',
      '',
      '   ',
      ')(',
      '=',
      ':',
      '#',
      'AND',
      'attribute_not_exists(LockID) AND',
      `${'NOT '.repeat(r.pick([100, 5000, 40000]))}attribute_exists(LockID)`,
      `${'('.repeat(r.pick([100, 5000, 40000]))}attribute_exists(LockID)${')'.repeat(r.pick([100, 5000, 40000]))}`,
      `${Array.from({ length: 3000 }, () => 'attribute_exists(LockID)').join(' AND ')}`,
      'Info = :info\u0000',
      'é = :v',
    ]);
  const names = () => r.pick([undefined, {}, { '#l': 'LockID' }, { '#l': 5 }, { l: 'LockID' }, [], 'x', { '#undefined': 'x' }]);
  const values = () =>
    r.pick<unknown>([
      undefined,
      {},
      { ':info': { S: '{"ID":"x"}' } },
      { ':v': { S: 'x' } },
      { ':v': { N: 'abc' } },
      { ':v': { S: 1 } },
      { ':v': { X: 'y' } },
      { ':v': { S: 'a', N: '1' } },
      { ':v': {} },
      { ':v': null },
      { v: { S: 'x' } },
      { ':v': { NULL: false } },
      { ':v': { SS: [] } },
      { ':v': { SS: ['a', 'a'] } },
      { ':v': { NS: ['1', 'x'] } },
      { ':v': { B: 5 } },
      { ':v': { L: 'x' } },
      { ':v': { M: [] } },
      'DEEP_L',
      'DEEP_M',
    ]);
  const op = r.weighted<string>([
    [5, 'GetItem'],
    [5, 'PutItem'],
    [5, 'DeleteItem'],
    [3, 'Scan'],
    [1, 'CreateTable'],
    [1, 'DescribeTable'],
    [1, 'ListTables'],
    [1, 'DeleteTable'],
    [1, 'Query'],
    [1, 'UpdateItem'],
    [1, 'BatchWriteItem'],
    [1, 'odd'],
  ]);
  const doc: Record<string, unknown> = { TableName: table() };
  // A third of the requests are well-formed (what Terraform, OpenTofu and the CLI send), so the operations
  // themselves run — against fuzz lock IDs — and the rest are broken in one or more places.
  const clean = r.chance(0.35) && ['GetItem', 'PutItem', 'DeleteItem', 'Scan', 'DescribeTable', 'ListTables', 'CreateTable'].includes(op);
  if (clean) {
    doc.TableName = r.pick(['locks', 'terraform-locks', `fuzz-${r.int(3)}`]);
    const info = lockBody(r.pick(['fuzz-lock-1', 'fuzz-lock-2', r.id()]), 'OperationTypeApply', 'dyn@fuzz');
    if (op === 'GetItem') Object.assign(doc, { Key: { LockID: { S: readLockId() } }, ConsistentRead: true }, r.chance(0.3) ? { ProjectionExpression: 'LockID, Info' } : {});
    if (op === 'PutItem') {
      Object.assign(doc, { Item: { LockID: { S: `${FUZZ_BUCKET}/k${r.int(8)}/terraform.tfstate` }, Info: { S: info } } });
      if (r.chance(0.7)) doc.ConditionExpression = 'attribute_not_exists(LockID)';
    }
    if (op === 'DeleteItem') {
      Object.assign(doc, { Key: { LockID: { S: `${FUZZ_BUCKET}/k${r.int(8)}/terraform.tfstate` } } });
      if (r.chance(0.5)) Object.assign(doc, { ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: info } } });
    }
    if (op === 'Scan') Object.assign(doc, r.chance(0.5) ? { Limit: 1 + r.int(5) } : {}, r.chance(0.3) ? { Select: 'COUNT' } : {});
    if (op === 'ListTables') Object.assign(doc, { Limit: 1 + r.int(100) });
    if (op === 'CreateTable') Object.assign(doc, { TableName: `fuzz-${r.int(3)}`, KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], BillingMode: 'PAY_PER_REQUEST' });
  } else {
    if (op === 'GetItem') Object.assign(doc, { Key: { LockID: { S: readLockId() } }, ProjectionExpression: r.pick([undefined, 'LockID', 'Info, Digest', '#l', 'a.b', '', 'LockID,,Info']), AttributesToGet: r.pick([undefined, ['Info'], [], ['a', 'a'], 'x']), ConsistentRead: r.pick([undefined, true, 'yes']) });
    if (op === 'PutItem') Object.assign(doc, { Item: r.pick<unknown>([{ LockID: { S: fuzzLockId() }, Info: { S: lockBodyFor(r, { mayBeValid: true }).toString('utf8') } }, { LockID: { S: fuzzLockId() }, Digest: { S: r.pick(['0'.repeat(32), 'xyz', 'A'.repeat(32)]) } }, { LockID: { N: '1' } }, { Info: { S: 'x' } }, { LockID: { S: fuzzLockId() }, Info: { S: 'x' }, Extra: { S: 'y' } }, { LockID: { S: fuzzLockId() }, Info: 'DEEP_L' }, [], null, 'x']), ReturnValues: r.pick([undefined, 'ALL_OLD', 'NONE', 'ALL_NEW', 5]), ReturnValuesOnConditionCheckFailure: r.pick([undefined, 'ALL_OLD', 'x']) });
    if (op === 'DeleteItem') Object.assign(doc, { Key: r.pick<unknown>([{ LockID: { S: fuzzLockId() } }, { LockID: { S: fuzzLockId() }, Other: { S: 'x' } }, { LockID: { N: '1' } }, {}, null, [], { LockID: { S: '' } }]), ReturnValues: r.pick([undefined, 'ALL_OLD', 'UPDATED_NEW']) });
    if (op === 'PutItem' || op === 'DeleteItem') {
      if (r.chance(0.6)) doc.ConditionExpression = cond();
      if (r.chance(0.1)) doc.Expected = { LockID: { Exists: false } };
    }
    if (op === 'Scan') Object.assign(doc, { Limit: r.pick([undefined, 1, 0, -1, 'x', 1.5, 1e9]), ExclusiveStartKey: r.pick([undefined, { LockID: { S: readLockId() } }, { LockID: { S: '' } }, 'x', { Other: { S: 'y' } }]), Select: r.pick([undefined, 'COUNT', 'ALL_ATTRIBUTES', 'SPECIFIC_ATTRIBUTES', 'ALL_PROJECTED_ATTRIBUTES', 'x']), FilterExpression: r.pick([undefined, undefined, 'a = :b']), Segment: r.pick([undefined, undefined, 0]) });
    if (op === 'CreateTable') Object.assign(doc, { KeySchema: r.pick([[{ AttributeName: 'LockID', KeyType: 'HASH' }], [], 'x', [{ AttributeName: 'Other', KeyType: 'HASH' }]]), AttributeDefinitions: r.pick([[{ AttributeName: 'LockID', AttributeType: 'S' }], [{ AttributeName: 'LockID', AttributeType: 'N' }], null]), BillingMode: r.pick([undefined, 'PAY_PER_REQUEST', 'PROVISIONED', 'x']), ProvisionedThroughput: r.pick([undefined, { ReadCapacityUnits: 1, WriteCapacityUnits: 1 }, { ReadCapacityUnits: -1 }, 'x']), TableName: r.pick(['fuzz-table', `fuzz-${r.int(5)}`, '', 'x'.repeat(300)]) });
    if (op === 'ListTables') Object.assign(doc, { Limit: r.pick([undefined, 1, 100, 101, 0, 'x']), ExclusiveStartTableName: r.pick([undefined, 'a', 5]) });
    if (op === 'DeleteTable') doc.TableName = r.pick(['fuzz-table', `fuzz-${r.int(5)}`, 'nosuch', '']);
    if (r.chance(0.3)) doc.ExpressionAttributeNames = names();
    if (r.chance(0.3)) doc.ExpressionAttributeValues = values();
    if (r.chance(0.1)) doc.ReturnConsumedCapacity = r.pick(['TOTAL', 'x', 5]);
    // Randomly drop or corrupt one member.
    if (r.chance(0.2)) {
      const k = r.pick(Object.keys(doc));
      if (r.chance(0.5)) delete doc[k];
      else doc[k] = r.pick<unknown>([null, 5, 'x', [], {}, true, { S: 'x' }]);
    }
  }
  for (const k of Object.keys(doc)) if (doc[k] === undefined) delete doc[k];
  let text = JSON.stringify(doc)
    .replace('"DEEP_L"', deepValue('L', r.pick([50, 3000, 30000])))
    .replace('"DEEP_M"', deepValue('M', r.pick([50, 3000, 30000])));
  if (!clean && r.chance(0.1)) text = r.pick(['', '{', 'null', '[]', '"x"', '5', text.slice(0, text.length >> 1), `${text}x`, `\ufeff${text}`]);
  let body = Buffer.from(text);
  if (!clean && r.chance(0.03)) body = Buffer.concat([Buffer.from('{"TableName":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  const targetHeader = op === 'odd' ? r.pick(['', 'DynamoDB_20120810.', 'DynamoDB_20120810.__proto__', 'DynamoDB_20120810.constructor', 'DynamoDB_20120810.hasOwnProperty', 'dynamodb_20120810.GetItem', 'DynamoDB_20111205.GetItem', 'GetItem', 'DynamoDB_20120810.GetItem\u0000']) : `DynamoDB_20120810.${op}`;
  const headers: Record<string, string> = { 'content-type': clean ? 'application/x-amz-json-1.0' : r.pick(['application/x-amz-json-1.0', 'application/x-amz-json-1.0', 'application/json', 'text/plain']), 'x-amz-target': targetHeader };
  if (op === 'odd' && r.chance(0.3)) delete headers['x-amz-target'];
  const snapTarget = () => ({
    target: '/',
    body: Buffer.from(JSON.stringify({ TableName: 'locks', Key: { LockID: { S: r.pick([SNAP.dynamo, SNAP.s3, SNAP.httpLocked, SNAP.lockOnly]) } } })),
  });
  // Only where the signature is sure to be refused: a valid or tampered signature over DeleteItem would be a real DeleteItem.
  if (mode !== 'valid' && mode !== 'tampered' && r.chance(0.5)) headers['x-amz-target'] = r.pick(['DynamoDB_20120810.DeleteItem', 'DynamoDB_20120810.PutItem']);
  const shape: AwsShape = { service: 'dynamodb', method: r.chance(0.97) ? 'POST' : r.pick(['GET', 'PUT', 'DELETE']), target: r.chance(0.97) ? '/' : r.pick(['/x', '/..', '/?a=b']), headers, body };
  return signed(r, 'dynamodb', op, shape, mode, snapTarget);
}

/** STS / IAM. */
function sts(r: R): Req {
  const mode = signMode(r);
  const service = r.weighted<string>([
    [6, 'sts'],
    [2, 'iam'],
    [1, r.pick(['ec2', 'STS', 's3x', 'sts '])],
  ]);
  const action = r.pick(['GetCallerIdentity', 'GetUser', 'AssumeRole', 'Nothing', '', '%00', 'GetCallerIdentity&Action=GetUser']);
  const version = r.pick(['2011-06-15', '2010-05-08', '', 'x']);
  const form = r.chance(0.8) ? `Action=${action}&Version=${version}` : r.pick(['', 'garbage', '&&&', '=', 'Action', `Action=${'x'.repeat(5000)}`]);
  const viaGet = r.chance(0.2);
  const shape: AwsShape = {
    service,
    method: viaGet ? 'GET' : 'POST',
    target: viaGet ? `/?${form}` : '/',
    headers: viaGet ? {} : { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: viaGet ? Buffer.alloc(0) : Buffer.from(form),
  };
  return signed(r, 'sts', `${viaGet ? 'GET' : 'POST'} ${action}`, shape, mode, () => ({ target: '/' }));
}

/** /healthz, /readyz, /metrics and paths that belong to no door. */
function ops(r: R): Req {
  const path = r.pick(['/healthz', '/readyz', '/metrics', '/healthz/', '/HEALTHZ', '/readyz?x=%zz', '/metrics?name[]=x', '/', '/favicon.ico', '/state', '/lock', '/api', '/api/v1', '//state/a', '/state/', '/lock/', '/%2e%2e/state/a', '/dashboard', '/.env', '/healthz%00']);
  const method = r.weighted<string>([
    [6, 'GET'],
    [2, 'HEAD'],
    [1, r.pick(['POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'LOCK', 'PATCH'])],
  ]);
  const headers: Record<string, string> = {};
  maybeOddHeaders(r, headers);
  return { door: 'ops', kind: `${method} ${path}`, method, path, headers, ...(method === 'POST' || method === 'PUT' ? { body: Buffer.from(r.pick(['', '{}', 'x'])) } : {}) };
}

/** Malformed HTTP on the raw socket: framing, request lines, truncation, oversized headers. */
function rawHttp(r: R): Req {
  const host = `Host: 127.0.0.1:${PORT}\r\n`;
  const key = r.chance(0.5) ? pathOf(fuzzKey(r)) : pathOf(r.pick(SNAP_KEYS));
  const valid = Buffer.from(stateBody(40 + r.int(10), r.pick(['lin-a', 'lin-evil'])));
  const make = (kind: string, bytes: Buffer | string, halfClose = false, expectAnswer = true): Req => ({
    door: 'raw',
    kind,
    method: 'RAW',
    path: '',
    headers: {},
    raw: { bytes: Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1'), halfClose, expectAnswer },
  });
  const cases: ReadonlyArray<readonly [number, () => Req]> = [
    [2, () => make('garbage request line', r.pick(['THIS IS NOT HTTP\r\n\r\n', 'GET\r\n\r\n', 'GET / HTTP/1.1 x\r\n\r\n', 'get /healthz HTTP/1.1\r\n\r\n', 'GET /healthz HTTP/9.9\r\n\r\n', ' GET /healthz HTTP/1.1\r\n\r\n', 'GET  /healthz  HTTP/1.1\r\n\r\n', 'G\u0000ET / HTTP/1.1\r\n\r\n', `${'A'.repeat(5000)} / HTTP/1.1\r\n\r\n`]))],
    // Empty lines before a request line are allowed: the server waits for the rest, so hang up.
    [1, () => make('empty lines, then EOF', '\r\n\r\n\r\n', true, false)],
    [2, () => make('random bytes', Buffer.concat([r.bytes(1 + r.int(300)), Buffer.from('\r\n\r\n')]))],
    [1, () => make('TLS hello on the plain port', Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), r.bytes(60)]))],
    [3, () => make('huge header', `GET /state/${key} HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(16 * 1024 + r.int(48 * 1024))}\r\n\r\n`)],
    [1, () => make('many headers', `GET /healthz HTTP/1.1\r\n${host}${Array.from({ length: 300 + r.int(2000) }, (_, i) => `X-${i}: ${'v'.repeat(20)}\r\n`).join('')}\r\n`)],
    [1, () => make('huge URL', `GET /state/${'u'.repeat(17 * 1024 + r.int(64 * 1024))} HTTP/1.1\r\n${host}\r\n`)],
    [
      5,
      () => {
        // The body stops short of its Content-Length and the client half-closes: nothing may be stored.
        const method = r.pick(['POST', 'PUT', 'LOCK', 'UNLOCK']);
        const body = method === 'LOCK' || method === 'UNLOCK' ? Buffer.from(lockBody(randomUUID())) : valid;
        const sent = body.subarray(0, r.int(body.length));
        return make(`truncated ${method}`, Buffer.concat([Buffer.from(`${method} /state/${key} HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n${r.chance(0.5) ? `Content-MD5: ${md5b64(body)}\r\n` : ''}\r\n`, 'latin1'), sent]), true, false);
      },
    ],
    [
      2,
      () => {
        // A body longer than its Content-Length: the extra bytes become the next (garbage) request.
        const declared = r.int(valid.length);
        return make('body longer than Content-Length', Buffer.concat([Buffer.from(`POST /state/${key} HTTP/1.1\r\n${host}Content-Length: ${declared}\r\nContent-MD5: ${wrongMd5(r, valid)}\r\n\r\n`, 'latin1'), valid]));
      },
    ],
    [
      2,
      () =>
        make(
          'bad framing',
          r.pick([
            `POST /state/${key} HTTP/1.1\r\n${host}Content-Length: abc\r\n\r\n`,
            `POST /state/${key} HTTP/1.1\r\n${host}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
            `POST /state/${key} HTTP/1.1\r\n${host}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
            `POST /state/${key} HTTP/1.1\r\n${host}Transfer-Encoding: gzip\r\n\r\nabc`,
            `POST /state/${key} HTTP/1.1\r\n${host}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`,
            `POST /state/${key} HTTP/1.1\r\n${host}Content-Length: -1\r\n\r\n`,
            `POST /state/${key} HTTP/1.1\r\n${host}Content-Length: 99999999999999999999\r\n\r\n`,
            `GET /healthz HTTP/1.1\r\n${host}X-A: a\r\n b\r\n\r\n`,
            `GET /healthz HTTP/1.1\r\n${host}X-A : a\r\n\r\n`,
            `GET /healthz HTTP/1.1\r\n${host}X-A: a\u0001b\r\n\r\n`,
            `GET /healthz HTTP/1.1\r\n${host}NoColon\r\n\r\n`,
            `GET /healthz HTTP/1.1\r\n${host}${host}\r\n`,
            'GET /healthz HTTP/1.1\r\n\r\n',
            `GET /healthz HTTP/1.1\n${host.replace('\r', '')}\n`,
          ]),
        ),
    ],
    [
      3,
      () => {
        // Chunked bodies that are malformed or never finish.
        const body = valid.toString('latin1');
        const choice = r.int(4);
        const head = `POST /state/${key} HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nContent-MD5: ${wrongMd5(r, valid)}\r\n\r\n`;
        if (choice === 0) return make('bad chunk size', `${head}zz\r\n${body}\r\n0\r\n\r\n`);
        if (choice === 1) return make('huge chunk size', `${head}fffffffffffffffffff\r\n${body}`);
        if (choice === 2) return make('chunk without CRLF', `${head}${body.length.toString(16)}\r\n${body}XX0\r\n\r\n`);
        return make('chunked, cut off', `${head}${body.length.toString(16)}\r\n${body.slice(0, body.length >> 1)}`, true, false);
      },
    ],
    [
      1,
      () => {
        // Over --max-body-bytes, declared or streamed chunked: 413 (the rest is not read), nothing stored.
        const big = Buffer.alloc(MAX_BODY + 1 + r.int(4096), 0x20);
        const path = r.pick([`/state/${key}`, `/lock/${key}`, '/api/v1/sessions', '/']);
        if (r.chance(0.5)) return make('over the body limit (Content-Length)', Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\n${host}Content-Length: ${big.length}\r\n\r\n`, 'latin1'), big]), false, false);
        const piece = big.subarray(0, 64 * 1024);
        const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
        return make('over the body limit (chunked)', Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\n`, 'latin1'), ...Array.from({ length: Math.ceil(big.length / piece.length) + 1 }, () => chunk), Buffer.from('0\r\n\r\n')]), false, false);
      },
    ],
    [1, () => make('HTTP/1.0', `GET /state/${key} HTTP/1.0\r\n\r\n`)],
    [1, () => make('absolute-form', `GET http://127.0.0.1:${PORT}/state/${key} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`)],
    [1, () => make('asterisk-form', `OPTIONS * HTTP/1.1\r\n${host}Connection: close\r\n\r\n`)],
    [1, () => make('CONNECT', `CONNECT 127.0.0.1:${PORT} HTTP/1.1\r\n${host}\r\n`, false, false)],
    [1, () => make('pipelined', `GET /healthz HTTP/1.1\r\n${host}\r\nGET /state/${key} HTTP/1.1\r\n${host}\r\nDELETE /state/%2e%2e HTTP/1.1\r\n${host}Connection: close\r\n\r\n`)],
    [1, () => make('upgrade', `GET /healthz HTTP/1.1\r\n${host}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, false, false)],
  ];
  return r.weighted(cases)();
}

/* ================================================================== */
/* Snapshot                                                            */
/* ================================================================== */

interface Snapshot {
  perKey: Record<string, { state: { status: number; sha256: string }; versions: unknown; lock: unknown; rejected: unknown }>;
  states: unknown[];
  locks: unknown[];
}

type Get = (path: string) => Promise<{ status: number; body: Buffer; json<T = unknown>(): T }>;

/** A lock as the API shows it, without the fields that change with the clock. */
function stableLock(lock: Record<string, unknown>): Record<string, unknown> {
  const { ageSeconds: _a, verdict: _v, evidence: _e, waiters: _w, idleSeconds: _i, stale: _s, ...rest } = lock;
  return rest;
}

async function takeSnapshot(get: Get): Promise<Snapshot> {
  const perKey: Snapshot['perKey'] = {};
  for (const key of SNAP_KEYS) {
    const state = await get(`/state/${pathOf(key)}`);
    const versions = await get(`/api/v1/versions/${pathOf(key)}?limit=1000`);
    const lock = await get(`/api/v1/locks/${pathOf(key)}`);
    const rejected = await get(`/api/v1/rejected/${pathOf(key)}?limit=1000`);
    perKey[key] = {
      state: { status: state.status, sha256: sha256hex(state.body) },
      versions: versions.status === 200 ? versions.json() : versions.status,
      lock: lock.status === 200 ? stableLock(lock.json()) : lock.status,
      rejected: rejected.json(),
    };
  }
  const states = (await get('/api/v1/states?prefix=snap&limit=1000')).json<{ items: Array<{ key: string }> }>().items.filter((s) => SNAP_KEYS.includes(s.key));
  const locks = (await get('/api/v1/locks?prefix=snap&limit=1000')).json<{ items: Array<Record<string, unknown>> }>().items.filter((l) => SNAP_KEYS.includes(String(l.key))).map(stableLock);
  return { perKey, states, locks };
}

interface AuditItem {
  id: number;
  key: string;
  action: string;
  outcome: string;
}

async function auditOf(get: Get, key: string | null): Promise<AuditItem[]> {
  const out: AuditItem[] = [];
  let after = 0;
  for (;;) {
    const page = (await get(`/api/v1/audit?limit=1000&after=${after}${key ? `&key=${encodeURIComponent(key)}` : ''}`)).json<{ items: AuditItem[]; next: unknown }>();
    out.push(...page.items);
    if (!page.next || page.items.length === 0) return out;
    after = page.items[page.items.length - 1]!.id;
  }
}

/* ================================================================== */
/* The run                                                             */
/* ================================================================== */

describe(`fuzz: every door (seed ${SEED}, ${COUNT} requests)`, () => {
  let server: AwsServer;
  let sender: Sender;
  let before_: Snapshot;
  let auditBefore: Map<string, AuditItem[]>;
  let globalAuditBefore: AuditItem[];
  const pools: Pools = { uploads: [], sessions: [] };
  const statuses = new Map<string, number>();
  const doors = new Map<Door, Map<string, number>>();
  const offenders: Array<{ req: Req; outcome: Outcome }> = [];
  const notImplemented: Array<{ req: Req; outcome: Outcome }> = [];
  const unanswered: Array<{ req: Req; outcome: Outcome }> = [];
  let sent = 0;
  let elapsedMs = 0;

  const get: Get = async (path) => {
    const o = await sender.send({ door: 'api', kind: 'check', method: 'GET', path, headers: {} });
    if (o.status === null) throw new Error(`GET ${path}: ${o.error}`);
    return { status: o.status, body: o.body, json: <T>() => JSON.parse(o.body.toString('utf8')) as T };
  };

  before(async () => {
    server = await startAwsServer({ args: ['--max-body-bytes', String(MAX_BODY)] });
    PORT = Number(new URL(server.url).port);
    sender = new Sender(PORT);
    const post = async (method: string, path: string, body: string) => {
      const o = await sender.send({ door: 'http:/state', kind: 'setup', method, path, headers: { 'Content-Type': 'application/json', 'Content-MD5': md5b64(body) }, body: Buffer.from(body) });
      assert.equal(o.status, 200, `setup ${method} ${path}: ${o.status} ${o.body.toString('utf8')}`);
    };

    const s3 = s3Client(server);
    const ddb = dynamoClient(server);
    await s3.send(new CreateBucketCommand({ Bucket: SNAP_BUCKET }));
    await s3.send(new CreateBucketCommand({ Bucket: FUZZ_BUCKET }));

    // States with versions, a soft-deleted one, and locks held through every door.
    for (const serial of [1, 2]) await post('POST', `/state/${SNAP.free}`, stateBody(serial, 'lin-free'));
    for (const serial of [1, 2, 3]) await post('POST', `/state/${SNAP.httpLocked}`, stateBody(serial, 'lin-http', { outputs: { n: { value: serial, type: 'number' } } }));
    await post('LOCK', `/state/${SNAP.httpLocked}`, lockBody(randomUUID(), 'OperationTypeApply', 'holder@snap'));
    await post('POST', `/lock/${SNAP.lockOnly}`, lockBody(randomUUID(), 'OperationTypePlan', 'gitlab@snap'));
    await post('POST', `/state/${SNAP.deleted}`, stateBody(1, 'lin-del'));
    assert.equal((await sender.send({ door: 'http:/state', kind: 'setup', method: 'DELETE', path: `/state/${SNAP.deleted}`, headers: {} })).status, 200);
    for (const serial of [1, 2]) await post('POST', `/state/${SNAP.dynamo}`, stateBody(serial, 'lin-dyn'));

    try {
      for (const serial of [1, 2]) await s3.send(new PutObjectCommand({ Bucket: SNAP_BUCKET, Key: 's3/terraform.tfstate', Body: stateBody(serial, 'lin-s3') }));
      await s3.send(new PutObjectCommand({ Bucket: SNAP_BUCKET, Key: 's3/terraform.tfstate.tflock', Body: lockBody(randomUUID(), 'OperationTypeApply', 's3@snap'), IfNoneMatch: '*' }));
      await ddb.send(new PutItemCommand({ TableName: 'locks', Item: { LockID: { S: SNAP.dynamo }, Info: { S: lockBody(randomUUID(), 'OperationTypeApply', 'dynamo@snap') } }, ConditionExpression: 'attribute_not_exists(LockID)' }));
      // Multipart uploads on fuzz keys, for CompleteMultipartUpload's XML.
      for (let i = 0; i < 6; i++) {
        const key = `k${i}/terraform.tfstate`;
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: FUZZ_BUCKET, Key: key }));
        const { ETag } = await s3.send(new UploadPartCommand({ Bucket: FUZZ_BUCKET, Key: key, UploadId, PartNumber: 1, Body: stateBody(10 + i, 'lin-mp') }));
        pools.uploads.push({ key: `${FUZZ_BUCKET}/${key}`, uploadId: UploadId!, etag: ETag! });
      }
    } finally {
      s3.destroy();
      ddb.destroy();
    }

    before_ = await takeSnapshot(get);
    auditBefore = new Map();
    for (const key of SNAP_KEYS) auditBefore.set(key, await auditOf(get, key));
    globalAuditBefore = await auditOf(get, null);
    // The snapshot is what it should be: otherwise the invariants below would prove nothing.
    assert.equal(before_.perKey[SNAP.free]!.state.status, 200);
    assert.equal(before_.perKey[SNAP.deleted]!.state.status, 404);
    for (const key of [SNAP.httpLocked, SNAP.lockOnly, SNAP.dynamo, SNAP.s3]) assert.equal(typeof before_.perKey[key]!.lock, 'object', `${key} is locked`);
    assert.equal(((before_.perKey[SNAP.httpLocked]!.versions as { items: unknown[] }).items).length, 3);
  });

  after(async () => {
    sender?.close();
    await server?.stop();
  });

  /* ---------------------------------------------------------------- */
  /* Replayed signatures, deterministically                            */
  /* ---------------------------------------------------------------- */

  const streamingPut = (key: string, signedBody: Buffer, sentBody: Buffer, forgeSignatures = false): Req => {
    const target = `/${FUZZ_BUCKET}/${key}`;
    const date = amzDate(Date.now());
    const headers: Record<string, string> = {
      host: `127.0.0.1:${PORT}`,
      'x-amz-date': date,
      'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(signedBody.length),
    };
    const sig = signV4({ method: 'PUT', target, headers, service: 's3', payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' });
    const half = Math.floor(signedBody.length / 2);
    let encoded = signedChunkedBody([signedBody.subarray(0, half), signedBody.subarray(half)], sig.signature, date, sig.scope, sig.key).toString('latin1');
    // The replay: same chunk framing and signatures, other data of the same length.
    encoded = encoded.replace(signedBody.subarray(0, half).toString('latin1'), sentBody.subarray(0, half).toString('latin1')).replace(signedBody.subarray(half).toString('latin1'), sentBody.subarray(half).toString('latin1'));
    if (forgeSignatures) encoded = encoded.replace(/chunk-signature=[0-9a-f]{64}/g, () => `chunk-signature=${randomUUID().replace(/-/g, '')}${randomUUID().replace(/-/g, '')}`);
    return { door: 's3', kind: 'replay', method: 'PUT', path: target, headers: { ...headers, authorization: sig.authorization }, body: Buffer.from(encoded, 'latin1') };
  };
  const storedAt = async (stateKey: string) => (await get(`/state/${pathOf(stateKey)}`)).status;

  test('a signed streaming upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) is accepted as signed', async () => {
    const body = Buffer.from(stateBody(1, 'lin-stream'));
    const o = await sender.send(streamingPut('replay/genuine.tfstate', body, body));
    assert.equal(o.status, 200, o.body.toString('utf8'));
    assert.equal((await get(`/state/${FUZZ_BUCKET}/replay/genuine.tfstate`)).body.toString('utf8'), body.toString('utf8'));
  });

  test('a signed streaming upload whose chunk data was changed after signing is refused and stores nothing', async () => {
    const key = 'replay/altered-chunks.tfstate';
    const signedBody = Buffer.from(stateBody(1, 'lin-genuine'));
    const evil = Buffer.from(stateBody(1, 'lin-evil!!!'));
    assert.equal(evil.length, signedBody.length);
    const o = await sender.send(streamingPut(key, signedBody, evil));
    assert.equal(o.status, 403, `chunk signatures must be checked: the altered body was answered ${o.status} ${o.body.toString('utf8').slice(0, 300)}`);
    assert.match(o.body.toString('utf8'), /<Code>SignatureDoesNotMatch<\/Code>/);
    assert.equal(await storedAt(`${FUZZ_BUCKET}/${key}`), 404, 'nothing was stored');
  });

  test('a signed streaming upload with forged chunk signatures is refused and stores nothing', async () => {
    const key = 'replay/forged-chunks.tfstate';
    const body = Buffer.from(stateBody(1, 'lin-forged'));
    const o = await sender.send(streamingPut(key, body, body, true));
    assert.equal(o.status, 403, `forged chunk signatures were answered ${o.status} ${o.body.toString('utf8').slice(0, 300)}`);
    assert.equal(await storedAt(`${FUZZ_BUCKET}/${key}`), 404);
  });

  test('a signed S3 request replayed with another method, path or query is refused', async () => {
    const date = amzDate(Date.now());
    const target = `/${FUZZ_BUCKET}/k1/terraform.tfstate`;
    const headers: Record<string, string> = { host: `127.0.0.1:${PORT}`, 'x-amz-date': date, 'x-amz-content-sha256': EMPTY_SHA256 };
    const { authorization } = signV4({ method: 'GET', target, headers, service: 's3', payloadHash: EMPTY_SHA256 });
    const replay = (method: string, path: string) => sender.send({ door: 's3', kind: 'replay', method, path, headers: { ...headers, authorization } });
    const genuine = await replay('GET', target);
    assert.ok(genuine.status === 200 || genuine.status === 404, `the genuine request is accepted: ${genuine.status}`);
    for (const [method, path] of [['DELETE', target], ['DELETE', `/${SNAP_BUCKET}/s3/terraform.tfstate.tflock`], ['GET', `/${SNAP_BUCKET}/s3/terraform.tfstate`], ['GET', `${target}?versionId=1`], ['DELETE', `/${SNAP_BUCKET}/s3/terraform.tfstate`]] as const) {
      const o = await replay(method, path);
      assert.equal(o.status, 403, `${method} ${path} with GET ${target}'s signature: ${o.status} ${o.body.toString('utf8').slice(0, 200)}`);
    }
  });

  test('a DynamoDB request whose X-Amz-Target was not signed cannot be turned into another operation', async () => {
    const lockId = `${FUZZ_BUCKET}/replay/dyn/terraform.tfstate`;
    const info = lockBody(randomUUID(), 'OperationTypeApply', 'replay@dyn');
    const put = async (op: string, doc: unknown, signTarget: boolean, sendTarget = op) => {
      const body = Buffer.from(JSON.stringify(doc));
      const headers: Record<string, string> = { host: `127.0.0.1:${PORT}`, 'x-amz-date': amzDate(Date.now()), 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `DynamoDB_20120810.${op}` };
      const { authorization } = signV4({ method: 'POST', target: '/', headers, service: 'dynamodb', payloadHash: sha256hex(body), signed: signTarget ? undefined : ['content-type', 'host', 'x-amz-date'] });
      return sender.send({ door: 'dynamodb', kind: 'replay', method: 'POST', path: '/', headers: { ...headers, 'x-amz-target': `DynamoDB_20120810.${sendTarget}`, authorization }, body });
    };
    const took = await put('PutItem', { TableName: 'locks', Item: { LockID: { S: lockId }, Info: { S: info } }, ConditionExpression: 'attribute_not_exists(LockID)' }, true);
    assert.equal(took.status, 200, took.body.toString('utf8'));
    // A GetItem signed without its target header, replayed as DeleteItem (the bodies have the same shape).
    const key = { TableName: 'locks', Key: { LockID: { S: lockId } } };
    const read = await put('GetItem', key, false);
    const replayed = await put('GetItem', key, false, 'DeleteItem');
    const lock = await get(`/api/v1/locks/${pathOf(lockId)}`);
    assert.equal(lock.status, 200, `the lock survived (GetItem unsigned-target answer ${read.status}, replay as DeleteItem answer ${replayed.status} ${replayed.body.toString('utf8').slice(0, 200)})`);
    assert.ok(replayed.status !== null && replayed.status >= 400 && replayed.status < 500, `the replay is refused: ${replayed.status} ${replayed.body.toString('utf8').slice(0, 200)}`);
  });

  test('a DynamoDB request replayed with another body is refused', async () => {
    const body = Buffer.from(JSON.stringify({ TableName: 'locks', Key: { LockID: { S: `${FUZZ_BUCKET}/k1/terraform.tfstate` } } }));
    const headers: Record<string, string> = { host: `127.0.0.1:${PORT}`, 'x-amz-date': amzDate(Date.now()), 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.DeleteItem' };
    const { authorization } = signV4({ method: 'POST', target: '/', headers, service: 'dynamodb', payloadHash: sha256hex(body) });
    const evil = Buffer.from(JSON.stringify({ TableName: 'locks', Key: { LockID: { S: SNAP.dynamo } } }));
    const o = await sender.send({ door: 'dynamodb', kind: 'replay', method: 'POST', path: '/', headers: { ...headers, authorization }, body: evil });
    assert.equal(o.status, 400, o.body.toString('utf8'));
    assert.match(o.body.toString('utf8'), /InvalidSignatureException/);
    assert.equal((await get(`/api/v1/locks/${pathOf(SNAP.dynamo)}`)).status, 200, 'the snapshot lock is still held');
  });

  /* ---------------------------------------------------------------- */
  /* Inputs the fuzzer found, pinned down (fuzz keys only)             */
  /* ---------------------------------------------------------------- */

  const dynamo = async (op: string, body: string) => {
    const headers: Record<string, string> = { host: `127.0.0.1:${PORT}`, 'x-amz-date': amzDate(Date.now()), 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `DynamoDB_20120810.${op}` };
    const { authorization } = signV4({ method: 'POST', target: '/', headers, service: 'dynamodb', payloadHash: sha256hex(body) });
    return sender.send({ door: 'dynamodb', kind: 'pinned', method: 'POST', path: '/', headers: { ...headers, authorization }, body: Buffer.from(body) });
  };

  test('deeply nested DynamoDB input is a 400 ValidationException, not a 500 (stack overflow)', async () => {
    const lockId = `${FUZZ_BUCKET}/nested/terraform.tfstate`;
    const item = `{"LockID":{"S":"${lockId}"},"Info":{"S":${JSON.stringify(lockBody('nested-1'))}}}`;
    const cases: Record<string, [string, string]> = {
      'NOT repeated 50,000 times in a ConditionExpression': ['PutItem', `{"TableName":"locks","Item":${item},"ConditionExpression":"${'NOT '.repeat(50_000)}attribute_exists(LockID)"}`],
      '10,000 nested parentheses in a ConditionExpression': ['PutItem', `{"TableName":"locks","Item":${item},"ConditionExpression":"${'('.repeat(10_000)}attribute_not_exists(LockID)${')'.repeat(10_000)}"}`],
      'a ConditionExpression of 50,000 ANDed terms': ['PutItem', `{"TableName":"locks","Item":${item},"ConditionExpression":"${Array.from({ length: 50_000 }, () => 'attribute_not_exists(LockID)').join(' AND ')}"}`],
      'an L value nested 10,000 deep in ExpressionAttributeValues': ['DeleteItem', `{"TableName":"locks","Key":{"LockID":{"S":"${lockId}"}},"ConditionExpression":"Info = :v","ExpressionAttributeValues":{":v":${deepValue('L', 10_000)}}}`],
      'an M value nested 10,000 deep in a Key': ['GetItem', `{"TableName":"locks","Key":{"LockID":{"S":"${lockId}"},"X":${deepValue('M', 10_000)}}}`],
      'an L value nested 3,000 deep in an Item': ['PutItem', `{"TableName":"locks","Item":{"LockID":{"S":"${lockId}"},"Info":${deepValue('L', 3_000)}}}`],
    };
    const wrong: string[] = [];
    for (const [what, [op, body]] of Object.entries(cases)) {
      const o = await dynamo(op, body);
      const text = o.body.toString('utf8');
      if (o.status !== 400 || !/ValidationException|SerializationException/.test(text)) wrong.push(`${what} (${op}, ${body.length} bytes): ${o.status} ${text.slice(0, 160)}`);
    }
    assert.deepEqual(wrong, [], 'DynamoDB caps expressions at 4 KB and attribute nesting at 32 levels; statelock must refuse deeper input cleanly');
    assert.equal((await get(`/api/v1/locks/${pathOf(lockId)}`)).status, 404, 'no lock was taken');
  });

  test('S3 response-* overrides that no header can carry are refused or ignored, never a 500', async () => {
    const key = `/${FUZZ_BUCKET}/overrides/terraform.tfstate`;
    const put = Buffer.from(stateBody(1, 'lin-overrides'));
    const sign = (method: string, target: string, body: Buffer) => {
      const headers: Record<string, string> = { host: `127.0.0.1:${PORT}`, 'x-amz-date': amzDate(Date.now()), 'x-amz-content-sha256': sha256hex(body) };
      return { ...headers, authorization: signV4({ method, target, headers, service: 's3', payloadHash: sha256hex(body) }).authorization };
    };
    assert.equal((await sender.send({ door: 's3', kind: 'pinned', method: 'PUT', path: key, headers: sign('PUT', key, put), body: put })).status, 200);
    const wrong: string[] = [];
    for (const query of ['response-content-type=%00', 'response-content-type=%E2%82%AC', 'response-content-type=%ff', 'response-cache-control=%7f', 'response-content-disposition=%01', 'response-expires=%E2%82%AC']) {
      for (const method of ['GET', 'HEAD']) {
        const target = `${key}?${query}`;
        const o = await sender.send({ door: 's3', kind: 'pinned', method, path: target, headers: sign(method, target, Buffer.alloc(0)) });
        if (o.status === null || o.status >= 500) wrong.push(`${method} ?${query}: ${o.status ?? o.error} ${o.body.toString('utf8').slice(0, 120)}`);
      }
    }
    assert.deepEqual(wrong, [], 'an override value with bytes an HTTP header cannot carry must be a 400 (InvalidArgument) or be ignored');
  });

  test(`${COUNT} generated requests over every door: no 5xx, every request answered`, async () => {
    const r = new R(rng(SEED));
    const families: ReadonlyArray<readonly [number, (r: R) => Req]> = [
      [24, (x) => httpBackend(x, pools)],
      [16, (x) => jsonApi(x, pools)],
      [22, (x) => s3(x, pools)],
      [18, (x) => dynamodb(x)],
      [5, (x) => sts(x)],
      [4, (x) => ops(x)],
      [11, (x) => rawHttp(x)],
    ];
    let next = 0;
    /** The requests started last: one of them is the culprit when the server dies. */
    const recent: string[] = [];
    const started = Date.now();
    const worker = async () => {
      while (next < COUNT) {
        next++;
        const req = r.weighted(families)(r);
        recent.push(`${req.door} ${req.kind}`);
        if (recent.length > 3 * CONCURRENCY) recent.shift();
        const outcome = await sender.send(req);
        sent++;
        const label = outcome.status === null ? (outcome.error?.startsWith('timeout') ? 'timeout' : 'no-answer') : String(outcome.status);
        statuses.set(label, (statuses.get(label) ?? 0) + 1);
        const perDoor = doors.get(req.door) ?? new Map<string, number>();
        perDoor.set(label, (perDoor.get(label) ?? 0) + 1);
        doors.set(req.door, perDoor);
        if (outcome.status !== null && outcome.status >= 500) {
          if (outcome.status === 501 && req.door === 's3' && /<Code>NotImplemented<\/Code>/.test(outcome.body.toString('utf8'))) notImplemented.push({ req, outcome });
          else offenders.push({ req, outcome });
        }
        if (outcome.status === null && (outcome.error?.startsWith('timeout') || (req.raw ? req.raw.expectAnswer : true))) unanswered.push({ req, outcome });
        if (outcome.status !== null && outcome.status < 300) req.learn?.(outcome.status, outcome.body);
        if (server.proc.exitCode !== null || server.proc.signalCode !== null) return;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    elapsedMs = Date.now() - started;

    const sortedStatuses = Object.fromEntries([...statuses.entries()].sort(([a], [b]) => a.localeCompare(b)));
    console.log(`fuzz: ${sent} requests over ${doors.size} doors, statuses ${JSON.stringify(sortedStatuses)}, seed ${SEED} (${(elapsedMs / 1000).toFixed(1)} s)`);
    for (const [door, counts] of [...doors.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      console.log(`  ${door.padEnd(12)} ${JSON.stringify(Object.fromEntries([...counts.entries()].sort(([a], [b]) => a.localeCompare(b))))}`);
    }
    if (notImplemented.length) console.log(`  (${notImplemented.length} answers were S3's 501 NotImplemented for operations statelock does not offer, e.g. ${notImplemented[0]!.req.kind}; not counted as failures)`);

    assert.ok(
      server.proc.exitCode === null && server.proc.signalCode === null,
      `the server exited (code ${server.proc.exitCode}, signal ${server.proc.signalCode}) after ${sent} requests (seed ${SEED}); the requests started last:\n  ${recent.join('\n  ')}\nthe end of its stderr:\n${server.stderr().slice(-1500)}`,
    );
    const show = (list: Array<{ req: Req; outcome: Outcome }>) =>
      list
        .slice(0, 8)
        .map(({ req, outcome }) => `  - ${describeReq(req)}\n      answer: ${outcome.status ?? outcome.error} ${JSON.stringify(outcome.body.subarray(0, 300).toString('utf8'))}`)
        .join('\n');
    assert.ok(
      offenders.length === 0 && unanswered.length === 0,
      `seed ${SEED}: ${offenders.length} answers were 5xx, ${unanswered.length} requests got no answer.` +
        (offenders.length ? `\nThe first 5xx:\n${show(offenders)}` : '') +
        (unanswered.length ? `\nThe first unanswered:\n${show(unanswered)}` : ''),
    );
  });

  test('the doors were really exercised: valid requests succeeded through each of them', { skip: COUNT < 2000 ? 'too few requests to expect a success through every door' : false }, () => {
    for (const door of ['http:/state', 'http:/lock', 'api', 's3', 'dynamodb', 'sts', 'ops'] as const) {
      const counts = doors.get(door);
      const ok = [...(counts?.entries() ?? [])].filter(([s]) => /^2\d\d$/.test(s)).reduce((n, [, c]) => n + c, 0);
      assert.ok(ok > 0, `no 2xx answer through ${door}: the generators never got past validation (${JSON.stringify(Object.fromEntries(counts ?? []))})`);
    }
  });

  test('the server never counted a 5xx nor logged an unexpected error', async () => {
    assert.ok(server.proc.exitCode === null, 'the server is running');
    const metrics = (await get('/metrics')).body.toString('utf8');
    const fiveXx = metrics
      .split('\n')
      .filter((l) => /^statelock_http_requests_total\{.*status="5\d\d"\}/.test(l))
      .filter((l) => !(/door="aws"/.test(l) && /status="501"/.test(l)));
    const unexpected = server
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"unexpected error"'));
    const distinct = [...new Set(unexpected.map((l) => (JSON.parse(l) as { error?: string; path?: string }).error?.split('\n').slice(0, 2).join(' ') ?? l))];
    assert.deepEqual(
      { fiveXx, unexpectedErrors: unexpected.length },
      { fiveXx: [], unexpectedErrors: 0 },
      `requests the server answered (or would have answered) with a 5xx; distinct errors logged:\n${distinct.slice(0, 10).join('\n')}`,
    );
  });

  test('the server is alive and ready', async () => {
    assert.ok(server.proc.exitCode === null && server.proc.signalCode === null, `exited: ${server.proc.exitCode}`);
    assert.equal((await get('/readyz')).status, 200);
    assert.equal((await get('/healthz')).status, 200);
  });

  test('no stored state, version, lock or rejected write of the snapshot changed', async () => {
    const now = await takeSnapshot(get);
    for (const key of SNAP_KEYS) assert.deepEqual(now.perKey[key], before_.perKey[key], `snapshot key ${key} changed`);
    assert.deepEqual(now.states, before_.states, 'the state listing of the snapshot keys changed');
    assert.deepEqual(now.locks, before_.locks, 'the lock listing of the snapshot keys changed');
  });

  test("the snapshot keys' audit trail only grew by refusals, and no earlier entry changed", async () => {
    for (const key of SNAP_KEYS) {
      const was = auditBefore.get(key)!;
      const is = await auditOf(get, key);
      const byId = new Map(is.map((e) => [e.id, e]));
      for (const old of was) assert.deepEqual(byId.get(old.id), old, `audit entry ${old.id} of ${key} changed or vanished`);
      const added = is.filter((e) => !was.some((w) => w.id === e.id));
      const notRefused = added.filter((e) => e.outcome !== 'refused');
      assert.deepEqual(notRefused, [], `${key} gained audit entries that are not refusals`);
    }
    const all = await auditOf(get, null);
    const byId = new Map(all.map((e) => [e.id, e]));
    for (const old of globalAuditBefore) assert.deepEqual(byId.get(old.id), old, `audit entry ${old.id} changed or vanished`);
  });

  test('no token was created (the server still runs without authentication)', async () => {
    const tokens = (await get('/api/v1/tokens')).json<{ items: unknown[] }>();
    assert.deepEqual(tokens.items, []);
  });

});
