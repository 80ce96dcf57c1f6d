/**
 * The baseline: a minimal Node `http` server, run as its own process (as statelock is) so it gets its
 * own core. It is the ceiling of Node's HTTP stack on this machine for the same traffic.
 *
 *   /state/<key>  reads the whole body and answers 200 with a small JSON; a GET answers a pre-built
 *                 buffer of `argv[2]` bytes (0 by default; built on the first GET) — the transfer baseline.
 *   /mutex/<key>  the same, plus an in-memory lock per key (LOCK → 200 or 423 with the holder's body,
 *                 UNLOCK releases, `?wait=` queues FIFO): the contention baseline, no durability.
 *
 * Prints `baseline listening on http://127.0.0.1:<port>` once ready.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const getBytes = Number(process.argv[2] ?? 0);
// Built on the first GET (the transfer benchmark's warm-up read), so it does not count in the write peak.
let prebuilt: Buffer | null = null;
const OK = Buffer.from('{"ok":true}');

interface Waiter {
  id: string;
  raw: Buffer;
  res: ServerResponse;
  timer: NodeJS.Timeout;
}
const holders = new Map<string, { id: string; raw: Buffer }>();
const queues = new Map<string, Waiter[]>();

function answer(res: ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
}

function mutex(method: string, key: string, wait: boolean, raw: Buffer, res: ServerResponse): void {
  const id = raw.length ? String((JSON.parse(raw.toString('utf8')) as { ID?: unknown }).ID) : '';
  const held = holders.get(key);
  if (method === 'LOCK') {
    if (!held || held.id === id) {
      holders.set(key, { id, raw });
      return answer(res, 200, raw);
    }
    if (!wait) return answer(res, 423, held.raw);
    const queue = queues.get(key) ?? [];
    const waiter: Waiter = {
      id,
      raw,
      res,
      timer: setTimeout(() => {
        queue.splice(queue.indexOf(waiter), 1);
        answer(res, 423, holders.get(key)?.raw ?? OK);
      }, 30_000),
    };
    queue.push(waiter);
    queues.set(key, queue);
    return;
  }
  if (method === 'UNLOCK') {
    if (held && held.id !== id) return answer(res, 409, held.raw);
    holders.delete(key);
    answer(res, 200, OK);
    const next = queues.get(key)?.shift();
    if (next) {
      clearTimeout(next.timer);
      holders.set(key, { id: next.id, raw: next.raw });
      answer(next.res, 200, next.raw);
    }
    return;
  }
  answer(res, 405, OK);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const url = req.url ?? '/';
    if (url.startsWith('/mutex/')) {
      const q = url.indexOf('?');
      const key = url.slice(7, q < 0 ? undefined : q);
      return mutex(req.method ?? '', key, q >= 0 && url.includes('wait='), body, res);
    }
    if (req.method === 'GET') return answer(res, 200, (prebuilt ??= Buffer.alloc(getBytes, '{"resources":[{"mode":"managed","type":"aws_instance"}]}\n')));
    answer(res, 200, OK);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`baseline listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
