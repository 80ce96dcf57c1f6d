import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockBody, rawRequest, stateBody, type RawResponse } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';

/**
 * The dashboard's server-side promises (docs/dashboard.md), without a browser: plain HTTP against a real
 * `statelock serve`. The page and its assets under a strict CSP, nothing off the host in the built files,
 * sign-in into an HttpOnly SameSite=Strict cookie, tampered and revoked cookies refused, CSRF on every
 * cookie-authenticated change, other web sites refused even by a token-less loopback server, sign-out.
 * Every refusal is checked to have changed nothing; every refusal has a control that succeeds.
 */

/** The built dashboard (this file is dist/test/ui/dashboard-http.test.js). */
const UI_DIST = fileURLToPath(new URL('../../ui/', import.meta.url));
const EVIL = 'http://evil.example';
const COOKIE = 'statelock_session';

interface Token {
  name: string;
  token: string;
}
interface Login {
  name: string;
  grants: string[];
  csrf: string;
}
interface WhoAmI {
  authRequired: boolean;
  signedIn: boolean;
  name: string | null;
  grants: string[];
  csrf: string | null;
}

let server: RunningServer;
let admin: Token;

function req(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<RawResponse> {
  return rawRequest(`${server.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
}
const bearer = (t: Token) => ({ Authorization: `Bearer ${t.token}` });
const basic = (t: Token) => ({ Authorization: `Basic ${Buffer.from(`terraform:${t.token}`).toString('base64')}` });
const cookie = (value: string) => ({ Cookie: `${COOKIE}=${value}` });
const errorCode = (r: RawResponse) => r.json<{ error?: { code?: string } }>().error?.code;
const setCookies = (r: RawResponse): string[] => {
  const h = r.headers['set-cookie'];
  return h === undefined ? [] : Array.isArray(h) ? h : [h];
};

/** `Set-Cookie` parsed: its value and attributes (names lower-cased). */
function parseSetCookie(header: string): { name: string; value: string; attrs: Map<string, string | true> } {
  const [pair = '', ...rest] = header.split(';');
  const eq = pair.indexOf('=');
  const attrs = new Map<string, string | true>();
  for (const a of rest) {
    const i = a.indexOf('=');
    if (i < 0) attrs.set(a.trim().toLowerCase(), true);
    else attrs.set(a.slice(0, i).trim().toLowerCase(), a.slice(i + 1).trim());
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attrs };
}

async function createToken(name: string, allow: string[], as: Token | null): Promise<Token> {
  const r = await req('POST', '/api/v1/tokens', { 'Content-Type': 'application/json', ...(as ? bearer(as) : {}) }, JSON.stringify({ name, allow }));
  assert.equal(r.status, 201, r.text);
  return r.json<Token>();
}

async function login(token: string): Promise<{ res: RawResponse; cookie: string; csrf: string }> {
  const res = await req('POST', '/ui/auth/login', { 'Content-Type': 'application/json' }, JSON.stringify({ token }));
  assert.equal(res.status, 200, res.text);
  const set = setCookies(res);
  assert.equal(set.length, 1, JSON.stringify(set));
  return { res, cookie: parseSetCookie(set[0]!).value, csrf: res.json<Login>().csrf };
}

async function whoami(headers: Record<string, string> = {}): Promise<WhoAmI> {
  const r = await req('GET', '/ui/auth/whoami', headers);
  assert.equal(r.status, 200, r.text);
  return r.json<WhoAmI>();
}

/** The lock's holder ID as an admin sees it (null: not locked). */
async function holder(key: string): Promise<string | null> {
  const r = await req('GET', `/api/v1/locks/${key}`, admin ? bearer(admin) : {});
  if (r.status === 404) return null;
  assert.equal(r.status, 200, r.text);
  return r.json<{ info: { ID: string } }>().info.ID;
}

async function forceUnlockAudit(key: string): Promise<Array<{ outcome: string; principal: string | null }>> {
  const r = await req('GET', `/api/v1/audit?key=${encodeURIComponent(key)}&action=lock.force-unlock`, admin ? bearer(admin) : {});
  assert.equal(r.status, 200, r.text);
  return r.json<{ items: Array<{ outcome: string; principal: string | null }> }>().items;
}

/** Every file under a directory, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** URLs a module or stylesheet loads: static and dynamic imports, CSS url() and @import. */
function referencesOf(path: string, body: string): string[] {
  const refs: string[] = [];
  if (path.endsWith('.js')) {
    for (const m of body.matchAll(/(?:\bimport|\bexport)\s*(?:[^'"`;]*?\sfrom\s*)?['"]([^'"]+)['"]/g)) refs.push(m[1]!);
    for (const m of body.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) refs.push(m[1]!);
  } else if (path.endsWith('.css')) {
    for (const m of body.matchAll(/url\(\s*['"]?([^'")]+)['"]?\s*\)/g)) if (!m[1]!.startsWith('data:')) refs.push(m[1]!);
    for (const m of body.matchAll(/@import\s+['"]([^'"]+)['"]/g)) refs.push(m[1]!);
  } else if (path.endsWith('.html')) {
    for (const m of body.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/g)) if (!m[1]!.startsWith('#') && !m[1]!.startsWith('data:')) refs.push(m[1]!);
  }
  return refs;
}

