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

/**
 * Reads the whole request body as it arrived, refusing more than `limit` bytes (413); checks nothing else.
 * Listens for the stream's events rather than iterating it: an async iterator per request showed in the
 * lock-cycle profiles. A body over the limit is refused as it streams in (answered 413, and the connection
 * closed after the answer); a client that hangs up mid-body is REQUEST_ABORTED.
 */
export function readRawBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new StatelockError('PAYLOAD_TOO_LARGE', { limit }));
  // With a Content-Length (Terraform always sends one) the body goes straight into one buffer of that size.
  const exact = Number.isFinite(declared) && declared >= 0 ? Buffer.allocUnsafe(declared) : null;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: StatelockError | null) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) return reject(err);
      resolve(exact && size === exact.length ? exact : Buffer.concat(exact ? [exact.subarray(0, Math.min(size, exact.length)), ...chunks] : chunks, size));
    };
    const onData = (c: Buffer) => {
      if (size + c.length > limit) {
        // The rest is read and dropped; the 413 closes the connection (answerError), so no more comes.
        settle(new StatelockError('PAYLOAD_TOO_LARGE', { limit }));
        return;
      }
      if (exact && size + c.length <= exact.length) c.copy(exact, size);
      else chunks.push(c);
      size += c.length;
    };
    const onEnd = () => settle(null);
    // The client hung up mid-body, or its chunked framing was malformed: its fault, and nothing was read.
    const onError = (err: NodeJS.ErrnoException) => settle(new StatelockError('REQUEST_ABORTED', { reason: err.code ?? err.message }));
    const onClose = () => settle(new StatelockError('REQUEST_ABORTED', { reason: 'ERR_STREAM_PREMATURE_CLOSE' }));
    if (req.readableEnded) return settle(null);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * The request body as it arrives, for bodies that are streamed into the store (states): refuses more than
 * `limit` bytes (413) — at once when Content-Length says so, otherwise as soon as the limit is passed — and
 * turns a client that hangs up mid-body into REQUEST_ABORTED. Checks nothing else: Content-MD5 is checked by
 * whoever digests the bytes (the ingest does, in the same pass).
 */
export async function* bodyStream(req: IncomingMessage, limit: number): AsyncGenerator<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new StatelockError('PAYLOAD_TOO_LARGE', { limit });
  let size = 0;
  // Not destroyed when the reader stops early: that would destroy the socket before the answer is written.
  const pieces = req.iterator({ destroyOnReturn: false });
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = (await pieces.next()) as IteratorResult<Buffer>;
      } catch (err) {
        throw new StatelockError('REQUEST_ABORTED', { reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
      }
      if (next.done) return;
      size += next.value.length;
      if (size > limit) throw new StatelockError('PAYLOAD_TOO_LARGE', { limit });
      yield next.value;
    }
  } finally {
    // Refused before the body ended (a bad chunk signature, an invalid state …): the rest is read and dropped,
    // as Node does with a body nobody reads. Left paused, it would hold the connection: the client's next
    // request on it would never be answered.
    if (!req.complete) {
      await pieces.return?.();
      req.resume();
    }
  }
}

/** The Content-MD5 a request declares (trimmed), or undefined when it sends none. */
export function declaredMd5(req: IncomingMessage): string | undefined {
  const given = req.headers['content-md5'];
  return typeof given === 'string' && given !== '' ? given.trim() : undefined;
}

/**
 * Answers with a body that streams from `body` (a stored state, chunk by chunk). The next piece is asked for
 * only once the socket has taken the previous one (handed it to the kernel): the body's buffers may be
 * reused for the piece after next (BodyReader's rule), and the bytes in flight stay bounded by what the
 * body prepares ahead, however slow the client. The first piece is read before the status line, so a body
 * that cannot be read at all still gets a clean error answer; a failure after that destroys the socket (the
 * client sees a short body against the Content-Length, never a wrong whole one). HEAD gets the headers only.
 */
export async function sendStream(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  size: number,
  body: AsyncIterable<Buffer | Buffer[]>,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<void> {
  const pieces = body[Symbol.asyncIterator]();
  const head = req.method === 'HEAD';
  let next = head ? ({ done: true, value: undefined } as IteratorResult<Buffer | Buffer[]>) : await pieces.next();
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(size), ...headers });
  try {
    while (!next.done) {
      if (res.destroyed) return;
      // An array (a batch of chunks) goes out as one write: corked, then flushed together.
      const batch = Array.isArray(next.value) ? next.value : [next.value];
      await written(res, batch);
      next = await pieces.next();
    }
    res.end();
  } finally {
    await pieces.return?.(undefined);
  }
}

/**
 * Writes `batch` and resolves once the socket has taken all of it (the last write's callback), or the
 * response is gone. Both listeners are removed either way (no AbortController: one per write showed in
 * profiles).
 */
function written(res: ServerResponse, batch: Buffer[]): Promise<void> {
  batch = batch.filter((b) => b.length > 0); // an empty write may never call back
  if (batch.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('close', done);
      resolve();
    };
    res.on('close', done);
    if (batch.length > 1) res.cork();
    for (let i = 0; i < batch.length; i++) {
      if (i < batch.length - 1) res.write(batch[i]!);
      else res.write(batch[i]!, done);
    }
    if (batch.length > 1) res.uncork();
  });
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  sendText(res, status, JSON.stringify(value), 'application/json');
}

/**
 * Answers with a text body (sent as UTF-8). A string goes out in the same write as the status line and
 * headers; a Buffer body is written beside them (a writev), which costs more on the small answers of the
 * lock path.
 */
export function sendText(res: ServerResponse, status: number, body: string, contentType: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(body, 'utf8')), ...headers });
  res.end(body, 'utf8');
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
