import type { LockService } from '../../lock/lock-service.js';
import { StatelockError } from '../../server/errors.js';
import { sendJson, sendStream } from '../../server/http-io.js';
import type { RequestContext } from '../../server/request-context.js';
import { parseKeyFromPath, validateKey } from '../../state/state-key.js';
import type { StateService } from '../../state/state-service.js';
import type { AuditService } from '../../audit/audit-service.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { auditJson, lockJson, sessionJson, stateSummaryJson, versionJson } from './representations.js';
import type { SessionService } from '../../lock/session-service.js';
import { parseJsonObject } from '../../shared/json-object.js';
import type { AuditAction } from '../../audit/audit-entry.js';
import { coversPrefix, isAllowed, type Permission } from '../../auth/permissions.js';
import type { TokenService } from '../../auth/token-service.js';

const AUDIT_ACTIONS: readonly AuditAction[] = ['lock.acquire', 'lock.release', 'lock.conflict', 'lock.force-unlock', 'lock.auto-release', 'state.write', 'state.write.forced', 'state.write.refused', 'state.delete', 'state.restore', 'token.create', 'token.revoke'];

/**
 * The JSON API under `/api/v1` (described by `/api/v1/openapi.json`): what the CLI, the dashboard and
 * scripts use. Collections take `prefix`, `after` (cursor) and `limit`; pages are `{items, next}`.
 */
export class ApiDoor {
  constructor(
    private readonly state: StateService,
    private readonly locks: LockService,
    private readonly audit: AuditService,
    private readonly sessions: SessionService,
    private readonly tokens: TokenService,
  ) {}

  /**
   * The permission each route needs on the key it names (`null`: server-wide, a grant on `*`). Listings
   * are `filtered` (they show only what the principal may read), sessions are checked against their key,
   * the OpenAPI document is open to every authenticated principal.
   */
  private static readonly PERMISSION: Record<string, Permission | null | 'filtered' | 'own-check' | 'any'> = {
    'GET openapi.json': 'any',
    'GET overview': null,
    'GET states': 'filtered',
    'GET states/*': 'read',
    'DELETE states/*': 'delete',
    'GET versions/*': 'read',
    'GET content/*': 'read',
    'GET diff/*': 'read',
    'POST restore/*': 'restore',
    'GET locks': 'filtered',
    'GET locks/*': 'read',
    'DELETE locks/*': 'force-unlock',
    'GET audit': 'own-check',
    'GET rejected/*': 'read',
    'GET rejected-content/*': 'read',
    'POST sessions': 'own-check',
    'GET sessions/*': 'own-check',
    'POST sessions/*': 'own-check',
    'POST tokens': null,
    'GET tokens': null,
    'DELETE tokens/*': null,
  };

  /** `METHOD collection` or `METHOD collection/*` (a key follows) → handler. 405's Allow header is derived from it. */
  private readonly routes: Record<string, (ctx: RequestContext, key: string) => Promise<void>> = {
    'GET openapi.json': async (ctx) => sendJson(ctx.res, 200, OPENAPI_DOCUMENT),
    'GET overview': (ctx) => this.overview(ctx),
    'GET states': (ctx) => this.listStates(ctx),
    'GET states/*': (ctx, key) => this.getState(ctx, key),
    'DELETE states/*': (ctx, key) => this.deleteState(ctx, key),
    'GET versions/*': (ctx, key) => this.listVersions(ctx, key),
    'GET content/*': (ctx, key) => this.getContent(ctx, key),
    'GET diff/*': (ctx, key) => this.getDiff(ctx, key),
    'POST restore/*': (ctx, key) => this.restore(ctx, key),
    'GET locks': (ctx) => this.listLocks(ctx),
    'GET locks/*': (ctx, key) => this.getLock(ctx, key),
    'DELETE locks/*': (ctx, key) => this.forceUnlock(ctx, key),
    'GET audit': (ctx) => this.listAudit(ctx),
    'GET rejected/*': (ctx, key) => this.listRejected(ctx, key),
    'GET rejected-content/*': (ctx, key) => this.getRejected(ctx, key),
    'POST sessions': (ctx) => this.createSession(ctx),
    'GET sessions/*': (ctx, tail) => this.sessionAction(ctx, tail),
    'POST sessions/*': (ctx, tail) => this.sessionAction(ctx, tail),
    'POST tokens': (ctx) => this.createToken(ctx),
    'GET tokens': async (ctx) => sendJson(ctx.res, 200, { items: await this.tokens.list() }),
    'DELETE tokens/*': async (ctx, name) => sendJson(ctx.res, 200, await this.tokens.revoke(name, ctx.client)),
  };

