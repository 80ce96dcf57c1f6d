import type { ClientContext } from '../audit/audit-entry.js';
import { StatelockError } from '../server/errors.js';
import type { PrincipalRecord, Store } from '../store/store.js';
import { mintPrincipal } from './authenticator.js';
import { formatGrant, parseGrant } from './permissions.js';

/** A token as listings show it: never its secret. */
export interface TokenJson {
  name: string;
  grants: string[];
  awsAccessKeyId: string | null;
  createdAt: string;
  revokedAt: string | null;
}

/** What `token create` returns once: the secrets are not stored and cannot be shown again. */
export interface CreatedToken extends TokenJson {
  token: string;
  awsSecretAccessKey: string | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The key under which token changes appear in the audit trail. */
export function tokenAuditKey(name: string): string {
  return `tokens/${name}`;
}

/** Token use cases: each is one atomic store operation that also writes its audit entry. */
export class TokenService {
  constructor(
    private readonly store: Store,
    /** Told after a principal was created or revoked (the authenticator forgets whether tokens are enforced). */
    private readonly onChange: () => void = () => undefined,
  ) {}

  /**
   * @throws StatelockError INVALID_TOKEN_REQUEST (bad name or grant), TOKEN_EXISTS (409).
   */
  async create(request: { name: string; allow: string[]; aws: boolean }, client: ClientContext): Promise<CreatedToken> {
    if (!NAME.test(request.name)) throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: `name "${request.name}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit` });
    if (request.allow.length === 0) throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: "give at least one grant, e.g. 'lesson-17/pr-*:read,write,lock'" });
    const grants: string[] = [];
    for (const text of request.allow) {
      const g = parseGrant(text);
      if ('error' in g) throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: g.error });
      grants.push(formatGrant(g));
    }
    const minted = mintPrincipal(request.name, grants, { aws: request.aws, now: new Date().toISOString() });
    const audit = { action: 'token.create' as const, key: tokenAuditKey(request.name), lockId: null, outcome: 'ok' as const, detail: { grants, aws: request.aws, ...(minted.record.awsAccessKeyId ? { awsAccessKeyId: minted.record.awsAccessKeyId } : {}) } };
    let created: boolean;
    try {
      created = await this.store.createPrincipal(minted.record, audit, client);
    } finally {
      this.onChange(); // also after a failure: whether it committed is then unknown
    }
    if (!created) throw new StatelockError('TOKEN_EXISTS', { name: request.name });
    return { ...tokenJson(minted.record), token: minted.token, awsSecretAccessKey: minted.awsSecretAccessKey };
  }

  async list(): Promise<TokenJson[]> {
    return (await this.store.listPrincipals()).map(tokenJson);
  }

  /** @throws StatelockError TOKEN_NOT_FOUND */
  async revoke(name: string, client: ClientContext): Promise<TokenJson> {
    // Revoking the last live admin would switch authentication off (no live token left) or lock every
    // operator out: refused; create the replacement first.
    const live = (await this.store.listPrincipals()).filter((p) => p.revokedAt === null);
    const isAdmin = (p: PrincipalRecord) => p.grants.some((g) => g === '*:admin' || (g.startsWith('*:') && g.slice(2).split(',').includes('admin')));
    const target = live.find((p) => p.name === name);
    if (target && (live.length === 1 || (isAdmin(target) && live.filter(isAdmin).length === 1))) throw new StatelockError('TOKEN_LAST_ADMIN', { name });
    const audit = { action: 'token.revoke' as const, key: tokenAuditKey(name), lockId: null, outcome: 'ok' as const, detail: {} };
    let revoked: PrincipalRecord | null;
    try {
      revoked = await this.store.revokePrincipal(name, new Date().toISOString(), audit, client);
    } finally {
      this.onChange();
    }
    if (!revoked) throw new StatelockError('TOKEN_NOT_FOUND', { name });
    return tokenJson(revoked);
  }
}

export function tokenJson(p: PrincipalRecord): TokenJson {
  return { name: p.name, grants: p.grants, awsAccessKeyId: p.awsAccessKeyId, createdAt: p.createdAt, revokedAt: p.revokedAt };
}
