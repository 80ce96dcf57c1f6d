import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, delimiter, join, resolve } from 'node:path';
import { writeBackup } from '../backup-file.js';
import type { Command } from '../command.js';
import { CliError, EXIT } from '../exit-codes.js';
import type { LockView } from '../lock-view.js';
import { findTerraformProcesses, TERRAFORM_NAMES, type ProcessScan } from '../local-processes.js';
import { formatAge, paint } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import { confirmForceUnlock, lockEntry, printUnlocked, readLock, releaseLock } from './force-unlock.js';

const USAGE = 'usage: statelock recover <key> [--dir D] [--yes] [--run-terraform]';

/** Steps 5–7 of the lesson: the Terraform commands that finish an interrupted apply, and why each. */
export const NEXT_STEPS: ReadonlyArray<{ step: number; title: string; args: string[]; why: string }> = [
  {
    step: 5,
    title: 'Sync the state with what really exists',
    args: ['apply', '-refresh-only'],
    why:
      'The apply was interrupted, so the state may be partial: resources created just before the crash can exist without being ' +
      'recorded in it. -refresh-only reads what really exists and records it, changing no resource; review what it detected before you accept it.',
  },
  { step: 6, title: 'Check what is left to do', args: ['plan'], why: 'Compares the refreshed state with the configuration: it shows what the interrupted apply did not finish.' },
  { step: 7, title: 'Apply the remaining changes', args: ['apply'], why: 'Finishes the interrupted apply, under a new lock.' },
];

/**
 * `statelock recover <key> [--dir D] [--yes] [--run-terraform]`: the lesson's seven-step recovery of a
 * stuck lock as one guided flow. Each step prints a numbered header and what it found; the flow stops at
 * the first gate that fails — holder alive or a local terraform/tofu that may be it (exit 3), backup
 * failed (exit 1), confirmation declined (exit 1), lock changed holder (exit 3) — and says why. The
 * force-unlock names the lock ID read before step 1, so it never releases a lock it did not show.
 */
