import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cookieValue, csrfMatches, csrfToken, mintSessionCookie, parseSessionCookie, sameOriginRequest, sessionClearCookie, sessionSetCookie, SESSION_SECONDS, verifySessionClaim } from '../../src/protocols/ui/ui-session.js';

const HASH = 'a'.repeat(64);
const ID = 'AbCdEfGh12345678';

describe('dashboard session cookie', () => {
  test('a minted cookie verifies with its token hash until it expires', () => {
    const cookie = mintSessionCookie(ID, HASH, 1_000_000);
    const claim = parseSessionCookie(cookie);
    assert.ok(claim);
    assert.equal(claim.principalId, ID);
    assert.equal(claim.expiresAt, 1_000_000 + SESSION_SECONDS);
    assert.equal(verifySessionClaim(claim, HASH, 1_000_000), true);
    assert.equal(verifySessionClaim(claim, HASH, 1_000_000 + SESSION_SECONDS), false, 'expired');
  });

  test('another token hash (a new token under the same id, or a guess) does not verify it', () => {
    const claim = parseSessionCookie(mintSessionCookie(ID, HASH, 1_000_000))!;
    assert.equal(verifySessionClaim(claim, 'b'.repeat(64), 1_000_000), false);
  });

  test('changing any part of the cookie breaks it', () => {
    const cookie = mintSessionCookie(ID, HASH, 1_000_000, 'nonce-nonce-nonce-1');
    const [v, id, exp, nonce, mac] = cookie.split('.');
    const variants = [
      [v, 'ZZZZZZZZ12345678', exp, nonce, mac],
      [v, id, String(Number(exp) + 3600), nonce, mac],
      [v, id, exp, 'nonce-nonce-nonce-2', mac],
      [v, id, exp, nonce, mac!.slice(0, -1) + (mac!.endsWith('A') ? 'B' : 'A')],
    ];
    for (const parts of variants) {
      const claim = parseSessionCookie(parts.join('.'));
      assert.ok(claim === null || !verifySessionClaim(claim, HASH, 1_000_000), parts.join('.'));
    }
  });

  test('malformed cookies parse to null', () => {
    for (const bad of ['', 'v1', 'v2.AbCdEfGh12345678.1.nonce-nonce-nonce.x', `v1.short.1.${'n'.repeat(16)}.${'m'.repeat(43)}`, `v1.${ID}.1e9.${'n'.repeat(16)}.${'m'.repeat(43)}`]) {
      assert.equal(parseSessionCookie(bad), null, bad);
    }
  });

  test('the CSRF token belongs to one session (nonce) and one token', () => {
    const a = csrfToken(HASH, 'nonce-1');
    assert.equal(csrfMatches(a, csrfToken(HASH, 'nonce-1')), true);
    assert.equal(csrfMatches(a, csrfToken(HASH, 'nonce-2')), false);
    assert.equal(csrfMatches(a, csrfToken('b'.repeat(64), 'nonce-1')), false);
    assert.equal(csrfMatches(undefined, a), false);
    assert.equal(csrfMatches('', a), false);
  });

  test('Set-Cookie attributes: HttpOnly, SameSite=Strict, Path=/, Secure only over HTTPS; sign-out expires it', () => {
    assert.equal(sessionSetCookie('x', false), `statelock_session=x; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_SECONDS}`);
    assert.match(sessionSetCookie('x', true), /; Secure$/);
    assert.match(sessionClearCookie(false), /^statelock_session=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0$/);
  });

  test('cookieValue finds the named cookie among others', () => {
    assert.equal(cookieValue('a=1; statelock_session=abc; b=2', 'statelock_session'), 'abc');
    assert.equal(cookieValue('statelock_sessionx=1', 'statelock_session'), null);
    assert.equal(cookieValue(undefined, 'statelock_session'), null);
  });
});

describe('sameOriginRequest', () => {
  const host = '127.0.0.1:8080';
  test('clients that are not browsers (no Origin, no Sec-Fetch-Site) pass', () => {
    assert.equal(sameOriginRequest({ host }, 'POST'), true);
    assert.equal(sameOriginRequest({ host }, 'DELETE'), true);
  });
  test('the page itself passes; another origin never does', () => {
    assert.equal(sameOriginRequest({ host, origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'same-origin' }, 'POST'), true);
    assert.equal(sameOriginRequest({ host, origin: 'https://evil.example' }, 'POST'), false);
    assert.equal(sameOriginRequest({ host, origin: 'https://evil.example' }, 'GET'), false);
    assert.equal(sameOriginRequest({ host, origin: 'http://127.0.0.1:9999' }, 'POST'), false, 'another port is another origin');
    assert.equal(sameOriginRequest({ host, origin: 'not a url' }, 'GET'), false);
  });
  test('a change marked cross-site or from an opaque origin is refused', () => {
    assert.equal(sameOriginRequest({ host, 'sec-fetch-site': 'cross-site' }, 'POST'), false);
    assert.equal(sameOriginRequest({ host, 'sec-fetch-site': 'cross-site' }, 'GET'), true, 'a cross-site link to a page is fine');
    assert.equal(sameOriginRequest({ host, origin: 'null' }, 'POST'), false);
  });
});
