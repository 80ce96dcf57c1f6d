/**
 * A stand-in for `terraform apply` through `backend "http"` with its addresses left to the environment,
 * for `statelock run` tests: `node dist/test/support/fake-terraform.js apply [options]`.
 *
 * Like Terraform it reads `TF_HTTP_ADDRESS`, `TF_HTTP_LOCK_ADDRESS` and `TF_HTTP_UNLOCK_ADDRESS` (query
 * parameters kept) and speaks through {@link HttpBackendClient}, which sends exactly what Terraform sends:
 * GET, LOCK (OperationTypeApply), GET, then a new serial every `FAKE_TF_WRITE_MS` ms (default 200),
 * `FAKE_TF_WRITES` times (default: forever — hold the lock and keep writing), then UNLOCK and exit 0.
 * A refused write is logged and the writing goes on, as Terraform does with its intermediate persists:
 * that is how fenced writes are observed. On SIGINT/SIGTERM it writes once more, unlocks and exits 0, as
 * Terraform does on Ctrl-C; a second signal before that is done exits 1 at once without unlocking, as
 * Terraform's "Two interrupts received. Exiting immediately."
 *
 * Options (override the environment): `--writes N`, `--write-ms N`, `--exit-code N` (exit with N after
 * unlocking: a failed apply), `--no-unlock` (exit without unlocking: a crash that left the lock),
 * `--address URL` (a backend block that sets address, lock_address and unlock_address to URL: Terraform then
 * ignores TF_HTTP_*).
 *
 * Environment for tests: `FAKE_TF_PIDFILE` (its pid is written there), `FAKE_TF_LOG` (one line appended
 * per event: `started <pid>`, `env <address> <lock address> <unlock address>`, `locked <id>`, `lock-failed <message>`, `wrote <serial> <status>`,
 * `refused <serial> <status> <code>` (code: the JSON error's, the X-Statelock-Error header, or `held-by:<ID>` when
 * the answer is the holder's lock info), `signal <name>`, `unlocked`, `unlock-failed <message>`,
 * `exit <code>`), `FAKE_TF_DUMP_DIR` (every body it sends is saved there as `<serial>.tfstate`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { STATELOCK_BIN, tempDir } from './server-process.js';
import { HttpBackendClient, makeState, newLineage, parseStateFile } from './terraform-client.js';

/** This script, compiled: what `statelock run -- node <FAKE_TERRAFORM> apply` runs. */
export const FAKE_TERRAFORM = fileURLToPath(import.meta.url);

/* ================================================================== */
/* Helpers for the tests that drive the stand-in                      */
/* ================================================================== */

