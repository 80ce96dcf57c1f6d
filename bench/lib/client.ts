import { connect, type Socket } from 'node:net';

/**
 * The bench's load generator: one client is one keep-alive HTTP/1.1 connection on a raw TCP socket.
 *
 * Why not `node:http`'s client: on this 2-core machine the load generator shares the cores with the
 * server it measures. Node's `http.request` costs ~60 µs of CPU per request (ClientRequest,
 * IncomingMessage, agent bookkeeping, header objects); with 64 clients the bench process saturated its
 * core first and every server looked alike (the bare Node server was 37% busy, dynalite 61%). This client
 * writes each request as one buffer and parses only what it needs of the answer (status, Content-Length
 * or chunked framing), as wrk does, so the servers are what is measured. Every target gets the same bytes.
 *
 * One request at a time per client (no pipelining), as Terraform's Go client does. Only 127.0.0.1.
 */
export interface Response {
  status: number;
  bytes: number;
  body: Buffer;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const NO_BODY = Buffer.alloc(0);

interface Pending {
  method: string;
  path: string;
  resolve(r: Response): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class Client {
  private readonly host: string;
  private readonly port: number;
  private socket: Socket | null = null;
  private pending: Pending | null = null;
  /** Bytes received and not yet consumed (the head being read, or a chunked body's framing). */
  private buf: Buffer = NO_BODY;
  /** The answer being read once its head is parsed. */
  private status = 0;
  private remaining = -1;
  private chunked = false;
  private parts: Buffer[] = [];
  private got = 0;
  private headDone = false;
  /** Bytes left of the chunk being read, in a chunked answer. */
  private chunkLeft = 0;

  constructor(baseUrl: string) {
    const u = new URL(baseUrl);
    if (u.hostname !== '127.0.0.1') throw new Error(`bench traffic goes to 127.0.0.1 only, not ${u.hostname}`);
    this.host = u.host;
    this.port = Number(u.port);
  }

  /** One request; resolves when the whole response body has arrived. */
  send(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Response> {
    if (this.pending) return Promise.reject(new Error('bench client: one request at a time'));
    const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${headers.host ?? headers.Host ?? this.host}\r\n`;
    for (const name in headers) if (name !== 'host' && name !== 'Host') head += `${name}: ${headers[name]}\r\n`;
    if (payload) head += `Content-Length: ${payload.length}\r\n`;
    head += '\r\n';
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`${method} ${path}: no answer in 120 s`)), 120_000);
      this.pending = { method, path, resolve, reject, timer };
      this.resetAnswer();
      const s = this.connected();
      // Small requests leave in one write (one segment); a big body is written after its head, unjoined.
      if (!payload) s.write(head);
      else if (payload.length <= 64 * 1024) s.write(Buffer.concat([Buffer.from(head), payload]));
      else {
        s.write(head);
        s.write(payload);
      }
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private connected(): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const s = connect({ host: '127.0.0.1', port: this.port, noDelay: true });
    s.on('data', (d: Buffer) => this.onData(d));
    s.on('error', (e) => this.fail(e));
    s.on('close', () => {
      if (this.socket === s) this.socket = null;
      this.fail(new Error('connection closed before the answer was complete'));
    });
    this.socket = s;
    return s;
  }

  private resetAnswer(): void {
    this.buf = NO_BODY;
    this.status = 0;
    this.remaining = -1;
    this.chunked = false;
    this.parts = [];
    this.got = 0;
    this.headDone = false;
    this.chunkLeft = 0;
  }

  private fail(e: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    this.socket?.destroy();
    this.socket = null;
    p.reject(new Error(`${p.method} ${p.path}: ${e.message}`));
  }

  private finish(): void {
    const p = this.pending!;
    this.pending = null;
    clearTimeout(p.timer);
    const body = this.parts.length === 0 ? NO_BODY : this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.got);
    p.resolve({ status: this.status, bytes: this.got, body });
  }

  private onData(d: Buffer): void {
    if (!this.pending) return; // nothing asked: a stray byte after an answer (never expected)
    if (!this.headDone) {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      const end = this.buf.indexOf(CRLF2);
      if (end < 0) return;
      if (!this.parseHead(this.buf.toString('latin1', 0, end))) return;
      d = this.buf.subarray(end + 4);
      this.buf = NO_BODY;
      this.headDone = true;
      if (this.remaining === 0) return this.finish();
      if (d.length === 0) return;
    }
    if (this.chunked) return this.onChunked(d);
    const take = d.length > this.remaining ? d.subarray(0, this.remaining) : d;
    this.parts.push(take);
    this.got += take.length;
    this.remaining -= take.length;
    if (this.remaining === 0) this.finish();
  }

  /** Status line and the framing headers; false when the answer is broken (the request then fails). */
  private parseHead(head: string): boolean {
    const status = Number(head.slice(9, 12));
    if (!head.startsWith('HTTP/1.') || !(status >= 100 && status < 600)) {
      this.fail(new Error(`not an HTTP/1.x answer: ${JSON.stringify(head.slice(0, 40))}`));
      return false;
    }
    this.status = status;
    const lower = head.toLowerCase();
    const cl = /\r\ncontent-length:[ \t]*(\d+)/.exec(lower);
    if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) this.chunked = true;
    else if (cl) this.remaining = Number(cl[1]);
    else if (this.pending!.method === 'HEAD' || status === 204 || status === 304) this.remaining = 0;
    else {
      this.fail(new Error('answer with neither Content-Length nor chunked framing (the bench keeps connections alive)'));
      return false;
    }
    if (this.pending!.method === 'HEAD') this.remaining = 0;
    return true;
  }

  /** Chunked framing, read as it streams: `<hex size>\r\n<data>\r\n` … `0\r\n\r\n` (no trailers expected). */
  private onChunked(d: Buffer): void {
    while (d.length) {
      if (this.chunkLeft > 0) {
        const take = d.length > this.chunkLeft ? d.subarray(0, this.chunkLeft) : d;
        this.parts.push(take);
        this.got += take.length;
        this.chunkLeft -= take.length;
        d = d.subarray(take.length);
        continue;
      }
      // Between chunks: the CRLF closing the previous one, then a size line (or the last-chunk and its CRLF).
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      d = NO_BODY;
      let at = 0;
      if (this.buf[0] === 0x0d && this.got > 0) {
        if (this.buf.length < 2) return;
        at = 2;
      }
      const eol = this.buf.indexOf('\r\n', at);
      if (eol < 0) return;
      const size = parseInt(this.buf.toString('latin1', at, eol), 16);
      if (Number.isNaN(size)) return this.fail(new Error('bad chunk size'));
      if (size === 0) {
        if (this.buf.length < eol + 4) return;
        this.buf = NO_BODY;
        return this.finish();
      }
      this.chunkLeft = size;
      d = this.buf.subarray(eol + 2);
      this.buf = NO_BODY;
    }
  }
}