  async handle(ctx: RequestContext): Promise<void> {
    const [collection = '', ...rest] = ctx.tail.split('/');
    const keyTail = rest.join('/');
    const pattern = `${collection}${keyTail ? '/*' : ''}`;
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    const route = `${method} ${pattern}`;
    const handler = this.routes[route];
    if (handler) {
      const permission = ApiDoor.PERMISSION[route];
      if (permission === undefined) throw new Error(`route ${route} has no permission`);
      // Server-wide routes are checked before anything of the request is looked at.
      if (permission === null) ctx.authorize(route === 'GET overview' ? 'read' : 'admin', null);
      const arg = keyTail ? (collection === 'sessions' ? keyTail : collection === 'tokens' ? tokenName(keyTail) : parseKeyFromPath(keyTail)) : '';
      if (permission !== null && permission !== 'filtered' && permission !== 'own-check' && permission !== 'any') ctx.authorize(permission, arg);
      return handler(ctx, arg);
    }
    const allowed = Object.keys(this.routes)
      .filter((r) => r.endsWith(` ${pattern}`))
      .map((r) => r.split(' ')[0]!);
    if (allowed.length) {
      if (allowed.includes('GET')) allowed.push('HEAD');
      ctx.res.setHeader('Allow', allowed.join(', '));
      throw new StatelockError('METHOD_NOT_ALLOWED', { method: ctx.method, path: `/api/v1/${ctx.tail}`, allowed: allowed.join(', ') });
    }
    throw new StatelockError('NOT_FOUND', { path: `/api/v1/${ctx.tail}` });
  }

  private async listStates(ctx: RequestContext) {
    const { prefix, after } = prefixAndAfter(ctx);
    const page = await this.state.list({ ...(prefix ? { prefix } : {}), ...(after ? { after } : {}), limit: limitOf(ctx) });
    const readable = page.items.filter((s) => isAllowed(ctx.principal.grants, 'read', s.key));
    // The total counts keys, readable or not: it is given only to a principal who may read every key under the prefix (else null).
    const countable = isAllowed(ctx.principal.grants, 'read', null) || (prefix !== undefined && coversPrefix(ctx.principal.grants, 'read', prefix));
    const total = boolParam(ctx, 'count') ? { total: countable ? await this.state.count(prefix) : null } : {};
    sendJson(ctx.res, 200, { items: readable.map(stateSummaryJson), next: page.next, ...total });
  }

  /** The dashboard's first page: how many states and locks, the locks' verdicts, and the last 24 hours' trouble. */
  private async overview(ctx: RequestContext) {
    const since = new Date(Date.now() - 24 * 3600_000).toISOString();
    const count = (actions: AuditAction[]) => this.audit.count({ since, actions });
    const locks = await this.locks.summary();
    sendJson(ctx.res, 200, {
      states: await this.state.count(),
      locks,
      last24h: {
        conflicts: await count(['state.write.refused', 'lock.conflict']),
        forcedUnlocks: await count(['lock.force-unlock']),
        writes: await count(['state.write', 'state.write.forced']),
        restores: await count(['state.restore']),
      },
    });
  }

  private async getState(ctx: RequestContext, key: string) {
    const current = await this.state.read(key);
    if (!current) throw new StatelockError('STATE_NOT_FOUND', { key });
    const lock = await this.locks.get(key);
    sendJson(ctx.res, 200, { key, current: versionJson(current.meta), versions: current.meta.seq, lock: lock ? lockJson(lock) : null });
  }

  private async deleteState(ctx: RequestContext, key: string) {
    if (!(await this.state.delete(key, ctx.client))) throw new StatelockError('STATE_NOT_FOUND', { key });
    sendJson(ctx.res, 200, { deleted: key });
  }

