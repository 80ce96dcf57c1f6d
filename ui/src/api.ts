/**
 * The one way the page talks to the server: same-origin fetches with the session cookie, the CSRF header
 * on everything that changes something, and the API's `{error:{code,message}}` turned into an ApiError.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  /** Query parameters; undefined, null and '' values are left out. */
  query?: Record<string, string | number | boolean | null | undefined>;
  /** Sent as JSON. */
  json?: unknown;
  signal?: AbortSignal;
  /** A 401 normally sends the page to sign-in; the sign-in form itself shows it instead. */
  signInOn401?: boolean;
}

let csrfToken: string | null = null;
let onUnauthenticated: (() => void) | null = null;

/** The session's CSRF token (from whoami or login), sent as X-Statelock-CSRF on every non-GET. */
export function setCsrf(token: string | null): void {
  csrfToken = token;
}

/** What to do when any call answers 401 (the session expired or the token was revoked). */
export function whenUnauthenticated(handler: () => void): void {
  onUnauthenticated = handler;
}

/** `/api/v1/<collection>/<key>` with each key segment percent-encoded (a key's `/` stays a path separator). */
export function keyPath(collection: string, key: string): string {
  return `/api/v1/${collection}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

export function withQuery(path: string, query: RequestOptions['query'] = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET' && csrfToken) headers['X-Statelock-CSRF'] = csrfToken;
  let body: string | undefined;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  let res: Response;
  try {
    res = await fetch(withQuery(path, opts.query), { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(0, 'NETWORK', `The server could not be reached (${err instanceof Error ? err.message : String(err)}).`);
  }
  const text = await res.text();
  let doc: unknown = null;
  if (text) {
    try {
      doc = JSON.parse(text);
    } catch {
      doc = null;
    }
  }
  if (!res.ok) {
    const error = (doc as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const code = typeof error?.code === 'string' ? error.code : `HTTP_${res.status}`;
    const message = typeof error?.message === 'string' ? error.message : `The server answered ${res.status} ${res.statusText}.`;
    const failure = new ApiError(res.status, code, message);
    if (res.status === 401 && opts.signInOn401 !== false && onUnauthenticated) onUnauthenticated();
    throw failure;
  }
  return doc as T;
}

/** Was this rejection an abort (the user navigated away)? */
export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}