/** Polls `probe` every `intervalMs` until it returns a truthy value (returned), or fails after `timeoutMs`. */
export async function waitUntil<T>(what: string, probe: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The files through which a stand-in reports to its test. */
export class FakeTerraformFiles {
  readonly dir = tempDir('statelock-fake-tf-');
  readonly logFile = join(this.dir, 'events.log');
  readonly pidFile = join(this.dir, 'pid');
  readonly dumpDir = join(this.dir, 'bodies');

  constructor() {
    mkdirSync(this.dumpDir);
  }

  env(): Record<string, string> {
    return { FAKE_TF_LOG: this.logFile, FAKE_TF_PIDFILE: this.pidFile, FAKE_TF_DUMP_DIR: this.dumpDir };
  }

  events(): string[] {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').split('\n').filter(Boolean) : [];
  }

  /** Waits until an event line matches `re` (bounded) and returns its match. */
  waitForEvent(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return waitUntil(`stand-in event ${re}; events so far: ${this.events().join(' | ')}`, () => this.events().map((l) => re.exec(l)).find((m) => m) ?? null, timeoutMs);
  }

  /** The body the stand-in sent for `serial`. */
  body(serial: number): Buffer {
    return readFileSync(join(this.dumpDir, `${serial}.tfstate`));
  }

  async pid(): Promise<number> {
    return Number(await waitUntil('the stand-in pid file', () => (existsSync(this.pidFile) ? readFileSync(this.pidFile, 'utf8').trim() : '')));
  }
}

export interface WrapperExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `statelock run … -- node fake-terraform.js apply …` as a subprocess. */
export interface WrapperRun {
  proc: ChildProcess;
  fake: FakeTerraformFiles;
  stdout(): string;
  stderr(): string;
  exited: Promise<WrapperExit>;
}

/**
 * Starts `statelock --server <server> run <runArgs> -- node fake-terraform.js apply <fakeArgs>`. `detached`
 * (default true) puts the wrapper in its own process group, so that it is never the foreground group of
 * the terminal the tests may run in: a signal the test sends reaches the wrapper alone, as one sent by a
 * CI runner does.
 */
export function startWrapper(server: string, runArgs: string[], fakeArgs: string[] = [], opts: { env?: Record<string, string>; detached?: boolean } = {}): WrapperRun {
  const fake = new FakeTerraformFiles();
  const proc = spawn(process.execPath, [STATELOCK_BIN, '--server', server, 'run', ...runArgs, '--', process.execPath, FAKE_TERRAFORM, 'apply', ...fakeArgs], {
    env: { ...process.env, NO_COLOR: '1', ...fake.env(), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached ?? true,
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<WrapperExit>((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  return { proc, fake, stdout: () => out, stderr: () => err, exited };
}

/** Whether a pid is gone (no /proc entry, or a zombie nobody reaped yet). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/* ================================================================== */
/* The stand-in itself                                                 */
/* ================================================================== */

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runFakeTerraform();

function runFakeTerraform(): void {

  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      writes: { type: 'string' },
      'write-ms': { type: 'string' },
      'exit-code': { type: 'string' },
      'no-unlock': { type: 'boolean' },
      address: { type: 'string' },
    },
  });
  const mode = positionals[0] ?? 'apply';
  if (mode !== 'apply') {
    process.stderr.write(`fake-terraform: unknown mode "${mode}" (only "apply")\n`);
    process.exit(2);
  }
  const writesText = values.writes ?? process.env.FAKE_TF_WRITES;
  const writes = writesText === undefined || writesText === '' || writesText === 'forever' ? Infinity : Number(writesText);
  const writeMs = Number(values['write-ms'] ?? process.env.FAKE_TF_WRITE_MS ?? 200);
  const exitCode = Number(values['exit-code'] ?? 0);
  const logFile = process.env.FAKE_TF_LOG;
  const dumpDir = process.env.FAKE_TF_DUMP_DIR;

  function log(line: string): void {
    if (logFile) appendFileSync(logFile, `${line}\n`);
  }

  function finish(code: number): never {
    log(`exit ${code}`);
    process.exit(code);
  }

  if (process.env.FAKE_TF_PIDFILE) writeFileSync(process.env.FAKE_TF_PIDFILE, String(process.pid));
  log(`started ${process.pid}`);

  // `--address URL`: a backend block that sets address/lock_address/unlock_address, which win over TF_HTTP_*.
  const configured = values.address;
  const address = configured ?? process.env.TF_HTTP_ADDRESS;
  if (!address) {
    process.stderr.write('fake-terraform: TF_HTTP_ADDRESS is not set\n');
    finish(1);
  }
  const lockAddress = configured ?? process.env.TF_HTTP_LOCK_ADDRESS;
  const unlockAddress = configured ?? process.env.TF_HTTP_UNLOCK_ADDRESS;
  log(`env ${address} ${lockAddress ?? ''} ${unlockAddress ?? ''}`);
  const client = new HttpBackendClient({ address, lockAddress, unlockAddress }, { flavor: 'terraform' });

  let interrupted = false;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    log(`signal ${signal}`);
    if (interrupted) {
      process.stderr.write('Two interrupts received. Exiting immediately. Note that data loss may have occurred.\n');
      finish(1);
    }
    interrupted = true;
    process.stderr.write('Interrupt received.\nPlease wait for Terraform to exit or data loss may occur.\nGracefully shutting down...\n');
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  let serial = 0;
  let lineage = newLineage();

  /** One PersistState: a new serial; a refusal is logged and the apply goes on. */
  async function persist(): Promise<void> {
    serial++;
    const body = makeState({ serial, lineage, outputs: { serial: { value: serial, type: 'number' } } });
    if (dumpDir) writeFileSync(join(dumpDir, `${serial}.tfstate`), body);
    try {
      await client.write(body);
      log(`wrote ${serial} ${client.lastResponse?.status ?? 0}`);
    } catch (err) {
      const res = client.lastResponse;
      // The refusal's code: a JSON error's, else statelock's header; a lock conflict answers with the holder's lock info.
      let code = String(res?.headers['x-statelock-error'] ?? '');
      try {
        const body = JSON.parse(res?.body.toString('utf8') ?? '') as { error?: { code?: string }; ID?: string };
        code ||= body.error?.code ?? (typeof body.ID === 'string' ? `held-by:${body.ID}` : '');
      } catch {
        // not JSON
      }
      log(`refused ${serial} ${res?.status ?? 0} ${code || (err as Error).message.replace(/\s+/g, '_')}`);
      process.stderr.write(`Failed to persist state: ${(err as Error).message}\n`);
    }
  }

  async function unlock(): Promise<boolean> {
    try {
      await client.unlock();
      log('unlocked');
      return true;
    } catch (err) {
      log(`unlock-failed ${(err as Error).message}`);
      process.stderr.write(`Error releasing the state lock: ${(err as Error).message}\n`);
      return false;
    }
  }

  async function main(): Promise<never> {
    const adopt = (buf: Buffer | null) => {
      if (!buf) return;
      const s = parseStateFile(buf);
      serial = s.serial;
      lineage = s.lineage;
    };
    adopt(await client.get());
    let id: string;
    try {
      id = await client.lock('OperationTypeApply');
    } catch (err) {
      log(`lock-failed ${(err as Error).message.split('\n')[0]}`);
      process.stderr.write(`Error: Error acquiring the state lock\n\n${(err as Error).message}\n`);
      return finish(1);
    }
    log(`locked ${id}`);
    adopt(await client.get());
    for (let n = 0; n < writes && !interrupted; n++) {
      await sleep(writeMs);
      if (interrupted) break;
      await persist();
    }
    if (interrupted) await persist(); // Terraform persists what it has before stopping
    if (values['no-unlock']) return finish(exitCode);
    const ok = await unlock();
    return finish(ok ? exitCode : 1);
  }

  main().catch((err: unknown) => {
    process.stderr.write(`fake-terraform: ${(err as Error).stack ?? String(err)}\n`);
    finish(1);
  });
}
