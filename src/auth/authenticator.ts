import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { StatelockError } from '../server/errors.js';
import type { PrincipalRecord, Store } from '../store/store.js';
import { isAllowed, parseGrant, type Grant, type Permission } from './permissions.js';
import { csrfToken, mintSessionCookie, parseSessionCookie, verifySessionClaim } from '../protocols/ui/ui-session.js';

/** Who is asking, once authenticated. `anonymous` exists only while no principal is configured (loopback). */
export interface Principal {
  id: string;
  name: string;
  grants: Grant[];
  kind: 'token' | 'aws-key' | 'aws-credentials-flag' | 'anonymous';
}

/** Everything is allowed: a server with no principal yet, on loopback (it says so at start-up). */
export const ANONYMOUS: Principal = { id: 'anonymous', name: 'anonymous', grants: [{ pattern: '*', permissions: ['admin'] }], kind: 'anonymous' };

/** Tokens look like `slk_<id>_<secret>`: the id finds the principal, only the secret's hash is stored. */
const TOKEN = /^slk_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewToken {
  record: PrincipalRecord;
  token: string;
  awsSecretAccessKey: string | null;
}

/** Mints a principal and its one-time secrets. Pure but for randomness. */
export function mintPrincipal(name: string, grants: string[], opts: { aws: boolean; now: string }): NewToken {
  const id = randomBytes(12).toString('base64url').replace(/[-_]/g, 'x').slice(0, 16);
  const secret = randomBytes(32).toString('base64url');
  const awsSecret = opts.aws ? randomBytes(30).toString('base64') : null;
  return {
    record: {
      id,
      name,
      tokenHash: hashSecret(secret),
      grants,
      awsAccessKeyId: opts.aws ? `SLK${id.toUpperCase()}` : null,
      awsSecret,
      createdAt: opts.now,
      revokedAt: null,
    },
    token: `slk_${id}_${secret}`,
    awsSecretAccessKey: awsSecret,
  };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The grants of a stored principal, parsed (a grant that no longer parses grants nothing). */
export function grantsOf(record: PrincipalRecord): Grant[] {
  return record.grants.map(parseGrant).filter((g): g is Grant => !('error' in g));
}

/**
 * Authentication for every door. While the store holds no live principal, requests are anonymous and
 * allowed everything (the server refuses to start beyond loopback in that state unless told otherwise);
 * once one exists, every request must prove a principal: a token (HTTP Basic password or Bearer) on the
 * http backend and the API, an access key on the AWS doors.
 */
export class Authenticator {
  /** The last answer of {@link enforced} and when it was read (ms, from `now`); null: read it again. */
  private cachedEnforced: { value: boolean; at: number } | null = null;

  constructor(
    private readonly store: Store,
    /** `serve --aws-credentials`: access keys with full rights, for setups without tokens. */
    private readonly awsCredentials: ReadonlyMap<string, string>,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Is authentication enforced (a live principal exists)? Asked on every request, so the answer is kept
   * for {@link ENFORCED_TTL_MS}: counting principals was a database read per request (a round trip on
   * PostgreSQL). A token created or revoked through this server takes effect at once ({@link principalsChanged});
   * one created through another replica of the same database, within the TTL. Only the first token flips
   * the answer in practice (the service refuses to revoke the last live one), and a stale `true` fails
   * closed: an authentication that fails while the cache says `true` reads the count again before refusing.
   */
  async enforced(): Promise<boolean> {
    const cached = this.cachedEnforced;
    if (cached && this.now() - cached.at < ENFORCED_TTL_MS) return cached.value;
    const at = this.now();
    const value = (await this.store.countLivePrincipals()) > 0;
    this.cachedEnforced = { value, at };
    return value;
  }

  /** A principal was created or revoked through this server: the next {@link enforced} reads the store. */
  principalsChanged(): void {
    this.cachedEnforced = null;
  }

  /**
   * The principal behind an `Authorization` header of the http backend or the API.
   * @throws StatelockError UNAUTHENTICATED (401) when enforced and the header is missing, malformed or wrong.
   */
  async fromAuthorization(header: string | undefined): Promise<Principal> {
    if (!(await this.enforced())) return ANONYMOUS;
    try {
      return await this.tokenPrincipal(header);
    } catch (err) {
      // The cached answer may be stale (the database was restored to one without tokens): ask once more.
      if (err instanceof StatelockError) {
        this.principalsChanged();
        if (!(await this.enforced())) return ANONYMOUS;
      }
      throw err;
    }
  }

  private async tokenPrincipal(header: string | undefined): Promise<Principal> {
    if (!header) throw new StatelockError('UNAUTHENTICATED', { reason: 'no credentials: send the token as `Authorization: Bearer <token>`, or as the HTTP Basic password (Terraform\'s `password`)' });
    const token = tokenFromHeader(header);
    if (token === null) throw new StatelockError('UNAUTHENTICATED', { reason: 'the Authorization header is neither `Bearer <token>` nor HTTP Basic with the token as password' });
    const m = TOKEN.exec(token);
    if (!m) throw new StatelockError('UNAUTHENTICATED', { reason: 'the token is not a statelock token (slk_…)' });
    const record = await this.store.getPrincipal(m[1]!);
    const given = Buffer.from(hashSecret(m[2]!), 'hex');
    const expected = Buffer.from(record?.tokenHash ?? '0'.repeat(64), 'hex');
    // Compared in constant time, also when there is no such principal.
    const matches = given.length === expected.length && timingSafeEqual(given, expected);
    if (!record || !matches) throw new StatelockError('UNAUTHENTICATED', { reason: 'the token is not valid' });
    if (record.revokedAt) throw new StatelockError('UNAUTHENTICATED', { reason: `the token "${record.name}" was revoked at ${record.revokedAt}` });
    return { id: record.id, name: record.name, grants: grantsOf(record), kind: 'token' };
  }

  /**
   * Signs a dashboard user in with a token: the session cookie's value and its CSRF token.
   * @throws StatelockError UNAUTHENTICATED when the token is not a live token.
   */
  async signIn(token: string): Promise<{ principal: Principal; cookie: string; csrf: string }> {
    const principal = await this.fromAuthorization(`Bearer ${token}`);
    const record = (await this.store.getPrincipal(principal.id))!;
    const cookie = mintSessionCookie(record.id, record.tokenHash, Math.floor(Date.now() / 1000));
    return { principal, cookie, csrf: csrfToken(record.tokenHash, parseSessionCookie(cookie)!.nonce) };
  }

  /** The principal behind a dashboard session cookie and the session's CSRF token; null when the cookie is malformed, forged, expired or its token revoked. */
  async fromSessionCookie(value: string): Promise<{ principal: Principal; csrf: string } | null> {
    const claim = parseSessionCookie(value);
    if (!claim) return null;
    const record = await this.store.getPrincipal(claim.principalId);
    if (!record || record.revokedAt || !verifySessionClaim(claim, record.tokenHash, Math.floor(Date.now() / 1000))) return null;
    return { principal: { id: record.id, name: record.name, grants: grantsOf(record), kind: 'token' }, csrf: csrfToken(record.tokenHash, claim.nonce) };
  }

  /**
   * The principal and secret behind an AWS access key ID; `secret` null means "accept unverified" (no
   * principal and no --aws-credentials, on loopback).
   * @throws StatelockError AWS_UNKNOWN_ACCESS_KEY
   */
  async fromAccessKey(accessKeyId: string, loopback: boolean): Promise<{ principal: Principal; secret: string | null }> {
    const flagged = this.awsCredentials.get(accessKeyId);
    if (flagged !== undefined) return { principal: { id: `aws:${accessKeyId}`, name: `aws:${accessKeyId}`, grants: ANONYMOUS.grants, kind: 'aws-credentials-flag' }, secret: flagged };
    const record = await this.store.getPrincipalByAccessKey(accessKeyId);
    if (record?.awsSecret) return { principal: { id: record.id, name: record.name, grants: grantsOf(record), kind: 'aws-key' }, secret: record.awsSecret };
    if (this.awsCredentials.size === 0 && loopback && !(await this.enforced())) return { principal: ANONYMOUS, secret: null };
    throw new StatelockError('AWS_UNKNOWN_ACCESS_KEY', { accessKeyId });
  }
}

/** How long an answer of {@link Authenticator.enforced} is kept (see there). */
export const ENFORCED_TTL_MS = 1000;

/** Throws FORBIDDEN (403) unless `principal` may do `permission` on `key` (null: server-wide). */
export function authorize(principal: Principal, permission: Permission, key: string | null): void {
  if (isAllowed(principal.grants, permission, key)) return;
  throw new StatelockError('FORBIDDEN', { principal: principal.name, permission, target: key === null ? 'this server (a grant on "*" is needed)' : key });
}

function tokenFromHeader(header: string): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return null;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  const password = decoded.slice(colon + 1);
  // Terraform's http backend sends `username:password`; the token is the password (or, failing that, the username).
  return password !== '' ? password : decoded.slice(0, colon) || null;
}
