import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { startServer, type RunningServer } from './support/server-process.js';

/** Bad input gets a clear 4xx, changes nothing, and the server stays up. */
describe('bad input', () => {
  let server: RunningServer;
  let auditBefore = 0;
  const u = (path: string) => `${server.url}${path}`;
  const snapshot = async () => ({
    state: (await rawRequest(u('/state/good/k'))).text,
    lock: (await rawRequest(u('/api/v1/locks/good/k'))).text,
    states: (await rawRequest(u('/api/v1/states'))).text,
    audit: (await rawRequest(u('/api/v1/audit?limit=1000'))).json<{ items: unknown[] }>().items.length,
  });
  let before_: Awaited<ReturnType<typeof snapshot>>;

  before(async () => {
    server = await startServer({ args: ['--max-body-bytes', '100000'] });
    assert.equal((await rawRequest(u('/state/good/k'), { method: 'LOCK', body: lockBody('G') })).status, 200);
    assert.equal((await rawRequest(u('/state/good/k?ID=G'), { method: 'POST', body: stateBody(3, 'lin') })).status, 200);
    before_ = await snapshot();
    auditBefore = before_.audit;
  });
  after(async () => void (await server.stop()));

  const expectRefused = async (status: number, code: string | null, path: string, opts: Parameters<typeof rawRequest>[1]) => {
    const res = await rawRequest(u(path), opts);
    assert.equal(res.status, status, `${opts?.method ?? 'GET'} ${path}: ${res.text}`);
    if (code) assert.equal(res.json<{ error: { code: string } }>().error.code, code);
    return res;
  };

  test('state bodies that are not a JSON object with integer serial and string lineage', async () => {
    for (const body of ['', 'not json', '{"serial":1', '[]', '"str"', '{"lineage":"x"}', '{"serial":"1","lineage":"x"}', '{"serial":1.5,"lineage":"x"}', '{"serial":1,"lineage":null}']) {
      await expectRefused(400, 'INVALID_STATE', '/state/bad/state', { method: 'POST', body });
    }
    await expectRefused(400, 'INVALID_STATE', '/state/bad/state', { method: 'POST', body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) });
    assert.equal((await rawRequest(u('/state/bad/state'))).status, 404, 'nothing was stored');
  });

  test('malformed lock info on LOCK and UNLOCK', async () => {
    for (const body of ['', 'nope', '{}', '{"ID":""}', '{"ID":"x","Created":"not a time"}', '{"ID":"x","Who":{"nested":true}}', '[{"ID":"x"}]']) {
      await expectRefused(400, 'INVALID_LOCK_INFO', '/state/bad/lock', { method: 'LOCK', body });
    }
    await expectRefused(400, 'INVALID_LOCK_INFO', '/state/good/k', { method: 'UNLOCK', body: '{"ID":' });
    assert.equal((await rawRequest(u('/api/v1/locks/bad/lock'))).status, 404);
  });

  test('bad keys, with the reason', async () => {
    for (const path of ['/state/', '/state/a//b', '/state/a/', '/state/a/%2e%2e/b', '/state/a/./b', '/state/a%00b', '/state/a%ffb', '/state/a%2Fb', `/state/${'k'.repeat(1025)}`]) {
      const res = await expectRefused(400, 'INVALID_KEY', path, { method: 'POST', body: stateBody(1, 'x') });
      assert.match(res.json<{ error: { message: string } }>().error.message, /^invalid state key: /);
    }
  });

  test('a Content-MD5 that does not match the body (a truncated upload)', async () => {
    const body = stateBody(4, 'lin');
    await expectRefused(400, 'CONTENT_MD5_MISMATCH', '/state/good/k?ID=G', { method: 'POST', body, headers: { 'Content-MD5': '1B2M2Y8AsgTpfCZ7Ml6ysQ==' } });
  });

  test('bodies over --max-body-bytes are 413', async () => {
    await expectRefused(413, 'PAYLOAD_TOO_LARGE', '/state/good/k?ID=G', { method: 'POST', body: Buffer.alloc(100_001, 0x20), keepAlive: false });
  });

  test('wrong methods are 405 with Allow; unknown paths 404; never a redirect', async () => {
    for (const [method, path] of [['PATCH', '/state/good/k'], ['PROPFIND', '/state/good/k'], ['GET', '/lock/good/k'], ['POST', '/healthz'], ['PUT', '/api/v1/locks/good/k'], ['GET', '/api/v1/restore/good/k']] as const) {
      const res = await expectRefused(405, 'METHOD_NOT_ALLOWED', path, { method });
      assert.ok(res.headers.allow, `${method} ${path} has an Allow header`);
    }
    await expectRefused(404, 'NOT_FOUND', '/nowhere', {});
    await expectRefused(404, 'NOT_FOUND', '/state', { method: 'POST', body: '{}' });
  });

  test('huge headers are 431 and a garbage request line is 400; the server stays up', async () => {
    const huge = await rawRequest(u('/state/good/k'), { headers: { 'X-Big': 'a'.repeat(20_000) }, keepAlive: false });
    assert.equal(huge.status, 431);
    const port = Number(new URL(server.url).port);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write('THIS IS NOT HTTP\r\n\r\n'));
      let data = '';
      socket.on('data', (d) => (data += d.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.equal((await rawRequest(u('/healthz'))).status, 200);
  });

  test('none of it changed anything', async () => {
    const now = await snapshot();
    assert.equal(now.state, before_.state);
    assert.equal(now.lock, before_.lock);
    assert.equal(now.states, before_.states);
    // Refused writes are audited on purpose (a conflict trail), but malformed input is not a write attempt.
    assert.equal(now.audit, auditBefore, 'no audit entry from malformed input');
  });
});
