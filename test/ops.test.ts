import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { ChildProcess } from 'node:child_process';
import { startServer, type RunningServer } from './support/server-process.js';
import { rawRequest, lockBody, stateBody, type RawResponse } from './support/http.js';

/**
 * Operations: health and readiness, Prometheus metrics, JSON logs, and the SIGTERM drain — all against
 * a real server process.
 */

/** Resolves once `read()` satisfies `ok`, re-checking on every chunk the stream emits; rejects if the stream ends first. */
function waitForOutput(proc: ChildProcess, stream: 'stdout' | 'stderr', ok: () => boolean, what: string, read: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = proc[stream]!;
    const check = () => {
      if (!ok()) return false;
      s.off('data', onData);
      s.off('close', onClose);
      clearTimeout(timer);
      resolve();
      return true;
    };
    // Listeners registered after RunningServer's own accumulate, so `read()` already has the chunk.
    const onData = () => void setImmediate(check);
    const onClose = () => {
      if (check()) return;
      clearTimeout(timer);
      reject(new Error(`${stream} closed before ${what}; it was:\n${read()}`));
    };
    // A failsafe only: the condition is awaited by events, this just turns a hang into a clear failure.
    const timer = setTimeout(() => {
      s.off('data', onData);
      s.off('close', onClose);
      reject(new Error(`timed out waiting for ${what}; ${stream} was:\n${read()}`));
    }, 15_000);
    s.on('data', onData);
    s.on('close', onClose);
    check();
  });
}

/** Resolves when the process has exited and its stdio streams are closed (so all output was read). */
function closed(proc: ChildProcess): Promise<void> {
  if (proc.stdout!.closed && proc.stderr!.closed && (proc.exitCode !== null || proc.signalCode !== null)) return Promise.resolve();
  return new Promise((resolve) => proc.once('close', () => resolve()));
}

interface LogLine {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
}

function parseLogLines(stderr: string): LogLine[] {
  const lines = stderr.split('\n').filter((l) => l !== '');
  return lines.map((line) => {
    let parsed: unknown;
    assert.doesNotThrow(() => (parsed = JSON.parse(line)), `stderr line is not JSON: ${line}`);
    const obj = parsed as LogLine;
    assert.equal(typeof obj, 'object');
    assert.ok(typeof obj.time === 'string' && new Date(obj.time).toISOString() === obj.time, `time in ${line}`);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(obj.level), `level in ${line}`);
    assert.ok(typeof obj.msg === 'string' && obj.msg.length > 0, `msg in ${line}`);
    return obj;
  });
}