/** XML namespace names are identifiers, never fetched: the only absolute URLs a built file may hold. */
const NAMESPACES = new Set(['http://www.w3.org/2000/svg', 'http://www.w3.org/1999/xhtml', 'http://www.w3.org/1999/xlink', 'http://www.w3.org/XML/1998/namespace']);

describe('the dashboard, server side', () => {
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('a token-less loopback server: whoami is anonymous admin, and other web sites are refused (Origin, Sec-Fetch-Site) with nothing changed', async () => {
    assert.deepEqual(await whoami(), { authRequired: false, signedIn: true, name: 'anonymous', grants: ['*:admin'], csrf: null });
    const key = 'xsite/terraform.tfstate';
    const evil = { Origin: EVIL };

    // Another web site cannot write a state, take a lock, create the first (admin) token, or read.
    const write = await req('POST', `/state/${key}`, { ...evil, 'Content-Type': 'text/plain' }, stateBody(1, 'L-xsite'));
    assert.equal(write.status, 403, write.text);
    assert.equal(errorCode(write), 'CSRF_REJECTED');
    assert.equal((await req('GET', `/api/v1/states/${key}`)).status, 404, 'no state was written');
    const lock = await req('LOCK', `/state/${key}`, evil, lockBody('evil-lock'));
    assert.equal(lock.status, 403, lock.text);
    assert.equal(await holder(key), null, 'no lock was taken');
    const token = await req('POST', '/api/v1/tokens', { ...evil, 'Content-Type': 'application/json' }, JSON.stringify({ name: 'evil', allow: ['*:admin'] }));
    assert.equal(token.status, 403, token.text);
    assert.equal(errorCode(token), 'CSRF_REJECTED');
    assert.deepEqual((await req('GET', '/api/v1/tokens')).json<{ items: unknown[] }>().items, [], 'no token was created');
    const read = await req('GET', '/api/v1/states', evil);
    assert.equal(read.status, 403, 'a foreign Origin may not read either');
    assert.equal(errorCode(read), 'CSRF_REJECTED');

    // A lock Terraform holds: another site cannot force-unlock it, by Origin or by Sec-Fetch-Site.
    assert.equal((await req('POST', `/state/${key}`, {}, stateBody(1, 'L-xsite'))).status, 200);
    assert.equal((await req('LOCK', `/state/${key}`, {}, lockBody('tf-1'))).status, 200);
    const byOrigin = await req('DELETE', `/api/v1/locks/${key}?id=tf-1`, evil);
    assert.equal(byOrigin.status, 403, byOrigin.text);
    assert.equal(errorCode(byOrigin), 'CSRF_REJECTED');
    const byFetchSite = await req('DELETE', `/api/v1/locks/${key}?id=tf-1`, { 'Sec-Fetch-Site': 'cross-site' });
    assert.equal(byFetchSite.status, 403, byFetchSite.text);
    assert.equal(errorCode(byFetchSite), 'CSRF_REJECTED');
    const restore = await req('POST', `/api/v1/restore/${key}?seq=1`, { 'Sec-Fetch-Site': 'cross-site' });
    assert.equal(restore.status, 403, restore.text);
    assert.equal(await holder(key), 'tf-1', 'the lock is still held');
    assert.deepEqual(await forceUnlockAudit(key), []);
    // Control: the server's own origin may.
    const own = await req('DELETE', `/api/v1/locks/${key}?id=tf-1`, { Origin: server.url, 'Sec-Fetch-Site': 'same-origin' });
    assert.equal(own.status, 200, own.text);
    assert.equal(await holder(key), null);
  });

  test('/ui/ answers the page under a strict CSP with nosniff; /ui redirects there', async () => {
    const redirect = await req('GET', '/ui');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, '/ui/');
    const page = await req('GET', '/ui/');
    assert.equal(page.status, 200, page.text);
    assert.match(String(page.headers['content-type']), /^text\/html\b/);
    assert.match(page.text, /<html/i);
    const csp = String(page.headers['content-security-policy'] ?? '');
    assert.match(csp, /default-src 'self'/, csp);
    assert.match(csp, /script-src 'self'(;|$)/, `scripts from the server only, nothing inline: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/, csp);
    assert.match(csp, /frame-ancestors 'none'/, csp);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    // No inline script (the CSP would refuse it anyway).
    for (const m of page.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
      assert.match(m[1]!, /\bsrc=/, `a script tag without src: ${m[0]}`);
      assert.equal(m[2]!.trim(), '', 'no inline script');
    }
  });

  test('every asset the page references (and the modules and styles they load) is served, from the server itself', async () => {
    const index = await req('GET', '/ui/');
    const queue: Array<{ url: URL; from: string }> = referencesOf('index.html', index.text).map((r) => ({ url: new URL(r, `${server.url}/ui/`), from: 'index.html' }));
    assert.ok(queue.some((q) => q.url.pathname.endsWith('.js')), 'the page loads a script');
    assert.ok(queue.some((q) => q.url.pathname.endsWith('.css')), 'the page loads a stylesheet');
    const seen = new Set<string>();
    while (queue.length) {
      const { url, from } = queue.shift()!;
      assert.equal(url.origin, server.url, `${from} references ${url.href}, off the host`);
      if (seen.has(url.pathname)) continue;
      seen.add(url.pathname);
      const r = await req('GET', url.pathname);
      assert.equal(r.status, 200, `${url.pathname} (referenced by ${from}): ${r.status}`);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', url.pathname);
      const type = String(r.headers['content-type']);
      if (url.pathname.endsWith('.js')) assert.match(type, /^text\/javascript\b/, `${url.pathname}: ${type}`);
      if (url.pathname.endsWith('.css')) assert.match(type, /^text\/css\b/, `${url.pathname}: ${type}`);
      for (const ref of referencesOf(url.pathname, r.text)) queue.push({ url: new URL(ref, url), from: url.pathname });
    }
    assert.ok(seen.size >= 2, [...seen].join(', '));
  });

  test('the built files hold no URL pointing off the host (no CDN, no web fonts)', () => {
    const files = filesUnder(UI_DIST);
    assert.ok(files.some((f) => f.endsWith('index.html')), `dist/ui/index.html is built (${UI_DIST})`);
    assert.ok(files.some((f) => f.endsWith('.js')), 'the modules are built');
    const offHost: string[] = [];
    for (const f of files) {
      const body = readFileSync(f, 'utf8');
      for (const m of body.matchAll(/\bhttps?:\/\/[^\s"'`()<>\\]*/gi)) {
        const url = m[0].replace(/[.,;:]+$/, '');
        if (NAMESPACES.has(url)) continue;
        let host = '';
        try {
          host = new URL(url).hostname;
        } catch {
          /* a bare "http://" prefix: not a URL to anywhere */
          continue;
        }
        if (host === '' || host === '127.0.0.1' || host === 'localhost' || host === '[::1]') continue;
        offHost.push(`${relative(UI_DIST, f)}: ${url}`);
      }
    }
    assert.deepEqual(offHost, []);
  });

  test('unknown assets and paths under /ui answer 404, nothing outside dist/ui is served', async () => {
    for (const path of ['/ui/assets/does-not-exist.js', '/ui/nope', '/ui/assets/', '/ui/assets/../../package.json', '/ui/assets/%2e%2e/%2e%2e/package.json', '/ui/assets/..%2f..%2fpackage.json', '/ui/auth/nope']) {
      const r = await req('GET', path);
      assert.equal(r.status, 404, `${path}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.doesNotMatch(r.text, /"devDependencies"/, path);
    }
  });

  let viewer: Token;
  test('sign-in: a wrong or malformed token gets 401 and no cookie; the right one an HttpOnly SameSite=Strict Path=/ cookie for 8 h', async () => {
    admin = await createToken('admin', ['*:admin'], null);
    viewer = await createToken('viewer', ['*:read'], admin);
    assert.deepEqual(await whoami(), { authRequired: true, signedIn: false, name: null, grants: [], csrf: null });

    for (const body of [JSON.stringify({ token: 'slk_AAAAAAAAAAAAAAAA_' + 'x'.repeat(43) }), JSON.stringify({ token: admin.token + 'x' }), JSON.stringify({ token: 42 }), '{}', 'not json']) {
      const r = await req('POST', '/ui/auth/login', { 'Content-Type': 'application/json' }, body);
      assert.equal(r.status, 401, `${body}: ${r.status} ${r.text}`);
      assert.equal(errorCode(r), 'UNAUTHENTICATED');
      assert.deepEqual(setCookies(r), [], `no cookie for ${body}`);
    }
    // What a cross-site HTML form can send (text/plain) signs nobody in.
    const form = await req('POST', '/ui/auth/login', { 'Content-Type': 'text/plain' }, JSON.stringify({ token: admin.token }));
    assert.notEqual(form.status, 200, form.text);
    assert.deepEqual(setCookies(form), []);

    const { res, cookie: value, csrf } = await login(admin.token);
    const body = res.json<Login>();
    assert.equal(body.name, 'admin');
    assert.deepEqual(body.grants, ['*:admin']);
    assert.match(csrf, /^\S{16,}$/);
    const set = parseSetCookie(setCookies(res)[0]!);
    assert.equal(set.name, COOKIE);
    assert.match(set.value, /^v1\./);
    assert.equal(set.attrs.get('httponly'), true);
    assert.equal(String(set.attrs.get('samesite')).toLowerCase(), 'strict');
    assert.equal(set.attrs.get('path'), '/');
    assert.equal(set.attrs.get('max-age'), '28800');
    assert.equal(set.attrs.has('secure'), false, 'not Secure over plain HTTP');
    assert.equal(set.attrs.has('domain'), false, 'host-only');
    assert.ok(!value.includes(admin.token.slice(21)), 'the cookie does not carry the token secret');

    assert.deepEqual(await whoami(cookie(value)), { authRequired: true, signedIn: true, name: 'admin', grants: ['*:admin'], csrf });
    assert.equal((await req('GET', '/api/v1/states', cookie(value))).status, 200, 'the cookie authenticates the API');
    assert.equal((await req('GET', '/api/v1/states')).status, 401, 'control: without it, 401');
    const asViewer = await login(viewer.token);
    assert.equal((await whoami(cookie(asViewer.cookie))).name, 'viewer');
    assert.notEqual(asViewer.csrf, csrf, 'a CSRF token per session');
  });

  test('a tampered cookie is signed out: whoami signedIn false and the API 401', async () => {
    const a = await login(admin.token);
    const v = await login(viewer.token);
    const [, principal, expiry, nonce, mac] = a.cookie.split('.');
    const [, viewerPrincipal] = v.cookie.split('.');
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const tampered = {
      'MAC changed': `v1.${principal}.${expiry}.${nonce}.${flip(mac!, 5)}`,
      'expiry extended': `v1.${principal}.${Number(expiry) + 86_400}.${nonce}.${mac}`,
      'nonce changed': `v1.${principal}.${expiry}.${flip(nonce!, 3)}.${mac}`,
      "another principal's id": `v1.${viewerPrincipal}.${expiry}.${nonce}.${mac}`,
      'MAC cut': `v1.${principal}.${expiry}.${nonce}.${mac!.slice(0, 20)}`,
      'version changed': `v2.${principal}.${expiry}.${nonce}.${mac}`,
      garbage: 'garbage',
    };
    assert.equal((await req('GET', '/api/v1/states', cookie(a.cookie))).status, 200, 'control: the untouched cookie works');
    for (const [what, value] of Object.entries(tampered)) {
      const who = await whoami(cookie(value));
      assert.equal(who.signedIn, false, what);
      assert.equal(who.csrf, null, what);
      const r = await req('GET', '/api/v1/states', cookie(value));
      assert.equal(r.status, 401, `${what}: ${r.status}`);
      assert.equal(errorCode(r), 'UNAUTHENTICATED');
      const change = await req('POST', '/api/v1/tokens', { ...cookie(value), 'X-Statelock-CSRF': a.csrf, 'Content-Type': 'application/json' }, JSON.stringify({ name: 'sneaky', allow: ['*:admin'] }));
      assert.ok(change.status === 401 || change.status === 403, `${what}: a change ${change.status}`);
    }
    const names = (await req('GET', '/api/v1/tokens', bearer(admin))).json<{ items: Array<{ name: string }> }>().items.map((t) => t.name);
    assert.ok(!names.includes('sneaky'), 'no token was created with a tampered cookie');
  });

  test("a revoked token's cookie is refused (401) and the token can no longer sign in", async () => {
    const temp = await createToken('temp', ['*:admin'], admin);
    const s = await login(temp.token);
    assert.equal((await req('GET', '/api/v1/states', cookie(s.cookie))).status, 200, 'control: valid before revocation');
    const revoke = await req('DELETE', '/api/v1/tokens/temp', bearer(admin));
    assert.equal(revoke.status, 200, revoke.text);
    const r = await req('GET', '/api/v1/states', cookie(s.cookie));
    assert.equal(r.status, 401, r.text);
    assert.equal(errorCode(r), 'UNAUTHENTICATED');
    assert.equal((await whoami(cookie(s.cookie))).signedIn, false);
    const again = await req('POST', '/ui/auth/login', { 'Content-Type': 'application/json' }, JSON.stringify({ token: temp.token }));
    assert.equal(again.status, 401, again.text);
    assert.deepEqual(setCookies(again), []);
  });

  test('cookie-authenticated changes need the CSRF header of that very session; cross-origin is refused even with it; nothing changes until it is right', async () => {
    const key = 'csrf/terraform.tfstate';
    assert.equal((await req('POST', `/state/${key}`, basic(admin), stateBody(1, 'L-csrf'))).status, 200);
    assert.equal((await req('LOCK', `/state/${key}`, basic(admin), lockBody('tf-csrf'))).status, 200);
    const s = await login(admin.token);
    const other = await login(admin.token);
    const path = `/api/v1/locks/${key}?id=tf-csrf`;

    assert.equal((await req('GET', `/api/v1/locks/${key}`, cookie(s.cookie))).status, 200, 'reads need no CSRF header');
    const refusals: Array<[string, Record<string, string>]> = [
      ['no CSRF header', {}],
      ['a wrong CSRF header', { 'X-Statelock-CSRF': 'x'.repeat(s.csrf.length) }],
      ['an empty CSRF header', { 'X-Statelock-CSRF': '' }],
      ["another session's CSRF token", { 'X-Statelock-CSRF': other.csrf }],
      ['the right CSRF token from another Origin', { 'X-Statelock-CSRF': s.csrf, Origin: EVIL }],
      ['the right CSRF token, Sec-Fetch-Site cross-site', { 'X-Statelock-CSRF': s.csrf, 'Sec-Fetch-Site': 'cross-site' }],
    ];
    for (const [what, headers] of refusals) {
      const r = await req('DELETE', path, { ...cookie(s.cookie), ...headers });
      assert.equal(r.status, 403, `${what}: ${r.status} ${r.text}`);
      assert.equal(errorCode(r), 'CSRF_REJECTED', what);
      assert.equal(await holder(key), 'tf-csrf', `${what}: the lock is still held`);
    }
    const restore = await req('POST', `/api/v1/restore/${key}?seq=1`, cookie(s.cookie));
    assert.equal(restore.status, 403, restore.text);
    assert.equal(errorCode(restore), 'CSRF_REJECTED');
    assert.deepEqual(await forceUnlockAudit(key), [], 'nothing happened, so nothing is audited');

    // Control: the right header, from the server's own origin, as the dashboard sends it.
    const done = await req('DELETE', path, { ...cookie(s.cookie), 'X-Statelock-CSRF': s.csrf, Origin: server.url, 'Sec-Fetch-Site': 'same-origin' });
    assert.equal(done.status, 200, done.text);
    assert.equal(await holder(key), null);
    const trail = await forceUnlockAudit(key);
    assert.deepEqual(trail.map((e) => [e.outcome, e.principal]), [['ok', 'admin']], 'audited as the signed-in principal');
  });

  test('a read-only session with the right CSRF header is still refused by the API (403 FORBIDDEN)', async () => {
    const key = 'csrf/viewer.tfstate';
    assert.equal((await req('POST', `/state/${key}`, basic(admin), stateBody(1, 'L-viewer'))).status, 200);
    assert.equal((await req('LOCK', `/state/${key}`, basic(admin), lockBody('tf-viewer'))).status, 200);
    const v = await login(viewer.token);
    const r = await req('DELETE', `/api/v1/locks/${key}?id=tf-viewer`, { ...cookie(v.cookie), 'X-Statelock-CSRF': v.csrf });
    assert.equal(r.status, 403, r.text);
    assert.equal(errorCode(r), 'FORBIDDEN');
    assert.equal(await holder(key), 'tf-viewer');
  });

  test('sign-out needs the CSRF header and clears the cookie (Max-Age=0)', async () => {
    const s = await login(admin.token);
    const refused = await req('POST', '/ui/auth/logout', cookie(s.cookie));
    assert.equal(refused.status, 403, refused.text);
    assert.equal(errorCode(refused), 'CSRF_REJECTED');
    assert.deepEqual(setCookies(refused), [], 'a refused sign-out clears nothing');
    const r = await req('POST', '/ui/auth/logout', { ...cookie(s.cookie), 'X-Statelock-CSRF': s.csrf });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json(), { signedOut: true });
    const set = setCookies(r).map(parseSetCookie);
    assert.equal(set.length, 1, JSON.stringify(setCookies(r)));
    assert.equal(set[0]!.name, COOKIE);
    assert.equal(set[0]!.value, '');
    assert.equal(set[0]!.attrs.get('max-age'), '0');
    assert.equal(set[0]!.attrs.get('path'), '/');
    assert.equal(set[0]!.attrs.get('httponly'), true);
  });
});
