import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { StateTemplate } from '../../bench/lib/state-gen.js';

/**
 * Backpressure on a state download, through the real server process and a real socket: a client that stops
 * reading does not make the server hold the rest of the state. sendStream asks for the next batch only once
 * the socket took the previous one, and the reader decodes at most two batches ahead into buffers it reuses
 * (body-reader.ts): the server's memory stays where it was while the client sleeps, another client is
 * served meanwhile, and when the slow client reads on it gets every byte.
 */

const MiB = 1024 * 1024;
let server: RunningServer;
const body = StateTemplate.ofSize(64 * MiB).body(1);
const sha = createHash('sha256').update(body).digest('hex');

before(async () => {
  server = await startServer();
  const res = await rawRequest(`${server.url}/state/slow/reader`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
  assert.equal(res.status, 200, res.text);
});
after(async () => void (await server.stop()));

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** Sends a GET on a raw socket and reads the first `bytes` bytes of the answer, then stops reading. */
function startSlowGet(bytes: number): Promise<{ socket: Socket; got: Buffer[] }> {
  const { port } = new URL(server.url);
  const socket = connect({ host: '127.0.0.1', port: Number(port) });
  // A small receive window, so the kernel holds little of the answer for us either.
  socket.setNoDelay(true);
  const got: Buffer[] = [];
  let n = 0;
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    const onData = (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= bytes) {
        socket.pause();
        socket.off('data', onData);
        resolve({ socket, got });
      }
    };
    socket.on('data', onData);
    socket.write(`GET /state/slow/reader HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  });
}

test('a client that stops reading a 64 MiB state: the server holds a few MiB for it, serves others meanwhile, and the client gets every byte when it reads on', async () => {
  const pid = server.proc.pid!;
  const slow = await startSlowGet(256 * 1024);
  const rssPaused = rssOf(pid);
  // The client sleeps; an unbounded server would now pull the whole state through (64 MiB and more).
  await new Promise((r) => setTimeout(r, 1500));
  const grown = rssOf(pid) - rssPaused;
  assert.ok(grown < 24 * MiB, `the server grew by ${(grown / MiB).toFixed(1)} MiB while its client did not read`);

  const other = await rawRequest(`${server.url}/state/slow/reader`);
  assert.equal(other.status, 200);
  assert.equal(createHash('sha256').update(other.body).digest('hex'), sha, 'another client is served the whole state meanwhile');

  // The slow client reads on: every byte, exactly once.
  const rest = await new Promise<Buffer>((resolve, reject) => {
    slow.socket.on('data', (d: Buffer) => slow.got.push(d));
    slow.socket.on('end', () => resolve(Buffer.concat(slow.got)));
    slow.socket.on('error', reject);
    slow.socket.resume();
  });
  const headEnd = rest.indexOf('\r\n\r\n');
  const head = rest.subarray(0, headEnd).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 200/);
  assert.match(head, new RegExp(`content-length: ${body.length}`, 'i'));
  const got = rest.subarray(headEnd + 4);
  assert.equal(got.length, body.length);
  assert.equal(createHash('sha256').update(got).digest('hex'), sha);
});
