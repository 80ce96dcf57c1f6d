/**
 * Private, throwaway PostgreSQL clusters for tests.
 *
 * Each `startPostgres()` runs `initdb` in a fresh temp directory and starts its own postmaster on a free loopback port
 * (and a Unix socket inside the data directory), so tests never touch a system cluster and never collide with each
 * other. When the test process runs as root (CI), the cluster is created and run as the `postgres` OS user, because
 * initdb and postgres refuse to run as root; otherwise as the current user. Every cluster still running when the
 * process exits is stopped (`pg_ctl stop -m immediate`) and its directory removed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface PgCluster {
  /** `postgres://statelock@127.0.0.1:<port>/statelock` (trust auth, no password). */
  url: string;
  port: number;
  /** The cluster's data directory; also holds the Unix socket and the server log (`<dataDir>/log`). */
  dataDir: string;
  /** `fast` (default): clean shutdown. `immediate`: no checkpoint, like a crash; recovery replays WAL on start. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the same cluster on the same port again and resolves once it accepts connections. */
  start(): Promise<void>;
  /** `stop('fast')` then `start()`. */
  restart(): Promise<void>;
}

const PG_PROGRAMS = ['initdb', 'pg_ctl', 'postgres'];
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const PG_OS_USER = 'postgres';
const DB_NAME = 'statelock';
const DB_USER = 'statelock';

function hasPrograms(dir: string): boolean {
  return PG_PROGRAMS.every((p) => {
    try {
      accessSync(join(dir, p), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

let pgBinCache: string | null | undefined;

/**
 * The directory holding initdb/pg_ctl/postgres: Debian's /usr/lib/postgresql/<version>/bin, newest version first,
 * then any PATH entry that has all three. null when PostgreSQL's server binaries are not installed.
 */
export function findPgBin(): string | null {
  if (pgBinCache !== undefined) return pgBinCache;
  const candidates: string[] = [];
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    for (const v of versions) candidates.push(join(root, v, 'bin'));
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(dir);
  pgBinCache = candidates.find(hasPrograms) ?? null;
  return pgBinCache;
}

/** The client programs (psql, createdb, pg_isready) from the same installation, else from PATH. */
function clientProgram(name: string): string {
  const bin = findPgBin();
  if (bin) {
    const p = join(bin, name);
    if (existsSync(p)) return p;
  }
  return name;
}

function pgOsUserExists(): boolean {
  return spawnSync('id', ['-u', PG_OS_USER], { stdio: 'ignore' }).status === 0;
}

let availableCache: boolean | undefined;
let unavailableWhy = '';

/** True when this machine can run private PostgreSQL clusters (binaries present; as root: a `postgres` user and runuser). */
export function pgAvailable(): boolean {
  if (availableCache !== undefined) return availableCache;
  if (!findPgBin()) unavailableWhy = 'initdb/pg_ctl/postgres not found in /usr/lib/postgresql/*/bin or PATH';
  else if (IS_ROOT && !pgOsUserExists()) unavailableWhy = `running as root but there is no "${PG_OS_USER}" OS user to run initdb/postgres as`;
  else if (IS_ROOT && spawnSync('runuser', ['--help'], { stdio: 'ignore' }).status !== 0) unavailableWhy = 'running as root but runuser is missing';
  availableCache = unavailableWhy === '';
  return availableCache;
}

/** Why PostgreSQL tests are skipped here (for `describe(..., { skip: pgAvailable() ? false : PG_SKIP_REASON })`). */
export const PG_SKIP_REASON: string = pgAvailable()
  ? ''
  : `PostgreSQL is not available (${unavailableWhy}); install Debian's postgresql package (apt-get install postgresql) — .ci/run does this in CI`;

/** argv for running a PostgreSQL server program as the right OS user. */
function asPgUser(program: string, args: string[]): [string, string[]] {
  const path = join(findPgBin()!, program);
  return IS_ROOT ? ['runuser', ['-u', PG_OS_USER, '--', path, ...args]] : [path, args];
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // cwd '/': the postgres user may not be able to read the test's working directory.
    const child = spawn(cmd, args, { cwd: '/', env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? null : 0), stdout, stderr });
    });
  });
}

async function mustRun(what: string, cmd: string, args: string[], opts: { timeoutMs?: number; logFile?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    let log = '';
    if (opts.logFile) {
      const tail = spawnSync('tail', ['-n', '30', opts.logFile], { encoding: 'utf8' });
      if (tail.status === 0 && tail.stdout) log = `\nserver log (${opts.logFile}):\n${tail.stdout}`;
    }
    throw new Error(`${what} failed (exit ${r.code}): ${cmd} ${args.join(' ')}\n${r.stdout}${r.stderr}${log}`);
  }
  return r.stdout;
}