  private async restore(ctx: RequestContext, key: string) {
    const which = versionParam(ctx, 'seq', 'serial');
    if (!which) throw new StatelockError('INVALID_QUERY', { name: 'seq', reason: 'give the version to restore as seq=N or serial=N' });
    const { version, replaced } = await this.state.restore(key, which, ctx.query.get('lockId') || null, ctx.client);
    sendJson(ctx.res, 200, { restored: versionJson(version), replaced });
  }

  private async getDiff(ctx: RequestContext, key: string) {
    const { from, to, diff } = await this.state.diff(key, versionParam(ctx, 'from', 'fromSerial'), versionParam(ctx, 'to', 'toSerial'), { values: boolParam(ctx, 'values') });
    sendJson(ctx.res, 200, { key, from: from ? versionJson(from) : null, to: versionJson(to), ...diff });
  }

  private async forceUnlock(ctx: RequestContext, key: string) {
    const id = ctx.query.get('id');
    if (!id) throw new StatelockError('INVALID_QUERY', { name: 'id', reason: "the holder's lock ID is required, as for terraform force-unlock LOCK_ID" });
    const { previous } = await this.locks.forceUnlock(key, id, ctx.client, { evenIfAlive: ctx.query.get('evenIfAlive') === 'true' });
    sendJson(ctx.res, 200, { unlocked: key, previous: previous ? lockJson(previous) : null });
  }

  private async listRejected(ctx: RequestContext, key: string) {
    const page = await this.state.listRejected(key, { after: intParam(ctx, 'after', 0), limit: limitOf(ctx) });
    sendJson(ctx.res, 200, page);
  }

  private async getRejected(ctx: RequestContext, key: string) {
    const id = intParam(ctx, 'id', -1);
    if (id < 0) throw new StatelockError('INVALID_QUERY', { name: 'id', reason: 'the rejected write to download, from GET /api/v1/rejected/<key>' });
    const found = await this.state.readRejected(key, id);
    if (!found) throw new StatelockError('REJECTED_WRITE_NOT_FOUND', { key, id });
    await sendStream(ctx.req, ctx.res, 200, found.meta.size, found.body.batches(), 'application/json', { 'X-Statelock-Lock-Id': found.meta.lockId, 'X-Statelock-Serial': String(found.meta.serial) });
  }