/** The samples of a Prometheus text exposition, as `name{labels}` → value. Every non-comment line must parse. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    samples.set(m[1]!, Number(m[2]));
  }
  return samples;
}

async function scrape(url: string): Promise<{ res: RawResponse; samples: Map<string, number> }> {
  const res = await rawRequest(`${url}/metrics`);
  assert.equal(res.status, 200, res.text);
  return { res, samples: parseMetrics(res.text) };
}

describe('health, readiness and metrics', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    assert.equal(await server.stop('SIGTERM'), 0, server.stderr());
  });

  test('/healthz is 200 ok', async () => {
    const res = await rawRequest(`${server.url}/healthz`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.deepEqual(res.json(), { status: 'ok' });
  });

  test('/readyz is 200 ready with engine sqlite', async () => {
    const res = await rawRequest(`${server.url}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { status: 'ready', engine: 'sqlite' });
  });

  test('/metrics counts requests, lock attempts, writes and held locks as they happened', async () => {
    const A = 'metrics/a/terraform.tfstate';
    const B = 'metrics/b/terraform.tfstate';
    const C = 'metrics/c/terraform.tfstate';
    const post = (key: string, body: string) => rawRequest(`${server.url}/state/${key}`, { method: 'POST', body });
    const lock = (key: string, id: string) => rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody(id) });

    assert.equal((await post(A, stateBody(1, 'lin-a'))).status, 200);
    assert.equal((await post(A, stateBody(2, 'lin-a'))).status, 200);
    assert.equal((await lock(B, 'lock-b-1')).status, 200); // acquired
    const refusedLock = await lock(B, 'lock-b-2');
    assert.equal(refusedLock.status, 423, refusedLock.text); // refused
    assert.equal((await post(A, stateBody(1, 'lin-a'))).status, 409); // lower serial: write refused

    const { res, samples } = await scrape(server.url);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4');
    assert.match(res.text, /^# TYPE statelock_http_requests_total counter$/m);
    assert.match(res.text, /^# TYPE statelock_locks_held gauge$/m);
    const get = (name: string) => samples.get(name);
    assert.equal(get('statelock_http_requests_total{door="http-backend",method="POST",status="200"}'), 2);
    assert.equal(get('statelock_http_requests_total{door="http-backend",method="POST",status="409"}'), 1);
    assert.equal(get('statelock_http_requests_total{door="http-backend",method="LOCK",status="200"}'), 1);
    assert.equal(get('statelock_http_requests_total{door="http-backend",method="LOCK",status="423"}'), 1);
    assert.equal(get('statelock_lock_attempts_total{result="acquired"}'), 1);
    assert.equal(get('statelock_lock_attempts_total{result="refused"}'), 1);
    assert.equal(get('statelock_state_writes_total{result="stored"}'), 2);
    assert.equal(get('statelock_state_writes_total{result="refused"}'), 1);
    assert.equal(get('statelock_locks_held'), 1);
    // The earlier ops requests of this suite are counted under door="ops".
    assert.equal(get('statelock_http_requests_total{door="ops",method="GET",status="200"}'), 2);

    // The gauge follows the locks actually held.
    assert.equal((await lock(C, 'lock-c-1')).status, 200);
    assert.equal((await scrape(server.url)).samples.get('statelock_locks_held'), 2);
    const unlock = await rawRequest(`${server.url}/state/${B}`, { method: 'UNLOCK', body: lockBody('lock-b-1') });
    assert.equal(unlock.status, 200, unlock.text);
    const last = (await scrape(server.url)).samples;
    assert.equal(last.get('statelock_locks_held'), 1);
    assert.equal(last.get('statelock_lock_attempts_total{result="acquired"}'), 2);
    assert.equal(last.get('statelock_unlocks_total{result="released"}'), 1);
    // The two previous scrapes are counted too.
    assert.equal(last.get('statelock_http_requests_total{door="ops",method="GET",status="200"}'), 4);
  });
});

describe('structured logs', () => {
  test('with --log-level info every stderr line is a JSON object; requests are logged', async () => {
    const server = await startServer({ logLevel: 'info' });
    let exitCode: number | null = null;
    try {
      const res = await rawRequest(`${server.url}/healthz?probe=1`);
      assert.equal(res.status, 200);
      const done = closed(server.proc);
      exitCode = await server.stop('SIGTERM');
      await done;
    } finally {
      if (exitCode === null) await server.stop('SIGKILL');
    }
    assert.equal(exitCode, 0);
    const lines = parseLogLines(server.stderr());
    const requests = lines.filter((l) => l.msg === 'request');
    assert.equal(requests.length, 1, `request lines: ${JSON.stringify(requests)}`);
    const r = requests[0]!;
    assert.equal(r.level, 'info');
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.door, 'ops');
    assert.equal(typeof r.ms, 'number');
    assert.ok(lines.some((l) => l.msg === 'listening' && l.url === server.url), 'a "listening" line with the url');
    assert.ok(lines.some((l) => l.msg === 'draining' && l.signal === 'SIGTERM'), 'a "draining" line');
    assert.ok(lines.some((l) => l.msg === 'stopped'), 'a "stopped" line');
  });
});

describe('SIGTERM drain', () => {
  test('an in-flight write completes, the process exits 0, and the write survives a restart', async (t) => {
    const server = await startServer({ logLevel: 'info' });
    const KEY = 'drain/app/terraform.tfstate';
    const LATE_KEY = 'drain/late/terraform.tfstate';
    const body = Buffer.from(stateBody(1, 'lineage-drain', { outputs: { big: { value: 'x'.repeat(64 * 1024) + ' ✓', type: 'string' } } }));
    const half = Math.floor(body.length / 2);
    let stopped: Promise<number | null> | null = null;
    let late: { status: number; text: string } | { error: string } | null = null;
    try {
      // Expect: 100-continue makes the server answer "100 Continue" from inside the same tick that
      // starts handling the request, so once we see it the request is in flight — no guessing.
      const { url } = server;
      const responded = new Promise<{ res: IncomingMessage; text: string }>((resolve, reject) => {
        const req = httpRequest(`${url}/state/${KEY}`, {
          method: 'POST',
          agent: false,
          headers: {
            'Content-Length': String(body.length),
            'Content-MD5': createHash('md5').update(body).digest('base64'),
            Expect: '100-continue',
          },
        });
        req.on('error', reject);
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ res, text }));
          res.on('error', reject);
        });
        req.on('continue', () => {
          req.write(body.subarray(0, half), () => {
            // First half is on the wire: now ask the server to stop, without awaiting it.
            stopped = server.stop('SIGTERM');
            void waitForOutput(server.proc, 'stderr', () => server.stderr().includes('"msg":"draining"'), 'the "draining" log line', server.stderr).then(
              async () => {
                // Draining has started. A request sent now must be refused or answered 503, never lost.
                late = await rawRequest(`${url}/state/${LATE_KEY}`, { method: 'POST', body: stateBody(1, 'lineage-late'), keepAlive: false }).then(
                  (r) => ({ status: r.status, text: r.text }),
                  (err: NodeJS.ErrnoException) => ({ error: err.code ?? String(err) }),
                );
                req.end(body.subarray(half));
              },
              (err) => {
                req.destroy(err as Error);
              },
            );
          });
        });
        req.flushHeaders();
      });

      const { res, text } = await responded;
      assert.equal(res.statusCode, 200, text);
      assert.deepEqual(JSON.parse(text), { outcome: 'stored', serial: 1, lineage: 'lineage-drain', version: 1, forced: null, overwritten: null });
      const exitCode = await stopped!;
      assert.equal(exitCode, 0, `exit code; stderr:\n${server.stderr()}`);
      await closed(server.proc);
      const lines = parseLogLines(server.stderr());
      const stoppedLine = lines.find((l) => l.msg === 'stopped');
      assert.ok(stoppedLine, 'a "stopped" log line');
      assert.equal(stoppedLine.inFlightAbandoned, 0);
      // The write finished while the server was draining: logged after "draining", before "stopped".
      const drainingAt = lines.findIndex((l) => l.msg === 'draining');
      const writeAt = lines.findIndex((l) => l.msg === 'request' && l.method === 'POST' && l.path === `/state/${KEY}`);
      assert.ok(drainingAt >= 0 && writeAt > drainingAt && lines.indexOf(stoppedLine) > writeAt, `log order: ${lines.map((l) => l.msg).join(', ')}`);
      assert.equal(lines[writeAt]!.status, 200);

      assert.ok(late !== null, 'the late request was made');
      const lateResult = late as { status: number; text: string } | { error: string };
      t.diagnostic(`late request during the drain: ${JSON.stringify(lateResult)}`);
      if ('error' in lateResult) {
        assert.ok(['ECONNREFUSED', 'ECONNRESET'].includes(lateResult.error), `late request failed with ${lateResult.error}`);
      } else {
        assert.equal(lateResult.status, 503, `late request answered ${lateResult.status}: ${lateResult.text}`);
        assert.equal(JSON.parse(lateResult.text).error.code, 'SHUTTING_DOWN');
      }

      // Same data directory: the drained write is there, byte for byte; the refused one is not.
      const again = await startServer({ dataDir: server.dataDir });
      try {
        const got = await rawRequest(`${again.url}/state/${KEY}`);
        assert.equal(got.status, 200, got.text);
        assert.ok(got.body.equals(body), 'the state written during the drain survives byte-for-byte');
        assert.equal(got.headers['content-md5'], createHash('md5').update(body).digest('base64'));
        const lateGot = await rawRequest(`${again.url}/state/${LATE_KEY}`);
        assert.equal(lateGot.status, 404, `the refused late write must not be stored: ${lateGot.text}`);
      } finally {
        assert.equal(await again.stop('SIGTERM'), 0);
      }
    } finally {
      if (server.proc.exitCode === null && server.proc.signalCode === null) await server.stop('SIGKILL');
    }
  });
});
