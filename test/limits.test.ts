import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { REGION, serverRequest, startAwsServer, TEST_KEY, type AwsServer } from './support/aws.js';
import { startServer, type RunningServer } from './support/server-process.js';

/**
 * The server's limits, from the outside: oversized headers (431), bodies over --max-body-bytes (413 with
 * the JSON error, nothing stored), absurd URLs (a 4xx), slow or stalled clients (--request-timeout: 408),
 * and malformed HTTP (400). Every answer closes the connection it cannot trust any more, and the server
 * keeps serving.
 */

interface RawAnswer {
  /** Everything the server sent, latin1. */
  text: string;
  /** The status of the first response, null when none arrived. */
  status: number | null;
  /** The server ended the connection (we never closed our side first). */
  closedByServer: boolean;
  /** Time from connecting to the first byte of the answer (or to the close / give-up). */
  ms: number;
}

/**
 * Writes `chunks` to a fresh TCP connection (a number in the list is a pause in ms) and collects what comes
 * back until the server closes the connection or `waitMs` passes. Our side is never closed first.
 */
function exchange(port: number, chunks: Array<string | Buffer | number>, waitMs = 5_000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = Date.now();
    let firstByteMs: number | null = null;
    let data = '';
    let closedByServer = false;
    let settled = false;
    const socket = connect(port, '127.0.0.1');
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve({ text: data, status: m ? Number(m[1]) : null, closedByServer, ms: firstByteMs ?? Date.now() - started });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d: Buffer) => {
      firstByteMs ??= Date.now() - started;
      data += d.toString('latin1');
    });
    socket.on('end', () => {
      closedByServer = true;
      finish();
    });
    socket.on('close', () => {
      closedByServer = true;
      finish();
    });
    socket.on('error', () => undefined);
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (settled) return;
        if (typeof c === 'number') await new Promise((r) => setTimeout(r, c));
        else socket.write(c);
      }
    });
  });
}

const bodyOf = (answer: RawAnswer) => answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4);

