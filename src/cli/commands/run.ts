import { spawn } from 'node:child_process';
import { constants as osConstants, hostname, userInfo } from 'node:os';
import { basename } from 'node:path';
import { parseDuration } from '../../shared/duration.js';
import { ApiError, keyPath } from '../api-client.js';
import { ciContext, describeCi } from '../ci-context.js';
import { findExecutable, guardCommand, inTerminalForeground } from '../child-process-guard.js';
import type { CliContext, Command } from '../command.js';
import { CliError, EXIT } from '../exit-codes.js';
import type { LockView } from '../lock-view.js';
import { formatAge, paint } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';

const USAGE = 'usage: statelock run [--key K] [--ttl D] [--lock-timeout D] -- <command> [args…]';

/** The shortest lease: a heartbeat every ttl/3 must still leave room for one slow request. */
const MIN_TTL_SECONDS = 2;
/** The longest lease the server grants. */
const MAX_TTL_SECONDS = 86_400;
/** The longest a server holds a LOCK in line (`?wait=`). */
const MAX_LOCK_WAIT_SECONDS = 3600;
/** How often the lock is looked at while the command waits for it. */
const LOCK_POLL_MS = 500;
/** Signals a terminal sends to its whole foreground process group (Ctrl-C, hang-up). */
const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGINT', 'SIGHUP']);
const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** `POST /api/v1/sessions` → 201. */
interface SessionJson {
  id: string;
  key: string;
  ttlSeconds: number;
  expiresAt: string;
  createdAt: string;
}

/** A lock as the API shows it once sessions exist: bound to a session, with its queue length. */
type SessionLockView = LockView & { sessionId?: string | null; waiters?: number };

/** `POST /api/v1/sessions/<id>/end` → 200. */
interface EndJson {
  id: string;
  released: SessionLockView | null;
}

interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * `statelock run [--key K] [--ttl D] [--lock-timeout D] -- terraform apply …`: runs the command under a
 * session whose heartbeat proves that the lock holder is alive.
 *
 * 1. Creates a session for the key (holder: host, pid, command line; the CI job from ci-context.ts).
 * 2. Starts the command with `TF_HTTP_ADDRESS`, `TF_HTTP_LOCK_ADDRESS`, `TF_HTTP_UNLOCK_ADDRESS` pointing at
 *    `<server>/state/<key>?session=<id>` (the lock address with `&wait=<lock-timeout>`), so the lock Terraform
 *    takes is bound to the session. On Linux through `setpriv --pdeathsig KILL`: the command dies with the
 *    wrapper, so an expired lease means a dead holder.
 * 3. Renews the lease every ttl/3 while the command runs; forwards SIGINT/SIGTERM/SIGHUP to it (unless a
 *    terminal already delivered it to the whole foreground group: Terraform treats a second interrupt as
 *    "exit immediately").
 * 4. When the command exits, ends the session: the server releases a lock the command still held (audited
 *    with the reason) and the wrapper says what to do next. Exits with the command's exit code, or 128+N
 *    when it was killed by signal N.
 */
