import type { ServerResponse } from 'node:http';
import { readUnlockBody, type LockService } from '../../lock/lock-service.js';
import { StatelockError } from '../../server/errors.js';
import { declaredMd5, errorBody, sendJson, sendStream, sendText } from '../../server/http-io.js';
import type { RequestContext } from '../../server/request-context.js';
import { parseKeyFromPath } from '../../state/state-key.js';
import type { StateService } from '../../state/state-service.js';
import { parseDuration } from '../../shared/duration.js';

/**
 * Terraform's and OpenTofu's `backend "http"`: `/state/<key>` answers GET, POST/PUT (write, `?ID=`),
 * DELETE, LOCK and UNLOCK; `/lock/<key>` answers the GitLab convention (POST locks, DELETE unlocks).
 * Decode, call the service, encode — no rules here.
 */
export class HttpBackendDoor {
  constructor(
    private readonly state: StateService,
    private readonly locks: LockService,
  ) {}

  async handleState(ctx: RequestContext): Promise<void> {
    const key = parseKeyFromPath(ctx.tail);
    switch (ctx.method) {
      case 'GET':
      case 'HEAD': {
        ctx.authorize('read', key);
        const current = await this.state.read(key);
        if (!current) throw new StatelockError('STATE_NOT_FOUND', { key });
        await sendStream(ctx.req, ctx.res, 200, current.meta.size, current.body.batches(), 'application/json', { 'Content-MD5': current.meta.md5, ETag: `"${current.meta.sha256}"` });
        return;
      }
      case 'POST':
      case 'PUT': {
        ctx.authorize('write', key);
        const lockId = ctx.query.get('ID') || null;
        // Streamed into the store; Content-MD5 (Terraform always sends it) is checked before the version is committed.
        const expectedMd5 = declaredMd5(ctx.req);
        const { outcome, version, overwritten } = await this.state.write(key, ctx.bodyStream(), lockId, ctx.client, expectedMd5 !== undefined ? { expectedMd5 } : {});
        sendJson(ctx.res, 200, { outcome, serial: version.serial, lineage: version.lineage, version: version.seq, forced: version.forced, overwritten });
        return;
      }
      case 'DELETE':
        ctx.authorize('delete', key);
        await this.state.delete(key, ctx.client);
        sendJson(ctx.res, 200, { deleted: key });
        return;
      case 'LOCK':
        return this.lock(ctx, key);
      case 'UNLOCK':
        return this.unlock(ctx, key);
      default:
        throw methodNotAllowed(ctx, 'GET, HEAD, POST, PUT, DELETE, LOCK, UNLOCK');
    }
  }

  async handleLock(ctx: RequestContext): Promise<void> {
    const key = parseKeyFromPath(ctx.tail);
    if (ctx.method === 'POST' || ctx.method === 'LOCK') return this.lock(ctx, key);
    if (ctx.method === 'DELETE' || ctx.method === 'UNLOCK') return this.unlock(ctx, key);
    throw methodNotAllowed(ctx, 'POST, DELETE, LOCK, UNLOCK');
  }

  /**
   * `?session=<id>` binds the lock to a `statelock run` session; `?wait=60s` waits in line server-side
   * (Terraform keeps the query parameters of lock_address, so both can live in the backend block).
   */
  private async lock(ctx: RequestContext, key: string): Promise<void> {
    ctx.authorize('lock', key);
    const body = await ctx.body();
    const waitMs = waitParam(ctx.query.get('wait'));
    // Only a LOCK that may wait in line needs to know when its client hangs up.
    let signal: AbortSignal | undefined;
    if (waitMs > 0) {
      const abort = new AbortController();
      ctx.res.once('close', () => abort.abort());
      signal = abort.signal;
    }
    const { lock } = await this.locks.lock(key, body, ctx.client, { sessionId: ctx.query.get('session') || null, waitMs, ...(signal ? { signal } : {}) });
    sendText(ctx.res, 200, lock.raw, 'application/json');
  }

  /** A holder's release needs `lock`; Terraform's empty-body and OpenTofu's zero-valued force-unlock need `force-unlock`. */
  private async unlock(ctx: RequestContext, key: string): Promise<void> {
    const parsed = readUnlockBody(await ctx.body());
    // A malformed body needs `lock` to be told so (then INVALID_LOCK_INFO).
    ctx.authorize('invalid' in parsed || !parsed.request.force ? 'lock' : 'force-unlock', key);
    const { outcome } = await this.locks.unlockFromBody(key, parsed, ctx.client);
    sendJson(ctx.res, 200, { outcome });
  }

  /**
   * Lock conflicts answer with the holder's lock info verbatim — what Terraform ≥ 1.15 and OpenTofu
   * decode to show the holder and to keep `-lock-timeout` polling. Other refusals get a JSON error.
   */
  static sendError(res: ServerResponse, err: StatelockError): void {
    if (err.holderBody !== undefined) sendText(res, err.status, err.holderBody, 'application/json');
    else sendJson(res, err.status, errorBody(err));
  }
}

/** The longest a LOCK may wait in line. */
const MAX_WAIT_MS = 3_600_000;

function waitParam(raw: string | null): number {
  if (raw === null || raw === '') return 0;
  const seconds = /^\d+$/.test(raw) ? Number(raw) : parseDuration(raw);
  if (seconds === null) throw new StatelockError('INVALID_QUERY', { name: 'wait', reason: 'a duration such as 30s, 5m or 1h' });
  return Math.min(seconds * 1000, MAX_WAIT_MS);
}

function methodNotAllowed(ctx: RequestContext, allowed: string): StatelockError {
  ctx.res.setHeader('Allow', allowed);
  return new StatelockError('METHOD_NOT_ALLOWED', { method: ctx.method, path: ctx.req.url?.split('?')[0] ?? '', allowed });
}