describe('limits: headers, bodies, URLs and malformed HTTP', () => {
  let server: RunningServer;
  let port: number;
  const MAX_BODY = 4096;
  const u = (path: string) => `${server.url}${path}`;
  const nothingAt = async (key: string) => {
    assert.equal((await rawRequest(u(`/state/${key}`))).status, 404, `no state at ${key}`);
    assert.equal((await rawRequest(u(`/api/v1/versions/${key}`))).status, 404, `no version of ${key}`);
    assert.equal((await rawRequest(u(`/api/v1/locks/${key}`))).status, 404, `no lock on ${key}`);
    const audit = (await rawRequest(u(`/api/v1/audit?key=${encodeURIComponent(key)}`))).json<{ items: unknown[] }>();
    assert.deepEqual(audit.items, [], `no audit entry for ${key}`);
  };

  before(async () => {
    server = await startServer({ args: ['--max-body-bytes', String(MAX_BODY)] });
    port = Number(new URL(server.url).port);
  });
  afterEach(() => {
    const { exitCode, signalCode } = server.proc;
    assert.ok(exitCode === null && signalCode === null, `the server process exited (code ${exitCode}, signal ${signalCode}); its stderr:\n${server.stderr()}`);
  });
  after(async () => void (await server?.stop()));

  test('headers over 16 KiB: 431 and the connection is closed; 12 KiB of headers still work', async () => {
    const big = await exchange(port, [`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
    assert.equal(big.status, 431, big.text.slice(0, 200));
    assert.ok(big.closedByServer, 'the server closed the connection after 431');

    const many = await exchange(port, [`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(40)}\r\n`).join('')}\r\n`]);
    assert.equal(many.status, 431, 'many small headers add up to the same limit');
    assert.ok(many.closedByServer);

    const fine = await rawRequest(u('/healthz'), { headers: { 'X-Fine': 'c'.repeat(12 * 1024) }, keepAlive: false });
    assert.equal(fine.status, 200, 'headers under the limit are served');
  });

  test(`a body over --max-body-bytes (${MAX_BODY}) is 413 with the JSON error and nothing is stored`, async () => {
    const key = 'limits/too-big';
    const big = Buffer.from(stateBody(1, 'lin-big', { outputs: { pad: { value: 'x'.repeat(MAX_BODY), type: 'string' } } }));
    assert.ok(big.length > MAX_BODY);

    // With a Content-Length (refused before the body is read) …
    const declared = await rawRequest(u(`/state/${key}`), { method: 'POST', body: big, keepAlive: false });
    assert.equal(declared.status, 413);
    assert.equal(declared.headers['connection'], 'close');
    assert.match(String(declared.headers['content-type']), /^application\/json/);
    const err = declared.json<{ error: { code: string; message: string } }>().error;
    assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
    assert.match(err.message, new RegExp(`${MAX_BODY} bytes`));

    // LOCK and the JSON API have the same limit.
    const lock = await rawRequest(u(`/state/${key}`), { method: 'LOCK', body: lockBody('L'.repeat(MAX_BODY)), keepAlive: false });
    assert.equal(lock.status, 413);
    const session = await rawRequest(u('/api/v1/sessions'), { method: 'POST', body: JSON.stringify({ key, pad: 'p'.repeat(MAX_BODY) }), keepAlive: false });
    assert.equal(session.status, 413);
    assert.equal(session.json<{ error: { code: string } }>().error.code, 'PAYLOAD_TOO_LARGE');

    await nothingAt(key);
  });

  test('a body of exactly --max-body-bytes is accepted', async () => {
    const key = 'limits/exactly';
    const base = stateBody(1, 'lin-exact', { outputs: { pad: { value: '', type: 'string' } } });
    const body = stateBody(1, 'lin-exact', { outputs: { pad: { value: 'y'.repeat(MAX_BODY - Buffer.byteLength(base)), type: 'string' } } });
    assert.equal(Buffer.byteLength(body), MAX_BODY);
    const res = await rawRequest(u(`/state/${key}`), { method: 'POST', body });
    assert.equal(res.status, 200, res.text);
    assert.equal((await rawRequest(u(`/state/${key}`))).text, body);
  });

  test('an absurd URL (64 KiB path, 64 KiB query) is a 4xx and closes the connection; a long key is a clear 400', async () => {
    for (const target of [`/state/${'k'.repeat(64 * 1024)}`, `/api/v1/states?prefix=${'p'.repeat(64 * 1024)}`, `/${'a/'.repeat(32 * 1024)}`]) {
      const res = await exchange(port, [`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`]);
      assert.ok(res.status !== null && res.status >= 400 && res.status < 500, `a 4xx for a ${target.length}-byte URL, got ${res.status}: ${res.text.slice(0, 120)}`);
      assert.ok(res.closedByServer, 'the connection is closed');
    }
    // Under the header limit the request reaches the door, which names the problem.
    const long = await rawRequest(u(`/state/${'k'.repeat(8 * 1024)}`), { method: 'POST', body: stateBody(1, 'x') });
    assert.equal(long.status, 400);
    const err = long.json<{ error: { code: string; message: string } }>().error;
    assert.equal(err.code, 'INVALID_KEY');
    assert.match(err.message, /8192 bytes long; the limit is 1024/);
    assert.equal((await rawRequest(u('/healthz'))).status, 200);
  });

  test('malformed requests are 400 and the connection is closed', async () => {
    const H = 'Host: 127.0.0.1\r\n';
    const cases: Record<string, string> = {
      'not HTTP at all': 'THIS IS NOT HTTP\r\n\r\n',
      'a bare method': 'GET\r\n\r\n',
      'an extra token on the request line': `GET /healthz HTTP/1.1 extra\r\n${H}\r\n`,
      'a lower-case method': `get /healthz HTTP/1.1\r\n${H}\r\n`,
      'an unknown method': `FROB /healthz HTTP/1.1\r\n${H}\r\n`,
      'HTTP/9.9': `GET /healthz HTTP/9.9\r\n${H}\r\n`,
      'a NUL in the path': `GET /he\u0000althz HTTP/1.1\r\n${H}\r\n`,
      'a space in the path': `GET /state/a b HTTP/1.1\r\n${H}\r\n`,
      'a TLS ClientHello on the plain port': '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003' + 'r'.repeat(40),
      'a header line without a colon': `GET /healthz HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`,
      'a control character in a header value': `GET /healthz HTTP/1.1\r\n${H}X-A: a\u0001b\r\n\r\n`,
      'a bare LF line ending': 'GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n',
      'no Host header (HTTP/1.1)': 'GET /healthz HTTP/1.1\r\n\r\n',
      'a non-numeric Content-Length': `POST /state/limits/bad HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n`,
      'two different Content-Lengths': `POST /state/limits/bad HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
      'Content-Length and chunked together (smuggling)': `POST /state/limits/bad HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      'an unsupported Transfer-Encoding': `POST /state/limits/bad HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nabc`,
    };
    for (const [what, request] of Object.entries(cases)) {
      const res = await exchange(port, [Buffer.from(request, 'latin1')]);
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.text.slice(0, 120))}`);
      assert.ok(res.closedByServer, `${what}: the connection is closed`);
    }
    await nothingAt('limits/bad');
    assert.equal((await rawRequest(u('/readyz'))).status, 200, 'the server is still ready');
  });

  test('a malformed chunked body or a truncated body changes nothing and is not a server error', async () => {
    const key = 'limits/chunked';
    const H = `POST /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
    const body = stateBody(1, 'lin-chunk');
    const bad = await exchange(port, [`${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`]);
    assert.equal(bad.status, 400, 'an invalid chunk size is a 400');
    // A body shorter than its Content-Length, then the client half-closes: never stored.
    const truncated = await new Promise<RawAnswer>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`${H}Content-Length: ${body.length}\r\nContent-Type: application/json\r\n\r\n${body.slice(0, 20)}`);
        socket.end();
      });
      let data = '';
      socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
      socket.on('close', () => resolve({ text: data, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0) || null, closedByServer: true, ms: 0 }));
      socket.on('error', () => undefined);
    });
    assert.ok(truncated.status === null || (truncated.status >= 400 && truncated.status < 500), `a truncated body gets a 4xx or nothing: ${truncated.text.slice(0, 100)}`);
    await nothingAt(key);
    // What the client could not see: the server must not count (or log) these as its own failures.
    const metrics = (await rawRequest(u('/metrics'))).text;
    const fiveXx = metrics.split('\n').filter((l) => /^statelock_http_requests_total\{.*status="5\d\d"\}/.test(l));
    assert.deepEqual(fiveXx, [], 'an aborted or malformed body is a client error, not a 5xx of the server');
    assert.doesNotMatch(server.stderr(), /"unexpected error"/, 'and not logged as an unexpected error');
  });
});

