import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The dashboard's sign-in session, as pure functions: a stateless cookie bound to a token. The MAC is keyed
 * by the token's stored hash, which only the database knows: so any replica on the same database accepts
 * the cookie, revoking the token ends its sessions, and nothing about sessions is stored.
 *
 *   v1.<principal id>.<expiry, epoch seconds>.<nonce>.<mac>
 *
 * The CSRF token is derived from the same key and the cookie's nonce: it belongs to this session only.
 */
export const SESSION_COOKIE = 'statelock_session';
export const CSRF_HEADER = 'x-statelock-csrf';
export const SESSION_SECONDS = 8 * 60 * 60;

export interface SessionClaim {
  principalId: string;
  expiresAt: number;
  nonce: string;
}

export function mintSessionCookie(principalId: string, tokenHash: string, nowSeconds: number, nonce = randomBytes(16).toString('base64url')): string {
  const expiresAt = nowSeconds + SESSION_SECONDS;
  return `v1.${principalId}.${expiresAt}.${nonce}.${mac(tokenHash, `session|${principalId}|${expiresAt}|${nonce}`)}`;
}

/** The claim a cookie makes, before its MAC is checked (the principal's hash is needed for that). Null when malformed. */
export function parseSessionCookie(value: string): (SessionClaim & { mac: string }) | null {
  const m = /^v1\.([A-Za-z0-9]{16})\.(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!m) return null;
  return { principalId: m[1]!, expiresAt: Number(m[2]), nonce: m[3]!, mac: m[4]! };
}

/** Is the claim's MAC right for this token hash, and the session not yet expired? Constant-time comparison. */
export function verifySessionClaim(claim: SessionClaim & { mac: string }, tokenHash: string, nowSeconds: number): boolean {
  const expected = Buffer.from(mac(tokenHash, `session|${claim.principalId}|${claim.expiresAt}|${claim.nonce}`));
  const given = Buffer.from(claim.mac);
  return given.length === expected.length && timingSafeEqual(given, expected) && claim.expiresAt > nowSeconds;
}

export function csrfToken(tokenHash: string, nonce: string): string {
  return mac(tokenHash, `csrf|${nonce}`);
}

export function csrfMatches(given: string | undefined, expected: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The cookie's value from a Cookie header (the last one wins, as browsers send the most specific first). */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  let found: string | null = null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) found ??= part.slice(eq + 1).trim();
  }
  return found;
}

export function sessionSetCookie(value: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_SECONDS}${secure ? '; Secure' : ''}`;
}

export function sessionClearCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0${secure ? '; Secure' : ''}`;
}

/**
 * May a request come from where it says it comes from? A browser names the page's origin in `Origin` (on
 * every cross-origin request and on same-origin ones that change something) and says `Sec-Fetch-Site`.
 * Clients that are not browsers (Terraform, the CLI, the AWS SDKs) send neither and pass.
 */
export function sameOriginRequest(headers: { origin?: string | undefined; host?: string | undefined; 'sec-fetch-site'?: string | undefined }, method: string): boolean {
  const changes = method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
  if (changes && headers['sec-fetch-site'] === 'cross-site') return false;
  const origin = headers.origin;
  if (origin === undefined) return true;
  if (origin === 'null') return !changes;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return host === headers.host;
}

function mac(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}