export const runCommand: Command = async (args, ctx) => {
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? [] : args.slice(dash + 1);
  const { values } = parseOptions({ args: own, options: { key: { type: 'string' }, ttl: { type: 'string' }, 'lock-timeout': { type: 'string' } } });
  if (command.length === 0 || command[0] === '') throw new UsageError(`${USAGE}\nThe command to run goes after --, e.g. statelock run -- terraform apply`);
  const ttl = durationOption(values.ttl ?? '30s', '--ttl');
  if (ttl < MIN_TTL_SECONDS || ttl > MAX_TTL_SECONDS) throw new UsageError(`--ttl must be between ${MIN_TTL_SECONDS}s and 24h (a heartbeat is sent every ttl/3)`);
  const lockTimeout = values['lock-timeout'] === undefined ? undefined : durationOption(values['lock-timeout'], '--lock-timeout');
  if (lockTimeout !== undefined && lockTimeout > MAX_LOCK_WAIT_SECONDS) throw new UsageError('--lock-timeout must be at most 1h (the longest a statelock server holds a LOCK in line)');
  const key = values.key ?? keyFromAddress(ctx.env.TF_HTTP_ADDRESS, ctx.api.server);
  if (key === '') throw new UsageError('--key must not be empty');

  // A closed stderr (a CI log pipe gone) must not crash the wrapper: its death would take the command with it.
  if (process.stderr.listenerCount('error') === 0) process.stderr.on('error', () => undefined);
  const name = basename(command[0]!);
  const session = await createSession(ctx, key, ttl, command);
  const base = `${ctx.api.server}/state/${keyPath(key)}?session=${encodeURIComponent(session.id)}`;
  const childEnv: NodeJS.ProcessEnv = {
    ...ctx.env,
    TF_HTTP_ADDRESS: base,
    TF_HTTP_LOCK_ADDRESS: lockTimeout === undefined ? base : `${base}&wait=${lockTimeout}s`,
    TF_HTTP_UNLOCK_ADDRESS: base,
    STATELOCK_SESSION: session.id,
    // Terraform's http backend sends credentials only when a username is set: hand it the CLI's token.
    ...(ctx.api.token && !ctx.env.TF_HTTP_PASSWORD ? { TF_HTTP_USERNAME: ctx.env.TF_HTTP_USERNAME || 'statelock', TF_HTTP_PASSWORD: ctx.api.token } : {}),
  };
  const heartbeatMs = Math.max(500, Math.floor(((session.ttlSeconds || ttl) * 1000) / 3));
  ctx.io.err(paint(ctx.io, 'dim', `statelock: session ${session.id} on ${key}: lease ${session.ttlSeconds || ttl}s, heartbeat every ${(heartbeatMs / 1000).toFixed(1)}s\n`));

  if (findExecutable(command[0]!, childEnv) === null) {
    ctx.io.err(`statelock: ${command[0]}: command not found (or not executable)\n`);
    await endSession(ctx, session, { reason: `${name} could not be started: command not found`, exitCode: 127, signal: null });
    return 127;
  }
  const guarded = guardCommand(command, childEnv);
  if (!guarded.guarded) ctx.io.err(`${paint(ctx.io, 'yellow', 'Warning:')} ${guarded.warning}.\n`);

  const heartbeat = startHeartbeat(ctx, session, heartbeatMs);
  const child = spawn(guarded.file, guarded.args, { stdio: 'inherit', env: childEnv });
  const exited = new Promise<ChildExit | { error: NodeJS.ErrnoException }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) resolve({ error }); // could not be started; otherwise a failed kill(), harmless
    });
  });
  const watcher = watchLock(ctx, key, session, lockTimeout !== undefined);

  const onSignal = (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // A Ctrl-C typed in the terminal reached the child too (same foreground process group): do not send it twice.
    if (TERMINAL_SIGNALS.has(signal) && inTerminalForeground()) return;
    try {
      child.kill(signal);
      ctx.io.err(`statelock: ${signal} forwarded to ${name} (pid ${child.pid}); waiting for it to exit\n`);
    } catch {
      // exited meanwhile
    }
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  try {
    const result = await exited;
    heartbeat.stop();
    watcher.stop();
    if ('error' in result) {
      const code = result.error.code === 'EACCES' ? 126 : 127;
      ctx.io.err(`statelock: cannot run ${command[0]}: ${result.error.message}\n`);
      await endSession(ctx, session, { reason: `${name} could not be started: ${result.error.code ?? result.error.message}`, exitCode: code, signal: null });
      return code;
    }
    const reason = result.signal ? `${name} was killed by ${result.signal}` : `${name} exited with code ${result.code}`;
    const ended = await endSession(ctx, session, { reason, exitCode: result.code, signal: result.signal });
    if (ended?.released) printReleased(ctx, key, name, reason, ended.released);
    return result.signal ? 128 + (osConstants.signals[result.signal] ?? 0) : (result.code ?? EXIT.ERROR);
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
  }
};