describe('limits: a chunked body over --max-body-bytes', () => {
  let server: RunningServer;
  const MAX_BODY = 4096;

  before(async () => {
    server = await startServer({ args: ['--max-body-bytes', String(MAX_BODY)] });
  });
  after(async () => void (await server?.stop()));

  test('is refused with 413 while it streams in, and the server stays up', async () => {
    const port = Number(new URL(server.url).port);
    const key = 'limits/chunked-too-big';
    const big = Buffer.from(stateBody(1, 'lin-big', { outputs: { pad: { value: 'x'.repeat(MAX_BODY), type: 'string' } } }));
    // No Content-Length: the limit can only be enforced while the body arrives.
    const chunks: Buffer[] = [];
    for (let i = 0; i < big.length; i += 1024) {
      const part = big.subarray(i, i + 1024);
      chunks.push(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
    }
    const res = await exchange(port, [`POST /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n`, ...chunks, '0\r\n\r\n']);
    assert.equal(res.status, 413, res.text.slice(0, 300));
    assert.equal(JSON.parse(bodyOf(res)).error.code, 'PAYLOAD_TOO_LARGE');
    assert.ok(res.closedByServer, 'a 413 closes the connection (the rest of the body is not read)');
    await new Promise((r) => setTimeout(r, 200));
    const { exitCode, signalCode } = server.proc;
    assert.ok(exitCode === null && signalCode === null, `the server process exited (code ${exitCode}, signal ${signalCode}) after a chunked body over the limit; its stderr:\n${server.stderr()}`);
    assert.equal((await rawRequest(`${server.url}/readyz`)).status, 200);
    assert.equal((await rawRequest(`${server.url}/state/${key}`)).status, 404, 'nothing was stored');
  });
  test('a LOCK whose chunked body passes the limit is 413 and takes nothing; one whose client hangs up mid-body takes nothing and is no 5xx', async () => {
    const port = Number(new URL(server.url).port);
    const key = 'limits/lock-too-big';
    const big = Buffer.from(JSON.stringify({ ID: 'too-big', Operation: 'OperationTypeApply', Info: 'x'.repeat(MAX_BODY), Who: 'a@b', Version: '1.15.0', Path: '' }));
    const chunks: Buffer[] = [];
    for (let i = 0; i < big.length; i += 1024) {
      const part = big.subarray(i, i + 1024);
      chunks.push(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
    }
    const res = await exchange(port, [`LOCK /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n`, ...chunks, '0\r\n\r\n']);
    assert.equal(res.status, 413, res.text.slice(0, 300));
    assert.ok(res.closedByServer, 'a 413 closes the connection');
    const body = '{"ID":"gone","Operation":"OperationTypeApply","Info":"","Who":"a@b","Version":"1.15.0","Path":""}';
    const cut = await exchange(port, [`LOCK /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`], 300);
    assert.equal(cut.status, null, 'no answer to a body that never completed');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await rawRequest(`${server.url}/api/v1/locks/${key}`)).status, 404, 'neither LOCK took the lock');
    const metrics = (await rawRequest(`${server.url}/metrics`)).text;
    assert.deepEqual(metrics.split('\n').filter((l) => /^statelock_http_requests_total\{.*status="5\d\d"\}/.test(l)), []);
    assert.doesNotMatch(server.stderr(), /"unexpected error"|request handling failed/);
  });
});

