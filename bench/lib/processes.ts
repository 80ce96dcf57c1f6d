import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BASELINE_JS = fileURLToPath(new URL('../baseline-server.js', import.meta.url));
const CEILING_JS = fileURLToPath(new URL('../ceiling-server.js', import.meta.url));
const require = createRequire(import.meta.url);

/** The address a `statelock serve --port 0` child prints once it listens; rejects if it exits first. */
export function listeningUrl(proc: ChildProcess, label = 'server'): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /statelock listening on (http\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`${label} exited with ${code}`)));
  });
}

export interface Baseline {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Spawns `node <script> <args>` as its own process (so each server gets a core of its own on a 2-core
 * machine, as statelock does) and resolves once a stdout line matches `listening`: its first group,
 * made into a URL by `toUrl`, is where the server answers.
 */
async function spawnListening(name: string, script: string, args: string[], listening: RegExp, toUrl: (m: RegExpExecArray) => string): Promise<Baseline> {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 15 s: ${err}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = listening.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(toUrl(m));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before listening: ${err}`));
    });
  });
  return {
    url,
    proc,
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Spawns the minimal Node server (bench/baseline-server.ts) as its own process. */
export function startBaseline(getBytes = 0): Promise<Baseline> {
  return spawnListening('baseline', BASELINE_JS, [String(getBytes)], /baseline listening on (http\S+)/, (m) => m[1]!);
}

/** The least durable lock server (bench/ceiling-server.ts) on `dataDir`, as its own process; `mode`: where its database runs. */
export async function startCeiling(mode: 'one-thread' | 'db-thread', dataDir: string): Promise<DataServer> {
  const b = await spawnListening('ceiling server', CEILING_JS, [mode, dataDir], /listening on (http\S+)/, (m) => m[1]!);
  return withDataDir(b, dataDir);
}

/** A free TCP port on 127.0.0.1 (for a server that cannot be told `--port 0`). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The version of an installed package, from node_modules/<pkg>/package.json. */
export function packageVersion(pkg: string): string {
  return (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
}

export interface DataServer extends Baseline {
  /** Where it keeps its data (a fresh temp dir unless one was given); removed by `stopAndRemove()`. */
  dataDir: string;
  stopAndRemove(): Promise<void>;
}

function withDataDir(b: Baseline, dataDir: string): DataServer {
  return Object.assign(b, {
    dataDir,
    stopAndRemove: async () => {
      await b.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

/**
 * dynalite (DynamoDB emulator) on LevelDB in `dataDir` (fresh temp dir by default), as its own process:
 * `dynalite --host 127.0.0.1 --port P --path DIR`. It treats `--port 0` as its default 4567, so a free
 * port is picked first. LevelDB writes are not fsynced: nothing it acknowledges is durable.
 */
export async function startDynalite(dataDir = mkdtempSync(join(tmpdir(), 'bench-dynalite-'))): Promise<DataServer> {
  // The port is free when picked, but another process may take it before dynalite binds it: pick again then.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      const b = await spawnListening('dynalite', require.resolve('dynalite/cli.js'), ['--host', '127.0.0.1', '--port', String(port), '--path', dataDir], /Dynalite listening at: http:\/\/\S+:(\d+)/, (m) => `http://127.0.0.1:${m[1]}`);
      return withDataDir(b, dataDir);
    } catch (err) {
      // Only a dynalite that exited (EADDRINUSE) is tried again; one that hangs is not left running behind a retry.
      if (attempt >= 3 || !/exited before listening/.test((err as Error).message)) throw err;
    }
  }
}

/** The access key s3rver knows (it checks the key ID exists; it does not verify SigV4 signatures). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * s3rver (S3 emulator; one file per object, no fsync) on `dataDir` as its own process:
 * `s3rver --directory DIR --address 127.0.0.1 --port 0 --silent`.
 */
export async function startS3rver(dataDir = mkdtempSync(join(tmpdir(), 'bench-s3rver-'))): Promise<DataServer> {
  const b = await spawnListening('s3rver', require.resolve('s3rver/bin/s3rver.js'), ['--directory', dataDir, '--address', '127.0.0.1', '--port', '0', '--silent'], /S3rver listening on [\d.]+:(\d+)/, (m) => `http://127.0.0.1:${m[1]}`);
  return withDataDir(b, dataDir);
}

/** Peak resident set size (VmHWM) of a process, in bytes. */
export function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Current resident set size (VmRSS) of a process, in bytes. */
export function currentRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU time (user + system) a process has used so far, in ms (USER_HZ = 100 on Linux: 10 ms resolution). */
export function cpuMs(pid: number): number {
  return statCpuMs(`/proc/${pid}/stat`);
}

/** The same for the process's main thread alone (its thread id is the process id): a Node process's event loop. */
export function mainThreadCpuMs(pid: number): number {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuMs(path: string): number {
  try {
    const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}