function durationOption(text: string, option: string): number {
  const seconds = parseDuration(text);
  if (seconds === null) throw new UsageError(`${option} must be a duration such as 30s, 2m or 1h (got "${text}")`);
  return seconds;
}

/**
 * The state key of `TF_HTTP_ADDRESS` when it is `<server>/state/<key>` on this server (its query ignored).
 * A usage error when there is no address, or when it points elsewhere.
 */
export function keyFromAddress(address: string | undefined, server: string): string {
  if (address === undefined || address === '') throw new UsageError(`no state key: pass --key K, or set TF_HTTP_ADDRESS to ${server}/state/<key>\n${USAGE}`);
  const path = address.replace(/[?#].*$/s, '');
  const prefix = `${server}/state/`;
  if (!path.startsWith(prefix) || path.length === prefix.length) {
    throw new UsageError(`TF_HTTP_ADDRESS (${address}) is not ${prefix}<key> on this statelock server: pass --key K (and --server URL)`);
  }
  try {
    return path.slice(prefix.length).split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new UsageError(`TF_HTTP_ADDRESS (${address}) has an invalid percent-encoding in its key: pass --key K`);
  }
}

async function createSession(ctx: CliContext, key: string, ttlSeconds: number, command: string[]): Promise<SessionJson> {
  const body = { key, ttlSeconds, holder: { host: hostname(), pid: process.pid, command: command.join(' ') }, ci: ciContext(ctx.env) };
  try {
    const res = await ctx.api.call('POST', '/api/v1/sessions', { body: JSON.stringify(body) });
    return (await res.json()) as SessionJson;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'NOT_FOUND') throw new CliError(`the statelock server at ${ctx.api.server} has no sessions API (it may be older than this CLI): ${err.message}`);
    if (err instanceof ApiError) throw new CliError(`could not start a session for ${key}: ${err.message}`, err.status === 400 ? EXIT.USAGE : EXIT.ERROR);
    throw err;
  }
}

/**
 * Renews the lease every `intervalMs` until stopped. A failure is reported once per streak of failures and
 * retried at the same pace; a session the server ended or forgot stops the heartbeat (renewing it cannot
 * succeed) with a warning saying what that means for the lock.
 */
function startHeartbeat(ctx: CliContext, session: SessionJson, intervalMs: number): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let failingSince: number | null = null;
  let generation = 0;
  const warn = (text: string) => ctx.io.err(`${paint(ctx.io, 'yellow', 'Warning:')} ${text}\n`);
  const beat = async () => {
    const mine = ++generation;
    let timeout: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ctx.api.call('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/heartbeat`).then((r) => r.body?.cancel()),
        new Promise((_, reject) => (timeout = setTimeout(() => reject(new Error(`no answer in ${Math.round(intervalMs)} ms`)), intervalMs))),
      ]);
      if (stopped || mine !== generation) return;
      if (failingSince !== null) ctx.io.err(`statelock: heartbeat restored after ${formatAge((Date.now() - failingSince) / 1000)}\n`);
      failingSince = null;
    } catch (err) {
      if (stopped || mine !== generation) return;
      if (err instanceof ApiError && (err.code === 'SESSION_ENDED' || err.code === 'SESSION_NOT_FOUND')) {
        warn(
          `the server ${err.code === 'SESSION_ENDED' ? 'ended' : 'no longer knows'} session ${session.id} (${err.message}): its lock was released or taken over. ` +
            'The command keeps running, but its writes under the old lock will be refused (LOCK_FENCED).',
        );
        stopped = true;
        return;
      }
      if (failingSince === null) {
        failingSince = Date.now();
        warn(`heartbeat for session ${session.id} failed (${(err as Error).message}); retrying every ${(intervalMs / 1000).toFixed(1)}s. If it keeps failing the lease runs out and the lock is reported dead.`);
      }
    } finally {
      clearTimeout(timeout);
    }
    if (!stopped) timer = setTimeout(() => void beat(), intervalMs);
  };
  timer = setTimeout(() => void beat(), intervalMs);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * Looks at the lock on `key` every {@link LOCK_POLL_MS} while the command runs, until it is bound to this
 * session. With `--lock-timeout` the command may wait behind another holder: say who, once per holder.
 * Without it, a lock taken since the session started by this user and host but without the session means
 * Terraform ignored TF_HTTP_* (the backend block sets the addresses): warn once.
 */