  private async createSession(ctx: RequestContext) {
    const body = parseJsonObject(await ctx.body(), (reason) => new StatelockError('INVALID_SESSION', { reason }));
    const { doc } = body;
    if (typeof doc.key !== 'string') throw new StatelockError('INVALID_SESSION', { reason: '"key" must be the state key' });
    const key = validateKey(doc.key);
    ctx.authorize('lock', key);
    const ttlSeconds = doc.ttlSeconds === undefined ? 30 : Number(doc.ttlSeconds);
    const strings = (v: unknown): Record<string, string> =>
      typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === 'string' || typeof x === 'number').map(([k, x]) => [k, String(x)])) : {};
    const holder = typeof doc.holder === 'object' && doc.holder !== null ? (doc.holder as Record<string, unknown>) : {};
    const session = await this.sessions.create({ key, ttlSeconds, holder, ci: strings(doc.ci) }, ctx.client);
    sendJson(ctx.res, 201, sessionJson(session));
  }

  /** `GET sessions/<id>`, `POST sessions/<id>/heartbeat`, `POST sessions/<id>/end`. */
  private async sessionAction(ctx: RequestContext, tail: string) {
    const [id = '', action, ...extra] = tail.split('/');
    const route = `${ctx.method === 'HEAD' ? 'GET' : ctx.method} ${action ?? ''}`;
    // Reading a session needs read on its key; heartbeats and ends act on its lock and need lock.
    ctx.authorize(route === 'GET ' ? 'read' : 'lock', (await this.sessions.get(id)).key);
    if (extra.length === 0 && route === 'GET ') return sendJson(ctx.res, 200, sessionJson(await this.sessions.get(id)));
    if (extra.length === 0 && route === 'POST heartbeat') {
      const s = await this.sessions.heartbeat(id);
      return sendJson(ctx.res, 200, { id: s.id, expiresAt: s.expiresAt });
    }
    if (extra.length === 0 && route === 'POST end') {
      const raw = await ctx.body();
      const { doc } = raw.length ? parseJsonObject(raw, (reason) => new StatelockError('INVALID_SESSION', { reason })) : { doc: {} as Record<string, unknown> };
      const reason = typeof doc.reason === 'string' && doc.reason ? doc.reason : 'the wrapper ended the session';
      const { released } = await this.locks.endSession(id, reason, ctx.client);
      return sendJson(ctx.res, 200, { id, released: released ? lockJson(released) : null });
    }
    throw new StatelockError('NOT_FOUND', { path: `/api/v1/sessions/${tail}` });
  }

  private async listVersions(ctx: RequestContext, key: string) {
    const after = intParam(ctx, 'after', 0);
    const page = await this.state.listVersions(key, { after, limit: limitOf(ctx) });
    if (page.items.length === 0 && after === 0) throw new StatelockError('STATE_NOT_FOUND', { key });
    if (!boolParam(ctx, 'resources')) return sendJson(ctx.res, 200, { items: page.items.map(versionJson), next: page.next });
    const items = [];
    for (const v of page.items) items.push({ ...versionJson(v), resources: await this.state.countResources(v) });
    sendJson(ctx.res, 200, { items, next: page.next });
  }

  private async getContent(ctx: RequestContext, key: string) {
    const which = versionParam(ctx, 'seq', 'serial');
    const found = which ? await this.state.readVersion(key, which) : await this.state.read(key);
    if (!found) throw which ? new StatelockError('VERSION_NOT_FOUND', { key, which: 'seq' in which ? `seq ${which.seq}` : `with serial ${which.serial}` }) : new StatelockError('STATE_NOT_FOUND', { key });
    const download: Record<string, string> = boolParam(ctx, 'download') ? { 'Content-Disposition': `attachment; filename="${downloadName(key, found.meta.seq, found.meta.serial)}"` } : {};
    await sendStream(ctx.req, ctx.res, 200, found.meta.size, found.body.batches(), 'application/json', {
      ...download,
      'Content-MD5': found.meta.md5,
      'X-Statelock-Seq': String(found.meta.seq),
      'X-Statelock-Serial': String(found.meta.serial),
    });
  }

  private async listLocks(ctx: RequestContext) {
    const page = await this.locks.list({ ...prefixAndAfter(ctx), limit: limitOf(ctx) });
    const now = Date.now();
    const readable = page.items.filter((l) => isAllowed(ctx.principal.grants, 'read', l.key));
    sendJson(ctx.res, 200, { items: readable.map((l) => lockJson(l, now)), next: page.next });
  }

  private async getLock(ctx: RequestContext, key: string) {
    const lock = await this.locks.get(key);
    if (!lock) throw new StatelockError('LOCK_NOT_FOUND', { key });
    sendJson(ctx.res, 200, lockJson(lock, Date.now(), this.locks.waiters.count(key)));
  }

  /** `{"name","allow":[…],"aws"?}` → 201 with the token (and AWS secret), shown this once. */
  private async createToken(ctx: RequestContext) {
    const { doc } = parseJsonObject(await ctx.body(), (reason) => new StatelockError('INVALID_TOKEN_REQUEST', { reason }));
    const allow = doc.allow;
    if (typeof doc.name !== 'string') throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: '"name" must be a string' });
    if (!Array.isArray(allow) || !allow.every((a): a is string => typeof a === 'string')) throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: '"allow" must be an array of grants such as "lesson-17/pr-*:read,write,lock"' });
    if (doc.aws !== undefined && typeof doc.aws !== 'boolean') throw new StatelockError('INVALID_TOKEN_REQUEST', { reason: '"aws" must be true or false' });
    sendJson(ctx.res, 201, await this.tokens.create({ name: doc.name, allow, aws: doc.aws === true }, ctx.client));
  }

  private async listAudit(ctx: RequestContext) {
    const key = ctx.query.get('key') ?? undefined;
    // One key's trail is readable with read on it; the whole trail (every key, token changes) needs admin.
    if (key !== undefined) ctx.authorize('read', key);
    else ctx.authorize('admin', null);
    const since = ctx.query.get('since') ?? undefined;
    if (since !== undefined && Number.isNaN(Date.parse(since))) throw new StatelockError('INVALID_QUERY', { name: 'since', reason: 'not an ISO 8601 time' });
    const action = ctx.query.get('action') ?? undefined;
    if (action !== undefined && !AUDIT_ACTIONS.includes(action as AuditAction)) {
      throw new StatelockError('INVALID_QUERY', { name: 'action', reason: `one of ${AUDIT_ACTIONS.join(', ')}` });
    }
    const page = await this.audit.list({
      ...(key !== undefined ? { key } : {}),
      ...(since !== undefined ? { since: new Date(since).toISOString() } : {}),
      ...(action !== undefined ? { action: action as AuditAction } : {}),
      ...auditOrder(ctx),
      limit: limitOf(ctx),
    });
    // Token changes (kept under `tokens/<name>`, which a `*:read` grant would match) are for admins only.
    const admin = isAllowed(ctx.principal.grants, 'admin', null);
    const items = admin ? page.items : page.items.filter((e) => !e.action.startsWith('token.'));
    sendJson(ctx.res, 200, { items: items.map(auditJson), next: page.next });
  }
}

