import type { LockService } from '../../lock/lock-service.js';
import { StatelockError } from '../../server/errors.js';
import { send, sendJson } from '../../server/http-io.js';
import type { RequestContext } from '../../server/request-context.js';
import { parseKeyFromPath } from '../../state/state-key.js';
import type { StateService } from '../../state/state-service.js';
import type { AuditService } from '../../audit/audit-service.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { auditJson, lockJson, stateSummaryJson, versionJson } from './representations.js';
import type { AuditAction } from '../../audit/audit-entry.js';

const AUDIT_ACTIONS: readonly AuditAction[] = ['lock.acquire', 'lock.release', 'lock.force-unlock', 'state.write', 'state.write.forced', 'state.write.refused', 'state.delete'];

/**
 * The JSON API under `/api/v1` (described by `/api/v1/openapi.json`): what the CLI, the dashboard and
 * scripts use. Collections take `prefix`, `after` (cursor) and `limit`; pages are `{items, next}`.
 */
export class ApiDoor {
  constructor(
    private readonly state: StateService,
    private readonly locks: LockService,
    private readonly audit: AuditService,
  ) {}

  async handle(ctx: RequestContext): Promise<void> {
    const [collection = '', ...rest] = ctx.tail.split('/');
    const keyTail = rest.join('/');
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    const route = `${method} ${collection}${keyTail ? '/*' : ''}`;
    switch (route) {
      case 'GET openapi.json':
        return sendJson(ctx.res, 200, OPENAPI_DOCUMENT);
      case 'GET states':
        return this.listStates(ctx);
      case 'GET states/*':
        return this.getState(ctx, parseKeyFromPath(keyTail));
      case 'GET versions/*':
        return this.listVersions(ctx, parseKeyFromPath(keyTail));
      case 'GET content/*':
        return this.getContent(ctx, parseKeyFromPath(keyTail));
      case 'GET locks':
        return this.listLocks(ctx);
      case 'GET locks/*':
        return this.getLock(ctx, parseKeyFromPath(keyTail));
      case 'GET audit':
        return this.listAudit(ctx);
    }
    const known = ['openapi.json', 'states', 'versions', 'content', 'locks', 'audit'];
    if (known.includes(collection)) {
      ctx.res.setHeader('Allow', 'GET, HEAD');
      throw new StatelockError('METHOD_NOT_ALLOWED', { method: ctx.method, path: `/api/v1/${ctx.tail}`, allowed: 'GET, HEAD' });
    }
    throw new StatelockError('NOT_FOUND', { path: `/api/v1/${ctx.tail}` });
  }

  private async listStates(ctx: RequestContext) {
    const page = await this.state.list({ ...prefixAndAfter(ctx), limit: limitOf(ctx) });
    sendJson(ctx.res, 200, { items: page.items.map(stateSummaryJson), next: page.next });
  }

  private async getState(ctx: RequestContext, key: string) {
    const current = await this.state.read(key);
    if (!current) throw new StatelockError('STATE_NOT_FOUND', { key });
    const lock = await this.locks.get(key);
    sendJson(ctx.res, 200, { key, current: versionJson(current.meta), versions: current.meta.seq, lock: lock ? lockJson(lock) : null });
  }

  private async listVersions(ctx: RequestContext, key: string) {
    const after = intParam(ctx, 'after', 0);
    const page = await this.state.listVersions(key, { after, limit: limitOf(ctx) });
    if (page.items.length === 0 && after === 0) throw new StatelockError('STATE_NOT_FOUND', { key });
    sendJson(ctx.res, 200, { items: page.items.map(versionJson), next: page.next });
  }

  private async getContent(ctx: RequestContext, key: string) {
    const seq = intParam(ctx, 'seq', -1);
    const serial = intParam(ctx, 'serial', -1);
    const found =
      seq >= 0 ? await this.state.readVersion(key, { seq }) : serial >= 0 ? await this.state.readVersion(key, { serial }) : await this.state.read(key);
    if (!found) {
      if (seq < 0 && serial < 0) throw new StatelockError('STATE_NOT_FOUND', { key });
      throw new StatelockError('VERSION_NOT_FOUND', { key, which: seq >= 0 ? `seq ${seq}` : `with serial ${serial}` });
    }
    send(ctx.res, 200, found.body, 'application/json', {
      'Content-MD5': found.meta.md5,
      'X-Statelock-Seq': String(found.meta.seq),
      'X-Statelock-Serial': String(found.meta.serial),
    });
  }

  private async listLocks(ctx: RequestContext) {
    const page = await this.locks.list({ ...prefixAndAfter(ctx), limit: limitOf(ctx) });
    const now = Date.now();
    sendJson(ctx.res, 200, { items: page.items.map((l) => lockJson(l, now)), next: page.next });
  }

  private async getLock(ctx: RequestContext, key: string) {
    const lock = await this.locks.get(key);
    if (!lock) throw new StatelockError('LOCK_NOT_FOUND', { key });
    sendJson(ctx.res, 200, lockJson(lock));
  }

  private async listAudit(ctx: RequestContext) {
    const key = ctx.query.get('key') ?? undefined;
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
      after: intParam(ctx, 'after', 0),
      limit: limitOf(ctx),
    });
    sendJson(ctx.res, 200, { items: page.items.map(auditJson), next: page.next });
  }
}

function prefixAndAfter(ctx: RequestContext): { prefix?: string; after?: string } {
  const prefix = ctx.query.get('prefix');
  const after = ctx.query.get('after');
  return { ...(prefix ? { prefix } : {}), ...(after ? { after } : {}) };
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