export const recoverCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({
    args,
    allowPositionals: true,
    options: { dir: { type: 'string' }, yes: { type: 'boolean' }, 'run-terraform': { type: 'boolean' } },
  });
  if (positionals.length !== 1 || positionals[0] === '') throw new UsageError(USAGE);
  if (values.dir === '') throw new UsageError(`--dir needs a directory\n${USAGE}`);
  const key = positionals[0]!;
  const dir = resolve(values.dir ?? process.cwd());
  const o = ctx.io;
  const header = (step: number, title: string) => o.out(`\n${paint(o, 'bold', `Step ${step}/7 — ${title}`)}\n`);
  const stop = (step: number, message: string, code: number) => new CliError(`recovery stopped at step ${step}: ${message}`, code);

  const lock = await readLock(ctx, key, 'recover');
  const id = String(lock.info.ID ?? '');
  o.out(`Recovering the lock on ${key} (ID ${id}) with the seven-step recovery procedure. It stops at the first step that fails.\n`);

  header(1, 'Is the holder still running?');
  const gate = holderGate(lock, findTerraformProcesses(), hostname(), ctx.now());
  for (const f of gate.findings) {
    const label = f.level === 'stop' ? `${paint(o, 'red', 'Stop:')} ` : f.level === 'warn' ? `${paint(o, 'yellow', 'Warning:')} ` : '';
    o.out(`  ${label}${f.text}\n`);
  }
  if (gate.failure) throw stop(1, `${gate.failure}. Nothing was changed: the lock is still held.`, EXIT.LOCKED);
  o.out(gate.findings.some((f) => f.level === 'warn') ? '  Passed, with the warnings above: only you can rule them out.\n' : '  Passed.\n');

  header(2, 'The lock entry and its age');
  o.out(lockEntry(ctx, lock, '  '));
  o.out(`  Step 4 force-unlocks exactly this lock ID: ${id}\n`);

  header(3, 'Back up the current state');
  let backup: Awaited<ReturnType<typeof writeBackup>>;
  try {
    backup = await writeBackup(ctx.api, key, dir, new Date(ctx.now()));
  } catch (err) {
    throw stop(3, `the backup could not be written to ${dir}: ${(err as Error).message}. Nothing was unlocked: the lock is still held.`, EXIT.ERROR);
  }
  if (backup) o.out(`  Saved serial ${backup.serial} (${backup.size} bytes) to ${backup.path}\n  It is your restore point if the recovery goes wrong.\n`);
  else o.out(`  ${key} has no stored state: there is nothing to back up. Continuing.\n`);
  const kept = backup ? ` The backup is kept at ${backup.path}.` : '';

  header(4, `Force-unlock lock ID ${id}`);
  if (values.yes) {
    o.out('  --yes: not asking for confirmation.\n');
  } else if (!(await confirmForceUnlock(ctx))) {
    o.err('force-unlock cancelled.\n');
    o.err(`statelock: recovery stopped at step 4: nothing was unlocked: the lock is still held.${kept}\n`);
    return EXIT.ERROR;
  }
  try {
    await releaseLock(
      ctx,
      key,
      id,
      (current) => `the lock on ${key} changed holder since step 2: it is now held by ID "${current}", not "${id}". Nothing was unlocked; run statelock recover ${key} again to check the new holder.`,
    );
  } catch (err) {
    if (err instanceof CliError) throw stop(4, err.message, err.exitCode);
    throw err;
  }
  printUnlocked(ctx, '  ');

  const binary = values['run-terraform'] ? findExecutable(TERRAFORM_NAMES, ctx.env.PATH ?? '') : null;
  const name = binary ? basename(binary) : 'terraform';
  o.out('\n');
  if (!values['run-terraform']) {
    o.out(`Steps 5–7 are Terraform commands: run them, in this order, in the working directory whose backend uses ${key} (OpenTofu: tofu instead of terraform).\n`);
  } else if (!binary) {
    o.out(`--run-terraform: no terraform or tofu binary on PATH; run the commands below yourself, in this order, in the working directory whose backend uses ${key}.\n`);
  } else {
    o.out(`--run-terraform: running them with ${binary} in ${process.cwd()}; the flow stops at the first that fails.\n`);
  }
  for (const next of NEXT_STEPS) {
    const command = [name, ...next.args].join(' ');
    header(next.step, next.title);
    o.out(`  ${paint(o, 'cyan', command)}\n  Why: ${next.why}\n`);
    if (!binary) continue;
    o.out(`  Running ${command} …\n`);
    const result = await runInherited(binary, next.args, ctx.env);
    const how = result.error ? `could not start (${result.error.message})` : result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`;
    if (result.error || result.code !== 0) {
      const rest = NEXT_STEPS.filter((s) => s.step > next.step).map((s) => [name, ...s.args].join(' '));
      throw stop(next.step, `${command} ${how}. The lock is released.${kept} Fix the problem, then run ${[command, ...rest].join(', then ')} yourself.`, EXIT.ERROR);
    }
    o.out(`  ${command} ${how}.\n`);
  }

  o.out(
    binary
      ? `\nRecovery done: the lock was released, the three Terraform commands succeeded.${kept}\n`
      : `\nRecovery steps 1–4 done: the lock is released.${kept} Finish with the three commands above.\n`,
  );
  return EXIT.OK;
};

export interface Finding {
  level: 'info' | 'warn' | 'stop';
  text: string;
}

/**
 * Step 1's gate, pure: is the holder of `lock` possibly still running? Fails (a non-null `failure`) when
 * the server's liveness verdict is `alive`, or when terraform/tofu processes run on this machine and the
 * lock's Who names this host (or no host at all: then they cannot be ruled out). An `unknown` verdict,
 * an unavailable process list and a CI-runner Who are warnings: the operator must rule them out.
 */
export function holderGate(lock: LockView, scan: ProcessScan, localHost: string, nowMs: number): { findings: Finding[]; failure: string | null } {
  const findings: Finding[] = [];
  const failures: string[] = [];
  const who = String(lock.info.Who ?? '');
  const reason = lock.evidence.reason ? ` — ${String(lock.evidence.reason)}` : '';

  if (lock.verdict === 'alive') {
    findings.push({ level: 'stop', text: `Liveness verdict: alive${reason}. The holder is alive; do not force-unlock: a second apply would run beside it and can corrupt the state.` });
    failures.push('the holder is alive; do not force-unlock');
  } else if (lock.verdict === 'dead') {
    findings.push({ level: 'info', text: `Liveness verdict: dead${reason}.` });
  } else {
    const silent = formatAge((nowMs - Date.parse(lock.lastActivityAt)) / 1000);
    findings.push({ level: 'info', text: `Liveness verdict: unknown${reason}.` });
    findings.push({
      level: 'warn',
      text: `statelock cannot prove that the holder is dead: Terraform sends no heartbeat. The last request carrying this lock ID was ${silent} ago; an apply can wait at its approval prompt for hours.`,
    });
  }

  const whoHost = hostOf(who);
  if (scan.source === null) {
    findings.push({ level: 'warn', text: `Cannot list this machine's processes (no /proc, no ps): check yourself with pgrep -l 'terraform|tofu'.` });
  } else if (scan.processes.length === 0) {
    findings.push({ level: 'info', text: `No terraform or tofu process on this machine (${localHost}).` });
  } else {
    const list = scan.processes.map((p) => `\n    PID ${p.pid}  ${p.commandLine || p.name}`).join('');
    const count = `${scan.processes.length} terraform/tofu process${scan.processes.length === 1 ? '' : 'es'} running on this machine (${localHost})`;
    if (whoHost !== null && !sameHost(whoHost, localHost)) {
      findings.push({ level: 'info', text: `${count}; the lock was taken on ${whoHost}, another machine, so none of them holds it:${list}` });
    } else {
      const where = whoHost !== null ? `where the lock was taken (Who ${who})` : `and the lock's Who ("${who}") names no host`;
      findings.push({ level: 'stop', text: `${count}, ${where}: one of them may be the holder. Let it finish or stop it, then run recover again:${list}` });
      failures.push(`a terraform or tofu process is running on this machine (PID ${scan.processes.map((p) => p.pid).join(', ')}) and may hold the lock`);
    }
  }

  const ci = ciRunnerHint(lock.info);
  if (ci) findings.push({ level: 'warn', text: `Who "${who}" looks like a CI runner: check that the pipeline job has finished (${ci}).` });
  else findings.push({ level: 'info', text: `Who "${who}" does not look like a CI runner.` });

  return { findings, failure: failures.length ? failures.join('; ') : null };
}

