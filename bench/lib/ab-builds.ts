import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { listeningUrl } from './processes.js';

/**
 * The server builds an A/B script compares (lock-ab.ts, write-ab.ts). A build is a directory holding
 * `bin/statelock.js` and its `dist/` (a copy of an older build with a `node_modules` link is enough);
 * `name=dir@VAR=value` sets an environment variable for that build's server.
 */
export interface Build {
  name: string;
  root: string;
  env: Record<string, string>;
}

export function parseBuilds(specs: readonly string[]): Build[] {
  const builds = specs.map((p) => {
    const [spec, ...envs] = p.split('@');
    const eq = spec!.indexOf('=');
    if (eq < 1) throw new Error(`a build is name=dir[@VAR=value…], got ${p}`);
    return { name: spec!.slice(0, eq), root: resolve(spec!.slice(eq + 1)), env: Object.fromEntries(envs.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])) };
  });
  if (builds.length === 0) throw new Error('name builds to compare: old=/path/to/build new=.');
  return builds;
}

export interface StartedBuild {
  url: string;
  proc: ChildProcess;
  dir: string;
}

/** `statelock serve` of a build on a fresh data dir (under `parent`, default the OS temp dir), with `args` added. */
export async function startBuild(b: Build, parent = tmpdir(), args: readonly string[] = []): Promise<StartedBuild> {
  const dir = mkdtempSync(join(parent, 'statelock-ab-'));
  const proc = spawn(process.execPath, [join(b.root, 'bin/statelock.js'), 'serve', '--port', '0', '--data', dir, '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...b.env },
  });
  const url = await listeningUrl(proc, `${b.name}: server`);
  return { url, proc, dir };
}

export async function stopBuild(s: StartedBuild, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  s.proc.kill(signal);
  await new Promise((r) => s.proc.once('exit', r));
  rmSync(s.dir, { recursive: true, force: true });
}

/** Builds take turns going first: the first build leads in even rounds, the last in odd ones. */
export function turnOrder<T>(builds: readonly T[], round: number): T[] {
  return round % 2 ? [...builds].reverse() : [...builds];
}