/** The `<name>` of `tokens/<name>`, percent-decoded. @throws StatelockError TOKEN_NOT_FOUND when it cannot be a token name. */
function tokenName(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new StatelockError('TOKEN_NOT_FOUND', { name: raw });
  }
}

/** `order=desc` (newest first, paged with `before`) or the default oldest first (paged with `after`). */
function auditOrder(ctx: RequestContext): { after: number } | { newestFirst: true; before?: number } {
  const order = ctx.query.get('order') ?? 'asc';
  if (order !== 'asc' && order !== 'desc') throw new StatelockError('INVALID_QUERY', { name: 'order', reason: 'asc or desc' });
  if (order === 'asc') return { after: intParam(ctx, 'after', 0) };
  const before = intParam(ctx, 'before', -1);
  return before >= 0 ? { newestFirst: true, before } : { newestFirst: true };
}

/** A file name for a downloaded version: the key's segments joined by `_`, then the seq and serial. */
function downloadName(key: string, seq: number, serial: number): string {
  return `${key.replace(/[^A-Za-z0-9._-]+/g, '_')}.v${seq}.serial${serial}.tfstate`;
}

/** A flag: absent or `false` is false, `true` or empty (`?resources`) is true. */
function boolParam(ctx: RequestContext, name: string): boolean {
  const raw = ctx.query.get(name);
  if (raw === null || raw === 'false') return false;
  if (raw === '' || raw === 'true') return true;
  throw new StatelockError('INVALID_QUERY', { name, reason: 'true or false' });
}

function prefixAndAfter(ctx: RequestContext): { prefix?: string; after?: string } {
  const prefix = ctx.query.get('prefix');
  const after = ctx.query.get('after');
  return { ...(prefix ? { prefix } : {}), ...(after ? { after } : {}) };
}

/** A version named by seq (`seqName`) or by serial (`serialName`), or null when neither is given. */
function versionParam(ctx: RequestContext, seqName: string, serialName: string): { seq: number } | { serial: number } | null {
  const seq = intParam(ctx, seqName, -1);
  if (seq >= 0) return { seq };
  const serial = intParam(ctx, serialName, -1);
  return serial >= 0 ? { serial } : null;
}

function limitOf(ctx: RequestContext): number {
  const limit = intParam(ctx, 'limit', 100);
  if (limit < 1 || limit > 1000) throw new StatelockError('INVALID_QUERY', { name: 'limit', reason: 'must be between 1 and 1000' });
  return limit;
}

function intParam(ctx: RequestContext, name: string, fallback: number): number {
  const raw = ctx.query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,15}$/.test(raw)) throw new StatelockError('INVALID_QUERY', { name, reason: 'must be a non-negative integer' });
  return Number(raw);
}
