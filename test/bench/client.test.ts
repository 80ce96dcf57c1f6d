import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client } from '../../bench/lib/client.js';

/**
 * The bench's raw-socket load generator (bench/lib/client.ts) against a real node:http server on
 * loopback: it must return exactly the bytes sent whatever the framing (Content-Length, chunked split
 * across packets, no body) and fail, not hang, when the answer is cut off.
 */
describe('bench client: HTTP/1.1 framing on a raw keep-alive socket', () => {
  let server: Server;
  let url = '';
  const sockets = new Set<Socket>();
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;

  before(async () => {
    server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(parts);
        if (req.url === '/echo') {
          res.writeHead(200, { 'Content-Length': String(body.length), 'X-Method': req.method ?? '' });
          return res.end(body);
        }
        if (req.url === '/chunked') {
          // Several chunks, written apart so they arrive in separate packets, one of them large.
          res.writeHead(201, { 'Content-Type': 'text/plain' });
          for (const piece of ['ab', 'c', 'defghij']) {
            res.write(piece);
            await new Promise((r) => setTimeout(r, 5));
          }
          res.write(big);
          return res.end('!');
        }
        if (req.url === '/none') {
          res.writeHead(204);
          return res.end();
        }
        if (req.url === '/cut') {
          res.writeHead(200, { 'Content-Length': '100' });
          res.write('only ten b');
          return setTimeout(() => req.socket.destroy(), 10);
        }
        res.writeHead(200, { 'Content-Length': '2' });
        res.end('ok');
      });
    });
    server.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  });

  test('bodies both ways, on one connection, any method', async () => {
    const c = new Client(url);
    try {
      const small = await c.send('LOCK', '/echo', '{"ID":"x"}');
      assert.equal(small.status, 200);
      assert.equal(small.body.toString(), '{"ID":"x"}');
      const large = await c.send('POST', '/echo', big);
      assert.equal(large.bytes, big.length);
      assert.ok(large.body.equals(big));
      const empty = await c.send('GET', '/echo');
      assert.equal(empty.status, 200);
      assert.equal(empty.bytes, 0);
      assert.equal(sockets.size, 1, 'keep-alive: one connection for all requests');
    } finally {
      c.close();
    }
  });

  test('a chunked answer arriving in pieces, then a body-less 204, on the same connection', async () => {
    const c = new Client(url);
    try {
      const r = await c.send('GET', '/chunked');
      assert.equal(r.status, 201);
      assert.ok(r.body.equals(Buffer.concat([Buffer.from('abcdefghij'), big, Buffer.from('!')])));
      const none = await c.send('DELETE', '/none');
      assert.equal(none.status, 204);
      assert.equal(none.bytes, 0);
      const next = await c.send('GET', '/other');
      assert.equal(next.body.toString(), 'ok');
    } finally {
      c.close();
    }
  });

  test('an answer cut off before its Content-Length fails the request, and the next one reconnects', async () => {
    const c = new Client(url);
    try {
      await assert.rejects(c.send('GET', '/cut'), /closed before the answer was complete/);
      const again = await c.send('GET', '/other');
      assert.equal(again.body.toString(), 'ok');
    } finally {
      c.close();
    }
  });
});
