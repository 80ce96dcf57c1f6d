import { request as httpRequest, Agent } from 'node:http';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json<T = unknown>(): T;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** One HTTP request with full control of method, path bytes, headers and body (fetch forbids some of what tests send). */
export function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string; keepAlive?: boolean } = {},
): Promise<RawResponse> {
  const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
  // Split by hand: WHATWG URL parsing would normalise `.`/`..`/`%2e%2e` segments before they are sent.
  const m = /^http:\/\/([^/:]+|\[[^\]]+\]):(\d+)(\/.*)?$/.exec(url);
  if (!m) throw new Error(`rawRequest needs http://host:port/path, got ${url}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: m[1]!.replace(/^\[|\]$/g, ''),
        port: Number(m[2]),
        path: m[3] ?? '/',
        method: opts.method ?? 'GET',
        headers: { ...(body ? { 'Content-Length': String(body.length) } : {}), ...opts.headers },
        agent: opts.keepAlive === false ? false : agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: buf,
            text: buf.toString('utf8'),
            json: <T>() => JSON.parse(buf.toString('utf8')) as T,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Builds a lock-info body as Terraform marshals it (field order ID, Operation, Info, Who, Version, Created, Path). */
export function lockBody(id: string, operation = 'OperationTypeApply', who = 'alice@build-07', created = '2026-08-21T13:10:23.12345Z'): string {
  return JSON.stringify({ ID: id, Operation: operation, Info: '', Who: who, Version: '1.15.0', Created: created, Path: '' });
}

/** A minimal valid v4 state as Terraform writes it (2-space indent, trailing newline). */
export function stateBody(serial: number, lineage: string, extra: Record<string, unknown> = {}): string {
  return (
    JSON.stringify(
      { version: 4, terraform_version: '1.15.0', serial, lineage, outputs: {}, resources: [], check_results: null, ...extra },
      null,
      2,
    ) + '\n'
  );
}