describe('limits: slow and stalled clients (--request-timeout)', () => {
  let server: RunningServer;
  let port: number;
  const TIMEOUT_S = 1;
  /** How long past the timeout an answer may take (the server checks its connections periodically). */
  const SLACK_MS = 4_000;

  before(async () => {
    server = await startServer({ args: ['--request-timeout', `${TIMEOUT_S}s`] });
    port = Number(new URL(server.url).port);
  });
  after(async () => void (await server?.stop()));

  test('stalled bodies, stalled headers and a dribbling client get 408 soon after the timeout; nothing is stored', async () => {
    const key = 'limits/slow';
    const body = stateBody(1, 'lin-slow');
    const head = `POST /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    // Wait long enough to see what a server without a prompt timeout does (it would answer after ~30 s).
    const WAIT = 40_000;
    const [stalledBody, stalledHeaders, dribble, slowButInTime] = await Promise.all([
      exchange(port, [head, body.slice(0, 10)], WAIT),
      exchange(port, ['GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'], WAIT),
      // One byte every 200 ms: never idle, but the whole request never arrives within the timeout.
      exchange(port, [head, ...Array.from({ length: 60 }, (_, i) => [body[i]!, 200] as const).flat()], WAIT),
      // Slow but complete well within the timeout: served.
      exchange(port, [`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n`, 150, 'Connection: close\r\n', 150, '\r\n'], WAIT),
    ]);
    assert.equal(slowButInTime.status, 200, 'a slow request that completes in time is served');
    for (const [what, res] of [['a stalled body', stalledBody], ['stalled headers', stalledHeaders], ['a dribbling body', dribble]] as const) {
      assert.equal(res.status, 408, `${what}: expected 408 Request Timeout, got ${JSON.stringify(res.text.split('\r\n')[0])} after ${res.ms} ms`);
      assert.ok(res.ms < TIMEOUT_S * 1000 + SLACK_MS, `${what}: answered after ${res.ms} ms; --request-timeout is ${TIMEOUT_S}s`);
      assert.ok(res.closedByServer, `${what}: the connection is closed`);
    }
    assert.equal((await rawRequest(`${server.url}/state/${key}`)).status, 404, 'nothing was stored');
    const metrics = (await rawRequest(`${server.url}/metrics`)).text;
    const fiveXx = metrics.split('\n').filter((l) => /^statelock_http_requests_total\{.*status="5\d\d"\}/.test(l));
    assert.deepEqual(fiveXx, [], 'a timed-out request is not counted as a server error');
    assert.equal((await rawRequest(`${server.url}/readyz`)).status, 200);
  });
});

describe('limits: the S3 door refuses bodies over --max-body-bytes', () => {
  let server: AwsServer;
  const MAX_BODY = 4096;

  before(async () => {
    server = await startAwsServer({ args: ['--max-body-bytes', String(MAX_BODY)] });
  });
  after(async () => void (await server?.stop()));

  test('a signed PutObject over the limit is 413 EntityTooLarge and nothing is stored', async () => {
    const url = new URL(server.url);
    const body = Buffer.from(stateBody(1, 'lin-s3', { outputs: { pad: { value: 'z'.repeat(MAX_BODY), type: 'string' } } }));
    const signer = new SignatureV4({ service: 's3', region: REGION, credentials: TEST_KEY, sha256: Sha256, uriEscapePath: false });
    const path = '/limits-bucket/big/terraform.tfstate';
    const signed = await signer.sign({
      method: 'PUT',
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path,
      headers: { host: url.host, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') },
      body,
    });
    const res = await serverRequest(server, 'PUT', path, body, { ...(signed.headers as Record<string, string>), Connection: 'close' });
    assert.equal(res.status, 413, res.body.toString('utf8'));
    assert.match(res.body.toString('utf8'), /<Code>EntityTooLarge<\/Code>/);
    assert.equal((await serverRequest(server, 'GET', '/state/limits-bucket/big/terraform.tfstate')).status, 404);
  });
});
