import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, tempDir, STATELOCK_BIN } from './support/server-process.js';
import { rawRequest } from './support/http.js';

/** `statelock serve` and the CLI entry point, run as real processes. */

/** Runs the CLI to completion. The timeout only turns a wrongly started server into a failure instead of a hang. */
function runCli(args: string[], cwd = tempDir()): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [STATELOCK_BIN, ...args], { cwd, encoding: 'utf8', timeout: 15_000, killSignal: 'SIGKILL' });
  assert.equal(r.error, undefined, `statelock ${args.join(' ')} did not finish: ${String(r.error)}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  assert.equal(r.signal, null, `statelock ${args.join(' ')} was killed by ${r.signal}`);
  return r;
}

/** Resolves with everything on stdout once `ok(stdout)` holds; rejects if the process exits first. */
function waitForStdout(proc: ChildProcess, ok: (out: string) => boolean): Promise<string> {
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out; stdout: ${out}; stderr: ${err}`)), 15_000); // failsafe only
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (ok(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} first; stdout: ${out}; stderr: ${err}`));
    });
  });
}

const BANNER_DONE = /backend "http" \{[\s\S]*\}\s*\}\s*$/;

describe('statelock serve', () => {
  test('prints the URL it listens on and a backend "http" block pointing at it', async () => {
    const dataDir = join(tempDir(), 'nested', 'data');
    const server = await startServer({ dataDir });
    try {
      const url = server.url;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const port = Number(new URL(url).port);
      assert.ok(port > 0 && port < 65536, `port ${port}`);

      // The banner is one write; wait for its closing braces by event, not by time.
      const out = await new Promise<string>((resolve, reject) => {
        if (BANNER_DONE.test(server.stdout())) return resolve(server.stdout());
        const onData = () => {
          if (BANNER_DONE.test(server.stdout())) {
            server.proc.stdout!.off('data', onData);
            resolve(server.stdout());
          }
        };
        server.proc.stdout!.on('data', onData);
        server.proc.once('exit', () => reject(new Error(`exited before the banner was complete: ${server.stdout()}`)));
      });
      assert.ok(out.startsWith(`statelock listening on ${url} `), out);
      assert.match(out, /backend "http" \{/);
      for (const field of ['address', 'lock_address', 'unlock_address']) {
        const m = new RegExp(`^\\s*${field}\\s*=\\s*"([^"]+)"\\s*$`, 'm').exec(out);
        assert.ok(m, `${field} is missing from:\n${out}`);
        assert.ok(m[1]!.startsWith(`${url}/state/`), `${field} = ${m[1]}`);
        assert.ok(m[1]!.length > `${url}/state/`.length, `${field} names a key`);
      }

      // The printed port is really listening.
      const health = await rawRequest(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(health.json(), { status: 'ok' });

      // --data DIR (even a not-yet-existing one) holds the SQLite database.
      assert.ok(statSync(join(dataDir, 'statelock.db')).isFile(), `${dataDir}/statelock.db exists`);
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0);
    }
  });

  test('--port abc exits 2 with a message on stderr', () => {
    const dir = tempDir();
    const r = runCli(['serve', '--port', 'abc', '--data', join(dir, 'data')], dir);
    assert.equal(r.status, 2, `stderr: ${r.stderr}`);
    assert.match(r.stderr, /--port/);
    assert.match(r.stderr, /abc/);
    assert.equal(existsSync(join(dir, 'data')), false, 'nothing was started');
  });

  test('--log-level loud exits 2 with a message on stderr', () => {
    const dir = tempDir();
    const r = runCli(['serve', '--port', '0', '--log-level', 'loud', '--data', join(dir, 'data')], dir);
    assert.equal(r.status, 2, `stderr: ${r.stderr}`);
    assert.match(r.stderr, /--log-level/);
    assert.match(r.stderr, /loud/);
    assert.equal(existsSync(join(dir, 'data')), false, 'nothing was started');
  });

  test('an unknown flag --nope exits 2 with a message on stderr', () => {
    const dir = tempDir();
    const r = runCli(['serve', '--port', '0', '--nope', '--data', join(dir, 'data')], dir);
    assert.equal(r.status, 2, `exit code for an unknown flag; stderr: ${r.stderr}`);
    assert.match(r.stderr, /--nope/);
    assert.equal(existsSync(join(dir, 'data')), false, 'nothing was started');
  });

  test('the default data directory is ./.statelock in the working directory', async () => {
    const cwd = tempDir();
    const proc = spawn(process.execPath, [STATELOCK_BIN, 'serve', '--port', '0', '--log-level', 'warn'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    try {
      const out = await waitForStdout(proc, (s) => BANNER_DONE.test(s));
      const expectedDir = join(realpathSync(cwd), '.statelock');
      assert.ok(out.includes(`(SQLite in ${expectedDir})`), out);
      assert.ok(statSync(join(cwd, '.statelock', 'statelock.db')).isFile(), 'statelock.db in ./.statelock');
      const url = /statelock listening on (http\S+)/.exec(out)![1]!;
      assert.equal((await rawRequest(`${url}/readyz`)).status, 200);
    } finally {
      proc.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });
});

describe('statelock (entry point)', () => {
  test('an unknown command exits 2', () => {
    const r = runCli(['frobnicate']);
    assert.equal(r.status, 2, `stderr: ${r.stderr}`);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    assert.match(r.stderr, /Usage: statelock/);
  });

  test('--help exits 0 and prints usage', () => {
    const r = runCli(['--help']);
    assert.equal(r.status, 0, `stderr: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: statelock \[--server URL\] \[--token TOKEN\] <command>/);
    assert.match(r.stdout, /\bserve\b/);
    assert.equal(r.stderr, '');
  });

  test('serve --help exits 0 and lists the options', () => {
    const r = runCli(['serve', '--help']);
    assert.equal(r.status, 0, `stderr: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: statelock serve/);
    for (const opt of ['--host', '--port', '--data', '--log-level', '--max-body-bytes']) assert.ok(r.stdout.includes(opt), opt);
  });
});
