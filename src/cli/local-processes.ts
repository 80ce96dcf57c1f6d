import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** The process names that can hold a Terraform state lock (the lesson's `pgrep terraform`, plus OpenTofu). */
export const TERRAFORM_NAMES: readonly string[] = ['terraform', 'tofu'];

export interface LocalProcess {
  pid: number;
  /** The kernel's process name (`/proc/<pid>/comm`; on systems without /proc, the executable's base name). */
  name: string;
  /** The command line, arguments joined by spaces ('' when it cannot be read). */
  commandLine: string;
}

export interface ProcessScan {
  /** How the processes were listed: `/proc`, `ps`, or null when neither worked (then `processes` is empty). */
  source: '/proc' | 'ps' | null;
  processes: LocalProcess[];
}

/**
 * Lists this machine's `terraform` and `tofu` processes (exact names: `terraform-provider-aws` or
 * `terraform-ls` are not Terraform holding a lock). A process matches when its kernel name is one of
 * the names — a shell script run through its `#!` line keeps the script's name there — or when the base
 * name of its argv[0] is. Reads /proc on Linux, falls back to `ps` elsewhere; the calling process itself
 * is left out. Never throws: a process that exits while being read is skipped, and when neither source
 * works the scan says so (`source: null`) rather than claiming there is nothing.
 */
export function findTerraformProcesses(names: readonly string[] = TERRAFORM_NAMES): ProcessScan {
  const fromProc = scanProc(names);
  if (fromProc) return { source: '/proc', processes: fromProc };
  const fromPs = scanPs(names);
  if (fromPs) return { source: 'ps', processes: fromPs };
  return { source: null, processes: [] };
}

function scanProc(names: readonly string[]): LocalProcess[] | null {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
    readFileSync(`/proc/${process.pid}/comm`, 'utf8'); // /proc exists but is not procfs (e.g. a directory on macOS)?
  } catch {
    return null;
  }
  const found: LocalProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let comm: string;
    let argv: string[];
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').replace(/\n$/, '');
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // exited meanwhile, or hidden from us
    }
    if (argv.at(-1) === '') argv.pop();
    const argv0 = argv[0] ? basename(argv[0]) : '';
    if (names.includes(comm) || names.includes(argv0)) found.push({ pid, name: comm, commandLine: argv.join(' ') });
  }
  return found.sort((a, b) => a.pid - b.pid);
}

function scanPs(names: readonly string[]): LocalProcess[] | null {
  let listing: string;
  try {
    // `comm` is the executable (a full path on macOS); `args` the command line. Two calls keep parsing trivial.
    listing = execFileSync('ps', ['-A', '-o', 'pid=', '-o', 'comm='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  const found: LocalProcess[] = [];
  for (const line of listing.split('\n')) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const name = basename(m[2]!.trim());
    if (pid === process.pid || !names.includes(name)) continue;
    let commandLine = '';
    try {
      commandLine = execFileSync('ps', ['-p', String(pid), '-o', 'args='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      continue; // exited meanwhile
    }
    found.push({ pid, name, commandLine });
  }
  return found.sort((a, b) => a.pid - b.pid);
}