/** The host of a lock's Who (`user@host`, as Terraform and OpenTofu write it), or null when it names none. */
export function hostOf(who: string): string | null {
  const at = who.lastIndexOf('@');
  const host = at >= 0 ? who.slice(at + 1).trim() : '';
  return host === '' ? null : host;
}

/** Whether two host names name the same machine: equal ignoring case, or with the same first label (`build-07` = `build-07.corp`). */
export function sameHost(a: string, b: string): boolean {
  const norm = (h: string) => h.trim().toLowerCase().replace(/\.$/, '');
  const [x, y] = [norm(a), norm(b)];
  return x === y || x.split('.')[0] === y.split('.')[0];
}

/** Which CI system a lock's Who/Info suggests, in words, or null. Hints, not proof: they only prompt a check. */
export function ciRunnerHint(info: Record<string, unknown>): string | null {
  const who = String(info.Who ?? '');
  const at = who.lastIndexOf('@');
  const user = (at >= 0 ? who.slice(0, at) : who).toLowerCase();
  const host = (at >= 0 ? who.slice(at + 1) : '').toLowerCase();
  const text = `${who} ${String(info.Info ?? '')}`.toLowerCase();
  if (host.startsWith('fv-az')) return 'host fv-az…: a GitHub-hosted Actions runner';
  if (user === 'runner') return 'user runner: a GitHub Actions runner';
  if (text.includes('gitlab-runner')) return 'gitlab-runner: a GitLab runner';
  if (host.startsWith('runner-')) return 'host runner-…: a GitLab runner';
  if (text.includes('buildkite-agent')) return 'buildkite-agent: a Buildkite agent';
  if (text.includes('jenkins')) return 'jenkins: a Jenkins agent';
  if (user === 'circleci') return 'user circleci: a CircleCI job';
  if (user === 'atlantis' || host.startsWith('atlantis')) return 'atlantis: an Atlantis server';
  return null;
}

/** The first of `names` found as an executable file on `pathEnv` (all of PATH for the first name, then the next name). */
export function findExecutable(names: readonly string[], pathEnv: string): string | null {
  const dirs = pathEnv.split(delimiter).filter((d) => d !== '');
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      try {
        if (!statSync(candidate).isFile()) continue;
        accessSync(candidate, constants.X_OK);
        return resolve(candidate);
      } catch {
        // not there, or not executable
      }
    }
  }
  return null;
}

/** Runs `file args` with this process's stdin, stdout and stderr, and resolves when it exits. */
function runInherited(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }> {
  return new Promise((done) => {
    // Ctrl+C reaches Terraform too, which stops gracefully and releases its lock: wait for it rather than die first.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    let settled = false;
    const finish = (r: { code: number | null; signal: NodeJS.Signals | null; error?: Error }) => {
      if (settled) return;
      settled = true;
      process.off('SIGINT', ignore);
      done(r);
    };
    const child = spawn(file, args, { stdio: 'inherit', env });
    child.once('error', (error) => finish({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => finish({ code, signal }));
  });
}
