import { Agent, request } from 'node:http';

/**
 * A benchmark client: its own keep-alive agent with exactly one socket, so N clients are N connections.
 * Only 127.0.0.1 is allowed.
 */
export class Client {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  private readonly host: string;
  private readonly port: number;

  constructor(baseUrl: string) {
    const u = new URL(baseUrl);
    if (u.hostname !== '127.0.0.1') throw new Error(`bench traffic goes to 127.0.0.1 only, not ${u.hostname}`);
    this.host = u.hostname;
    this.port = Number(u.port);
  }

  /** One request; resolves when the whole response body has arrived. */
  send(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; bytes: number; body: Buffer }> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: { ...(payload ? { 'Content-Length': String(payload.length) } : {}), ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes) }));
          res.on('error', reject);
        },
      );
      req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${path}: no answer in 120 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
