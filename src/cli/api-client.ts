/**
 * The CLI's view of a statelock server: its JSON API (and, for `state push`, the http backend door
 * Terraform uses). Non-2xx answers become {@link ApiError} carrying the server's error code.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The lock holder's lock info, on lock conflicts. */
    readonly holder?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Percent-encodes each segment of a state key for a URL path. */
export function keyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export interface ApiClientOptions {
  server: string;
  token?: string | undefined;
}

export class ApiClient {
  readonly server: string;
  /** The token sent as Bearer (and handed to Terraform by `statelock run`). */
  readonly token: string | undefined;

  constructor(opts: ApiClientOptions) {
    this.server = opts.server.replace(/\/+$/, '');
    this.token = opts.token;
  }

  /** GET a JSON document from `/api/v1/<path>`. */
  async getJson<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    return (await this.call('GET', `/api/v1/${path}`, { query })).json() as Promise<T>;
  }

  /** Any method on `/api/v1/<path>`, answering JSON. */
  async sendJson<T>(method: string, path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    return (await this.call(method, `/api/v1/${path}`, { query })).json() as Promise<T>;
  }

  /** Every item of a paginated collection (`{items, next}`), following `next`. */
  async all<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T[]> {
    const items: T[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.getJson<{ items: T[]; next: string | null }>(path, { ...query, limit: 1000, ...(after ? { after } : {}) });
      items.push(...page.items);
      if (!page.next) return items;
      after = page.next;
    }
  }

  /**
   * One request with full control (any method, e.g. LOCK). Rejects with ApiError on a non-2xx answer;
   * a network failure becomes an Error naming the server.
   */
  async call(
    method: string,
    path: string,
    opts: { query?: Record<string, string | number | undefined>; body?: Buffer | string | ReadableStream<Uint8Array>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}), ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers },
        ...bodyInit(opts.body),
      } as RequestInit);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`cannot reach the statelock server at ${this.server}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (res.ok) return res;
    throw await toApiError(res);
  }
}

/** A streamed body needs `duplex: 'half'` (the caller sets Content-Length); buffers are sent whole. */
function bodyInit(body: Buffer | string | ReadableStream<Uint8Array> | undefined): { body?: BodyInit; duplex?: 'half' } {
  if (body === undefined) return {};
  if (typeof body === 'string') return { body };
  if (Buffer.isBuffer(body)) return { body: new Uint8Array(body) };
  return { body, duplex: 'half' };
}

async function toApiError(res: Response): Promise<ApiError> {
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return new ApiError(res.status, `HTTP_${res.status}`, text || `HTTP ${res.status}`);
  }
  const error = (body as { error?: { code?: string; message?: string; holder?: Record<string, unknown> } }).error;
  if (error?.code) return new ApiError(res.status, error.code, error.message ?? error.code, error.holder);
  // The http backend door answers lock conflicts with the holder's lock info itself.
  if (typeof (body as { ID?: unknown }).ID === 'string') {
    return new ApiError(res.status, res.status === 423 ? 'STATE_LOCKED' : 'LOCK_ID_MISMATCH', `the state is locked by ID "${(body as { ID: string }).ID}"`, body as Record<string, unknown>);
  }
  return new ApiError(res.status, `HTTP_${res.status}`, text);
}