function watchLock(ctx: CliContext, key: string, session: SessionJson, waiting: boolean): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let announced = '';
  let warnedUnbound = false;
  const who = terraformWho();
  const since = Date.parse(session.createdAt);
  const poll = async () => {
    try {
      const lock = await ctx.api.getJson<SessionLockView>(`locks/${keyPath(key)}`);
      if (stopped) return;
      if (lock.sessionId === session.id) return void (stopped = true);
      const holderId = String(lock.info.ID ?? '');
      if (waiting && holderId !== announced) {
        announced = holderId;
        const ci = describeCi(lock.evidence.ci as Record<string, unknown> | undefined);
        ctx.io.err(`statelock: waiting behind ${String(lock.info.Who ?? 'an unknown holder')} (${String(lock.info.Operation ?? 'unknown operation')}, ${formatAge(lock.ageSeconds)})${ci ? ` — ${ci}` : ''}\n`);
      } else if (!waiting && !warnedUnbound && !lock.sessionId && lock.info.Who === who && Date.parse(lock.acquiredAt) >= since) {
        warnedUnbound = true;
        ctx.io.err(
          `${paint(ctx.io, 'yellow', 'Warning:')} the lock on ${key} (ID ${holderId}) was taken by ${who} without this session. ` +
            'If that is this command, it ignored TF_HTTP_ADDRESS/TF_HTTP_LOCK_ADDRESS: the backend block or -backend-config sets address, lock_address or unlock_address. ' +
            'Leave them unset (backend "http" {}) so statelock can prove the holder alive and release the lock if it dies.\n',
        );
      }
    } catch {
      // no lock yet (LOCK_NOT_FOUND), or the server is briefly unreachable: look again
    }
    if (!stopped) timer = setTimeout(() => void poll(), LOCK_POLL_MS);
  };
  timer = setTimeout(() => void poll(), LOCK_POLL_MS);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** LockInfo.Who as Terraform fills it: `<user>@<hostname>`. */
function terraformWho(): string {
  let user = '';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry
  }
  return `${user}@${hostname()}`;
}

/**
 * Ends the session (the server releases a lock it still holds, in the same transaction, and audits why).
 * Retries a network failure twice; when it cannot be ended, says what happens instead.
 */
async function endSession(ctx: CliContext, session: SessionJson, body: { reason: string; exitCode: number | null; signal: NodeJS.Signals | null }): Promise<EndJson | null> {
  let last: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const res = await ctx.api.call('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/end`, { body: JSON.stringify(body) });
      return (await res.json()) as EndJson;
    } catch (err) {
      last = err;
      if (err instanceof ApiError && err.status < 500) break;
      await new Promise((r) => setTimeout(r, 300 * attempt));
    }
  }
  ctx.io.err(
    `${paint(ctx.io, 'yellow', 'Warning:')} could not end session ${session.id} (${(last as Error).message}). ` +
      `Its lease runs out within ${session.ttlSeconds}s; a lock still bound to it is then reported dead (statelock locks) and can be force-unlocked.\n`,
  );
  return null;
}

function printReleased(ctx: CliContext, key: string, name: string, reason: string, released: SessionLockView): void {
  const tf = name === 'tofu' ? 'tofu' : 'terraform';
  const id = String(released.info?.ID ?? '');
  ctx.io.err(
    [
      '',
      `${paint(ctx.io, 'red', 'statelock:')} ${reason} while holding the lock on ${key}${id ? ` (ID ${id})` : ''}.`,
      `statelock released the lock (audited as lock.release: "${reason}").`,
      'The state may be partial: resources created or changed just before the exit may be missing from it.',
      'Next:',
      `  ${tf} apply -refresh-only    # sync the state with what exists; review and accept`,
      `  ${tf} plan                   # then see what is still to be applied`,
      '',
    ].join('\n'),
  );
}
