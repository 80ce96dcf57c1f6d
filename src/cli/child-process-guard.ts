import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/**
 * How `statelock run` makes sure its child never outlives it: on Linux the child is started through
 * `setpriv --pdeathsig KILL -- <cmd…>` (util-linux), which asks the kernel to SIGKILL it the moment the
 * wrapper dies, however the wrapper dies (SIGKILL, OOM killer, crash). setpriv execs the command in place,
 * so the child's pid is the command's pid. Without that guarantee an expired lease would not prove a dead
 * holder: the wrapper could be gone while Terraform still writes.
 */
export interface GuardedCommand {
  file: string;
  args: string[];
  /** Whether the kernel kills the child when the wrapper dies. */
  guarded: boolean;
  /** Why it is not guarded (printed as a warning), when it is not. */
  warning?: string;
}

/** The absolute path of `name` on `PATH` (an executable regular file), like `which`; null when there is none. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = name.includes('/') ? [name] : (env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return isAbsolute(file) ? file : join(process.cwd(), file);
    } catch {
      continue;
    }
  }
  return null;
}

let setprivCache: string | null | undefined;

/** setpriv with `--pdeathsig` (util-linux ≥ 2.33), looked up once per process; null when missing or too old. */
export function setprivWithPdeathsig(env: NodeJS.ProcessEnv = process.env): string | null {
  if (setprivCache !== undefined) return setprivCache;
  setprivCache = null;
  if (process.platform !== 'linux') return null;
  const path = findExecutable('setpriv', env);
  if (!path) return null;
  try {
    // An old setpriv without --pdeathsig would fail as the "child" with a confusing exit code: check its help once.
    const help = execFileSync(path, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    if (help.includes('--pdeathsig')) setprivCache = path;
  } catch {
    // no usable setpriv
  }
  return setprivCache;
}

/** What to spawn to run `command` so that it dies with the wrapper where the platform allows it. */
export function guardCommand(command: string[], env: NodeJS.ProcessEnv = process.env): GuardedCommand {
  const [file, ...args] = command as [string, ...string[]];
  const setpriv = setprivWithPdeathsig(env);
  if (setpriv) return { file: setpriv, args: ['--pdeathsig', 'KILL', '--', file, ...args], guarded: true };
  const why =
    process.platform === 'linux'
      ? 'setpriv (util-linux ≥ 2.33) with --pdeathsig was not found on PATH'
      : `${process.platform} has no parent-death signal`;
  return {
    file,
    args,
    guarded: false,
    warning: `${why}: if statelock itself is killed, ${file} keeps running without a heartbeat, and its lock will be reported dead while it may still write (fencing then refuses those writes once the lock is taken over)`,
  };
}

/**
 * Whether this process is in the foreground process group of its controlling terminal: then a Ctrl-C
 * (SIGINT) typed there reached every process of the group — the child included, as it is not detached —
 * and forwarding it would deliver it twice (Terraform exits at once on a second interrupt, without
 * finishing its state write). Linux: /proc/self/stat; elsewhere `ps`; false when it cannot tell.
 */
export function inTerminalForeground(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // pid (comm) state ppid pgrp session tty_nr tpgid …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    const tpgid = Number(fields[5]);
    return tpgid > 0 && tpgid === pgrp;
  } catch {
    // not Linux
  }
  try {
    const out = execFileSync('ps', ['-o', 'pgid=', '-o', 'tpgid=', '-p', String(process.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 });
    const [pgid, tpgid] = out.trim().split(/\s+/).map(Number);
    return tpgid !== undefined && tpgid > 0 && tpgid === pgid;
  } catch {
    return false;
  }
}
