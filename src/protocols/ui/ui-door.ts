import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Authenticator, Principal } from '../../auth/authenticator.js';
import { formatGrant } from '../../auth/permissions.js';
import { StatelockError } from '../../server/errors.js';
import { send, sendJson } from '../../server/http-io.js';
import type { RequestContext } from '../../server/request-context.js';
import { parseJsonObject } from '../../shared/json-object.js';
import { CSRF_HEADER, SESSION_COOKIE, cookieValue, csrfMatches, sessionClearCookie, sessionSetCookie } from './ui-session.js';

/** The built dashboard: dist/ui (this file is dist/src/protocols/ui/ui-door.js). */
const UI_DIR = fileURLToPath(new URL('../../../ui/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Nothing but the server itself: no CDN, no fonts, no inline script, no framing. */
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
};

/**
 * The dashboard door under `/ui`: the built page and its assets, and sign-in (`/ui/auth/…`). Everything
 * the page shows and does goes through the JSON API, authenticated by the session cookie set here.
 */
export class UiDoor {
  private readonly files = new Map<string, Buffer>();

  constructor(
    private readonly authenticator: Authenticator,
    private readonly secure: boolean,
  ) {}

  async handle(ctx: RequestContext): Promise<void> {
    const path = ctx.tail; // after "/ui"
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    if (path === '') {
      ctx.res.writeHead(301, { Location: '/ui/', 'Content-Length': '0' });
      ctx.res.end();
      return;
    }
    if (path.startsWith('/auth/')) return this.auth(ctx, path.slice(6), method);
    const file = path === '/' || path === '/index.html' ? 'index.html' : /^\/assets\/(?:[A-Za-z0-9_-]+\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(path) ? path.slice(1) : null;
    if (file === null) throw new StatelockError('NOT_FOUND', { path: `/ui${path}` });
    if (method !== 'GET') throw notAllowed(ctx, `/ui${path}`, 'GET, HEAD');
    const body = await this.file(file);
    if (!body) throw new StatelockError('NOT_FOUND', { path: `/ui${path}` });
    send(ctx.res, 200, body, CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', {
      ...PAGE_HEADERS,
      'Cache-Control': file === 'index.html' ? 'no-cache' : 'max-age=300',
    });
  }

  private async auth(ctx: RequestContext, action: string, method: string): Promise<void> {
    const enforced = await this.authenticator.enforced();
    const cookie = cookieValue(ctx.req.headers.cookie, SESSION_COOKIE);
    const session = enforced && cookie ? await this.authenticator.fromSessionCookie(cookie) : null;
    if (action === 'whoami') {
      if (method !== 'GET') throw notAllowed(ctx, '/ui/auth/whoami', 'GET, HEAD');
      if (!enforced) return sendJson(ctx.res, 200, { authRequired: false, signedIn: true, ...who(ctx.principal), csrf: null });
      if (!session) return sendJson(ctx.res, 200, { authRequired: true, signedIn: false, name: null, grants: [], csrf: null });
      return sendJson(ctx.res, 200, { authRequired: true, signedIn: true, ...who(session.principal), csrf: session.csrf });
    }
    if (action === 'login') {
      if (method !== 'POST') throw notAllowed(ctx, '/ui/auth/login', 'POST');
      // JSON only: a cross-site HTML form cannot send it, so nobody can sign a victim's browser in as someone else.
      if (!/^application\/json\b/i.test(ctx.req.headers['content-type'] ?? '')) throw new StatelockError('CSRF_REJECTED', { reason: 'sign-in takes Content-Type: application/json' });
      const { doc } = parseJsonObject(await ctx.body(), (reason) => new StatelockError('UNAUTHENTICATED', { reason: `the sign-in body must be {"token": "slk_…"}: ${reason}` }));
      if (typeof doc.token !== 'string') throw new StatelockError('UNAUTHENTICATED', { reason: 'the sign-in body must be {"token": "slk_…"}' });
      if (!enforced) throw new StatelockError('UNAUTHENTICATED', { reason: 'this server has no token yet, so there is nothing to sign in with: every request on loopback is allowed' });
      const signedIn = await this.authenticator.signIn(doc.token.trim());
      ctx.res.setHeader('Set-Cookie', sessionSetCookie(signedIn.cookie, this.secure));
      return sendJson(ctx.res, 200, { ...who(signedIn.principal), csrf: signedIn.csrf });
    }
    if (action === 'logout') {
      if (method !== 'POST') throw notAllowed(ctx, '/ui/auth/logout', 'POST');
      if (session && !csrfMatches(headerText(ctx.req.headers[CSRF_HEADER]), session.csrf)) throw new StatelockError('CSRF_REJECTED', { reason: `the ${CSRF_HEADER} header is missing or wrong` });
      ctx.res.setHeader('Set-Cookie', sessionClearCookie(this.secure));
      return sendJson(ctx.res, 200, { signedOut: true });
    }
    throw new StatelockError('NOT_FOUND', { path: `/ui/auth/${action}` });
  }

  /** A built file, read once; null when the dashboard was not built (running from source without `npm run build`). */
  private async file(name: string): Promise<Buffer | null> {
    const cached = this.files.get(name);
    if (cached) return cached;
    try {
      const body = await readFile(join(UI_DIR, name));
      this.files.set(name, body);
      return body;
    } catch {
      return null;
    }
  }
}

function who(p: Principal): { name: string; grants: string[] } {
  return { name: p.name, grants: p.grants.map(formatGrant) };
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function notAllowed(ctx: RequestContext, path: string, allowed: string): StatelockError {
  ctx.res.setHeader('Allow', allowed);
  return new StatelockError('METHOD_NOT_ALLOWED', { method: ctx.method, path, allowed });
}
