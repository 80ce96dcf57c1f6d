import { spawn } from 'node:child_process';
import { STATELOCK_BIN } from './server-process.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built `statelock` binary as a subprocess, as a user would: `args` after the binary,
 * `input` written to its stdin (then closed; a prompt answered on stdin), stdout not a TTY.
 */
export function runCli(args: string[], opts: { input?: string | Buffer; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STATELOCK_BIN, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`statelock ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 20_000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // the command may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * Runs the CLI with stdin kept open; once the prompt has been printed on stderr, runs `onPrompt` and then
 * answers `answer`. Waits for events only (the timer is a failsafe turning a hang into a failure).
 */
export function runAnswering(args: string[], answer: string, onPrompt: () => Promise<void>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STATELOCK_BIN, ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let prompted = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no answer in 20 s; stdout: ${stdout}; stderr: ${stderr}`));
    }, 20_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (prompted || !stderr.includes('Enter a value: ')) return;
      prompted = true;
      onPrompt().then(
        () => child.stdin.end(answer),
        (err: unknown) => {
          child.kill('SIGKILL');
          reject(err as Error);
        },
      );
    });
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!prompted) return reject(new Error(`exited ${code} without prompting; stdout: ${stdout}; stderr: ${stderr}`));
      resolve({ code, stdout, stderr });
    });
  });
}
