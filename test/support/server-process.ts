import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The real CLI entry point, as `npx statelock` runs it. */
export const STATELOCK_BIN = fileURLToPath(new URL('../../../bin/statelock.js', import.meta.url));

export interface RunningServer {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  /** Everything the server printed on stdout so far. */
  stdout(): string;
  /** Everything the server printed on stderr so far (JSON log lines). */
  stderr(): string;
  /** Sends a signal and resolves with the exit code (null when killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Every directory tempDir made in this process: removed when the process exits (each test file is a process). */
const made: string[] = [];
process.once('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
});

/** A fresh directory under the OS's temporary directory, removed when this test process exits. */
export function tempDir(prefix = 'statelock-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/**
 * Starts `statelock serve --port 0` as its own process on a (by default fresh) data directory and
 * resolves once it printed the address it listens on.
 */
export async function startServer(opts: { dataDir?: string; args?: string[]; logLevel?: string; env?: Record<string, string> } = {}): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? tempDir();
  const proc = spawn(
    process.execPath,
    [STATELOCK_BIN, 'serve', '--port', '0', '--data', dataDir, '--log-level', opts.logLevel ?? 'warn', ...(opts.args ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) },
  );
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 10 s; stderr: ${err}`)), 10_000);
    const check = () => {
      const m = /statelock listening on (http\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening; stderr: ${err}`));
    });
  });
  return {
    url,
    dataDir,
    proc,
    stdout: () => out,
    stderr: () => err,
    stop: (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      return exited;
    },
  };
}
