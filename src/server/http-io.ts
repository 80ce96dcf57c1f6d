import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StatelockError } from './errors.js';

/**
 * Reads the whole request body, refusing more than `limit` bytes (413) and checking `Content-MD5`
 * when the client sent one (Terraform always does): a truncated or altered body is a 400, never stored.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const body = await readRawBody(req, limit);
  const given = req.headers['content-md5'];
  if (typeof given === 'string' && given !== '') {
    const actual = createHash('md5').update(body).digest('base64');
    if (given.trim() !== actual) throw new StatelockError('CONTENT_MD5_MISMATCH', { given, actual });
  }
  return body;
}

/** Reads the whole request body as it arrived, refusing more than `limit` bytes (413); checks nothing else. */
export async function readRawBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new StatelockError('PAYLOAD_TOO_LARGE', { limit });
  // With a Content-Length (Terraform always sends one) the body goes straight into one buffer of that size.
  const exact = Number.isFinite(declared) && declared >= 0 ? Buffer.allocUnsafe(declared) : null;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      const c = chunk as Buffer;
      if (size + c.length > limit) throw new StatelockError('PAYLOAD_TOO_LARGE', { limit });
      if (exact && size + c.length <= exact.length) c.copy(exact, size);
      else chunks.push(c);
      size += c.length;
    }
  } catch (err) {
    if (err instanceof StatelockError) throw err;
    // The client hung up mid-body, or its chunked framing was malformed: its fault, and nothing was read.
    throw new StatelockError('REQUEST_ABORTED', { reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
  }
  return exact && size === exact.length ? exact : Buffer.concat(exact ? [exact.subarray(0, Math.min(size, exact.length)), ...chunks] : chunks, size);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, Buffer.from(JSON.stringify(value)), 'application/json');
}

export function send(res: ServerResponse, status: number, body: Buffer, contentType: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(body.length), ...headers });
  res.end(body);
}

/** The JSON error body every door but the lock-conflict answers uses. */
export function errorBody(err: StatelockError): { error: { code: string; message: string; holder?: unknown } } {
  const holder = err.holderBody !== undefined ? safeParse(err.holderBody) : undefined;
  return { error: { code: err.code, message: err.message, ...(holder !== undefined ? { holder } : {}) } };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
