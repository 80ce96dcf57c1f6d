import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { ANONYMOUS, Authenticator, ENFORCED_TTL_MS, mintPrincipal } from '../../src/auth/authenticator.js';
import { TokenService } from '../../src/auth/token-service.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { rawRequest } from '../support/http.js';
import { PG_SKIP_REASON, pgAvailable, startPostgres } from '../support/postgres.js';
import { startServer, tempDir } from '../support/server-process.js';

/**
 * "Are tokens enforced?" is asked on every request and answered from a cache (Authenticator.enforced):
 * a token created or revoked through this server takes effect at once; one created through another
 * process on the same database (a replica) within ENFORCED_TTL_MS; a stale "enforced" fails closed.
 */
const client = { addr: '127.0.0.1', userAgent: 'test', principal: null };
const audit = (name: string) => ({ action: 'token.create' as const, key: `tokens/${name}`, lockId: null, outcome: 'ok' as const, detail: {} });

describe('Authenticator.enforced() on a real SQLite store', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** A store whose principal counts are counted, an authenticator on it with a clock the test moves. */
  function setup(dir = tempDir()) {
    dirs.push(dir);
    const store = new SqliteStore(dir);
    let reads = 0;
    const count = store.countLivePrincipals.bind(store);
    store.countLivePrincipals = () => (reads++, count());
    const clock = { ms: 0 };
    const auth = new Authenticator(store, new Map(), () => clock.ms);
    return { store, auth, clock, reads: () => reads, dir };
  }

  test('the count is read once per TTL, not once per request', async () => {
    const { store, auth, clock, reads } = setup();
    for (let i = 0; i < 100; i++) assert.equal(await auth.enforced(), false);
    assert.equal(reads(), 1);
    clock.ms += ENFORCED_TTL_MS - 1;
    await auth.enforced();
    assert.equal(reads(), 1);
    clock.ms += 1;
    await auth.enforced();
    assert.equal(reads(), 2, 'read again once the TTL has passed');
    await store.close();
  });

  test('a token created or revoked through this server takes effect at once', async () => {
    const { store, auth, reads } = setup();
    const tokens = new TokenService(store, () => auth.principalsChanged());
    assert.equal(await auth.enforced(), false);
    const admin = await tokens.create({ name: 'admin', allow: ['*:admin'], aws: false }, client);
    assert.equal(await auth.enforced(), true, 'no TTL to wait for: the first token is enforced on the next request');
    await assert.rejects(auth.fromAuthorization(undefined), { code: 'UNAUTHENTICATED' });
    assert.equal((await auth.fromAuthorization(`Bearer ${admin.token}`)).name, 'admin');
    const second = await tokens.create({ name: 'ci', allow: ['*:read'], aws: false }, client);
    const before = reads();
    await tokens.revoke('ci', client);
    await assert.rejects(auth.fromAuthorization(`Bearer ${second.token}`), /revoked/, 'a revoked token is refused at once (tokens themselves are never cached)');
    assert.ok(reads() > before, 'the revocation made the next request read the count again');
    await store.close();
  });

  test('a token created by another process on the same database: enforced within the TTL, not later', async () => {
    const { store, auth, clock, dir } = setup();
    assert.equal(await auth.enforced(), false);
    const other = new SqliteStore(dir); // another server on the same file
    const minted = mintPrincipal('admin', ['*:admin'], { aws: false, now: new Date().toISOString() });
    assert.ok(await other.createPrincipal(minted.record, audit('admin'), client));
    clock.ms += ENFORCED_TTL_MS;
    assert.equal(await auth.enforced(), true);
    await assert.rejects(auth.fromAuthorization(undefined), { code: 'UNAUTHENTICATED' });
    await other.close();
    await store.close();
  });

  test('a stale "enforced" fails closed and heals: the database lost its tokens, the next refusal reads the count again', async () => {
    const { store, auth, dir } = setup();
    const minted = mintPrincipal('admin', ['*:admin'], { aws: false, now: new Date().toISOString() });
    await store.createPrincipal(minted.record, audit('admin'), client);
    assert.equal(await auth.enforced(), true);
    const other = new SqliteStore(dir);
    assert.ok(await other.revokePrincipal('admin', new Date().toISOString(), audit('admin'), client)); // bypasses the last-admin rule
    await other.close();
    assert.equal(await auth.enforced(), true, 'still cached');
    assert.equal(await auth.fromAuthorization(undefined), ANONYMOUS, 'refusing would be wrong now: the count is read again and says no token exists');
    await store.close();
  });
});

describe('two replicas on one PostgreSQL database', { skip: pgAvailable() ? false : PG_SKIP_REASON }, () => {
  test('the first token, created through replica A, is enforced by A at once and by B within the TTL; a revocation through B is refused by A at once', async () => {
    const pg = await startPostgres();
    const a = await startServer({ args: ['--database', pg.url] });
    const b = await startServer({ args: ['--database', pg.url] });
    try {
      assert.equal((await rawRequest(`${a.url}/api/v1/locks`)).status, 200);
      assert.equal((await rawRequest(`${b.url}/api/v1/locks`)).status, 200, 'B has answered "not enforced" (and keeps that answer)');
      const created = await rawRequest(`${a.url}/api/v1/tokens`, { method: 'POST', body: JSON.stringify({ name: 'admin', allow: ['*:admin'] }) });
      assert.equal(created.status, 201, created.text);
      const admin = created.json<{ token: string }>().token;
      assert.equal((await rawRequest(`${a.url}/api/v1/locks`)).status, 401, 'A enforces the token it created on the next request');
      const started = Date.now();
      let status = 0;
      while ((status = (await rawRequest(`${b.url}/api/v1/locks`)).status) === 200 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 20));
      const waited = Date.now() - started;
      assert.equal(status, 401, 'B enforces the token created through A');
      assert.ok(waited <= ENFORCED_TTL_MS + 500, `B took ${waited} ms, more than the TTL (${ENFORCED_TTL_MS} ms)`);
      const auth = { Authorization: `Bearer ${admin}` };
      assert.equal((await rawRequest(`${b.url}/api/v1/locks`, { headers: auth })).status, 200);

      const ci = (await rawRequest(`${b.url}/api/v1/tokens`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'ci', allow: ['*:read'] }) })).json<{ token: string }>().token;
      assert.equal((await rawRequest(`${a.url}/api/v1/locks`, { headers: { Authorization: `Bearer ${ci}` } })).status, 200);
      assert.equal((await rawRequest(`${b.url}/api/v1/tokens/ci`, { method: 'DELETE', headers: auth })).status, 200);
      assert.equal((await rawRequest(`${a.url}/api/v1/locks`, { headers: { Authorization: `Bearer ${ci}` } })).status, 401, 'revoked through B, refused by A at once');
    } finally {
      await a.stop();
      await b.stop();
      await pg.stop('fast');
    }
  });
});