/** A port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

/** A fresh temp directory the postgres OS user can reach (the temp root must be world-traversable). */
function clusterDir(): string {
  let base = tmpdir();
  if (IS_ROOT && spawnSync('runuser', ['-u', PG_OS_USER, '--', 'test', '-x', base], { stdio: 'ignore' }).status !== 0) base = '/tmp';
  return mkdtempSync(join(base, 'statelock-pg-'));
}

/** Clusters started by this process and not cleanly stopped and removed yet: stopped and removed on exit. */
const live = new Map<string, { running: boolean }>();
let exitHookInstalled = false;

function cleanupSync(): void {
  for (const [dataDir, c] of live) {
    if (c.running) {
      const [cmd, args] = asPgUser('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10']);
      spawnSync(cmd, args, { cwd: '/', stdio: 'ignore', timeout: 15_000 });
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
  live.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', cleanupSync);
  // Killed by a signal, 'exit' does not fire: clean up, then die of the same signal as before.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      cleanupSync();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * Creates a private cluster (database `statelock`, superuser `statelock`, trust auth on loopback) in a fresh temp
 * directory, starts it on `opts.port` or a free port, and resolves once the database exists.
 */
export async function startPostgres(opts: { port?: number } = {}): Promise<PgCluster> {
  if (!pgAvailable()) throw new Error(PG_SKIP_REASON);
  installExitHook();
  const dataDir = clusterDir();
  const state = { running: false };
  live.set(dataDir, state);
  const logFile = join(dataDir, 'log');
  try {
    if (IS_ROOT) await mustRun('chown', 'chown', ['-R', `${PG_OS_USER}:`, dataDir]);
    // --locale=C: works whatever locales the machine has; -N: no fsync of the fresh files (the server runs with fsync=on).
    const [initCmd, initArgs] = asPgUser('initdb', ['-D', dataDir, '-U', DB_USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '-N']);
    await mustRun('initdb', initCmd, initArgs, { timeoutMs: 120_000 });
  } catch (e) {
    live.delete(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }

  let port = opts.port ?? 0;
  const pgStart = async () => {
    const serverOpts = `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200`;
    const [cmd, args] = asPgUser('pg_ctl', ['-D', dataDir, '-o', serverOpts, '-w', '-t', '60', '-l', logFile, 'start']);
    state.running = true; // from here on a postmaster may exist: the exit hook must try to stop it
    const r = await run(cmd, args, { timeoutMs: 90_000 });
    if (r.code !== 0) {
      state.running = false;
      const tail = spawnSync('tail', ['-n', '30', logFile], { encoding: 'utf8' }).stdout ?? '';
      throw Object.assign(new Error(`pg_ctl start failed (exit ${r.code}) on port ${port}:\n${r.stdout}${r.stderr}\nserver log:\n${tail}`), {
        portInUse: /already in use|could not bind|could not create any TCP\/IP sockets/i.test(tail),
      });
    }
    await waitReady(port);
  };

  // A port found free can be taken before the postmaster binds it: try another one then (only when we chose it).
  for (let attempt = 1; ; attempt++) {
    if (!opts.port) port = await freePort();
    try {
      await pgStart();
      break;
    } catch (e) {
      if (opts.port || attempt >= 5 || !(e as { portInUse?: boolean }).portInUse) {
        live.delete(dataDir);
        rmSync(dataDir, { recursive: true, force: true });
        throw e;
      }
    }
  }

  await mustRun('createdb', clientProgram('createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', DB_USER, DB_NAME], { logFile });

  const pgStop = async (mode: 'fast' | 'immediate' = 'fast') => {
    if (!state.running) return;
    const [cmd, args] = asPgUser('pg_ctl', ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '60']);
    await mustRun(`pg_ctl stop -m ${mode}`, cmd, args, { timeoutMs: 90_000, logFile });
    state.running = false;
  };

  return {
    url: `postgres://${DB_USER}@127.0.0.1:${port}/${DB_NAME}`,
    port,
    dataDir,
    stop: pgStop,
    start: async () => {
      if (state.running) return;
      await pgStart();
    },
    restart: async () => {
      await pgStop('fast');
      await pgStart();
    },
  };
}

/** Waits (bounded) until the cluster accepts connections on 127.0.0.1:port. */
async function waitReady(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await run(clientProgram('pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-U', DB_USER, '-d', 'postgres', '-t', '5']);
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`PostgreSQL on port ${port} not ready after ${timeoutMs} ms (pg_isready exit ${r.code})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * Runs SQL with `psql -Atc` (unaligned, tuples only; ON_ERROR_STOP) against the cluster's `statelock` database and
 * resolves with its stdout, trailing newline removed. Rejects with psql's stderr when it fails.
 */
export async function psql(cluster: Pick<PgCluster, 'port'>, sql: string): Promise<string> {
  const r = await run(
    clientProgram('psql'),
    ['-X', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', DB_USER, '-d', DB_NAME, '-Atc', sql],
    { timeoutMs: 30_000, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } },
  );
  if (r.code !== 0) throw new Error(`psql failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout.replace(/\n$/, '');
}
