import { ApiError, keyPath } from '../api-client.js';
import type { CliContext, Command } from '../command.js';
import { CliError, EXIT } from '../exit-codes.js';
import { lockInfoBlock, verdictText, type LockView } from '../lock-view.js';
import { formatAge, paint } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { ask } from '../prompt.js';
import { UsageError } from '../usage-error.js';

const USAGE = 'usage: statelock force-unlock <key> <LOCK_ID> [--force] [--even-if-alive]';

/** Terraform's force-unlock confirmation (internal/command/unlock.go), with statelock as the one removing the lock. */
export const FORCE_UNLOCK_PROMPT =
  'Do you really want to force-unlock?\n' +
  '  statelock will remove the lock on the remote state.\n' +
  '  This will allow local Terraform commands to modify this state, even though it\n' +
  "  may still be in use. Only 'yes' will be accepted to confirm.\n" +
  '\n' +
  '  Enter a value: ';

/**
 * `statelock force-unlock <key> <LOCK_ID> [--force]`: `terraform force-unlock LOCK_ID` for a key held on
 * this server. Shows the lock entry and its age, refuses an ID that is not the holder's (exit 3), asks
 * Terraform's question unless `--force` (anything but `yes` cancels: exit 1), then releases the lock
 * through the API, which checks the ID again atomically and audits `lock.force-unlock`.
 */
export const forceUnlockCommand: Command = async (args, ctx) => {
  // `-force` is how Terraform spells it; accept the habit.
  const { values, positionals } = parseOptions({ args: args.map((a) => (a === '-force' ? '--force' : a)), allowPositionals: true, options: { force: { type: 'boolean' }, 'even-if-alive': { type: 'boolean' } } });
  if (positionals.length !== 2 || positionals.some((p) => p === '')) throw new UsageError(USAGE);
  const [key, id] = positionals as [string, string];

  const lock = await readLock(ctx, key, 'force-unlock');
  ctx.io.out(lockEntry(ctx, lock));
  const holder = String(lock.info.ID ?? '');
  if (holder !== id) throw mismatch(lock.info, `LOCK_ID "${id}" is not the ID of the lock held on ${key}: the holder is ID "${holder}". Nothing was unlocked.`);
  const evenIfAlive = values['even-if-alive'] === true;
  if (lock.verdict === 'alive') {
    const why = `the holder is alive (${String(lock.evidence.reason ?? 'its session is current')}): force-unlocking lets a second apply run beside it and can corrupt the state`;
    if (!evenIfAlive) throw new CliError(`refusing to force-unlock ${key}: ${why}. Wait for it or stop it; --even-if-alive overrides (audited).`, EXIT.LOCKED);
    ctx.io.err(`${paint(ctx.io, 'red', 'Warning:')} ${why}. --even-if-alive given: the override is recorded in the audit trail.\n`);
  }
  ctx.io.out('\n');

  if (!values.force && !(await confirmForceUnlock(ctx))) {
    ctx.io.err('force-unlock cancelled.\n');
    return EXIT.ERROR;
  }
  await releaseLock(ctx, key, id, (current) => `the lock on ${key} changed holder: it is now held by ID "${current}", not "${id}". Nothing was unlocked.`, evenIfAlive);
  printUnlocked(ctx);
  return EXIT.OK;
};

/** The lock on `key`; no lock is a {@link CliError} with exit 4 that says there is nothing to `what`. */
export async function readLock(ctx: CliContext, key: string, what: string): Promise<LockView> {
  try {
    return await ctx.api.getJson<LockView>(`locks/${keyPath(key)}`);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'LOCK_NOT_FOUND') throw new CliError(`no lock is held on ${key}: there is nothing to ${what}.`, EXIT.NOT_FOUND);
    throw err;
  }
}

/** The lock as the operator needs it before unlocking: Terraform's Lock Info block, its age, its last activity, the verdict. */
export function lockEntry(ctx: CliContext, lock: LockView, indent = ''): string {
  const now = ctx.now();
  const ago = (iso: string) => `${formatAge((now - Date.parse(iso)) / 1000)} ago`;
  const created = typeof lock.info.Created === 'string' && !Number.isNaN(Date.parse(lock.info.Created)) ? `${lock.info.Created} (${ago(lock.info.Created)})` : String(lock.info.Created ?? '');
  const lines = [
    paint(ctx.io, 'bold', `Lock on ${lock.key}:`),
    ...lockInfoBlock({ ...lock.info, Created: created }).trimEnd().split('\n'),
    '',
    `  Age:           ${formatAge(lock.ageSeconds)} (acquired ${lock.acquiredAt})`,
    `  Last activity: ${ago(lock.lastActivityAt)} (${lock.lastActivityAt})`,
    `  Verdict:       ${verdictText(ctx.io, lock.verdict)}${lock.evidence.reason ? ` — ${String(lock.evidence.reason)}` : ''}`,
  ];
  return lines.map((l) => (l ? indent + l : l)).join('\n') + '\n';
}

/**
 * Asks Terraform's force-unlock question on stderr and reads one line from stdin. Only `yes` confirms;
 * any other answer, or end of input, declines.
 */
export async function confirmForceUnlock(ctx: CliContext): Promise<boolean> {
  const [question, ...rest] = FORCE_UNLOCK_PROMPT.split('\n');
  const answer = await ask([paint(ctx.io, 'bold', question!), ...rest].join('\n'), ctx.stdin, process.stderr);
  // A piped answer is not echoed: end the prompt's line so what follows starts on its own.
  if (!ctx.stdin.isTTY) ctx.io.err('\n');
  return answer === 'yes';
}

/**
 * `DELETE /api/v1/locks/<key>?id=<id>`: the server releases the lock only if `id` still holds it.
 * A different holder becomes exit 3 with `changed(holderId)` and the holder's Lock Info; a lock
 * released meanwhile becomes exit 4.
 */
export async function releaseLock(ctx: CliContext, key: string, id: string, changed: (holderId: string) => string, evenIfAlive = false): Promise<void> {
  try {
    await ctx.api.sendJson('DELETE', `locks/${keyPath(key)}`, { id, ...(evenIfAlive ? { evenIfAlive: 'true' } : {}) });
  } catch (err) {
    if (err instanceof ApiError && err.code === 'LOCK_ID_MISMATCH') {
      const holder = err.holder ?? {};
      throw mismatch(holder, changed(String(holder.ID ?? 'unknown')));
    }
    if (err instanceof ApiError && err.code === 'LOCK_NOT_FOUND') {
      throw new CliError(`the lock on ${key} was released by someone else meanwhile: nothing was unlocked. Its holder may have been alive: check before you run anything.`, EXIT.NOT_FOUND);
    }
    throw err;
  }
}

/** Terraform's success message. */
export function printUnlocked(ctx: CliContext, indent = ''): void {
  ctx.io.out(
    [
      paint(ctx.io, 'green', 'statelock state has been successfully unlocked!'),
      '',
      'The state has been unlocked, and Terraform commands should now be able to',
      'obtain a new lock on the remote state.',
    ]
      .map((l) => (l ? indent + l : l))
      .join('\n') + '\n',
  );
}

/** A refusal because `holder`, not the ID given, holds the lock: exit 3, with the holder's Lock Info. */
function mismatch(holder: Record<string, unknown>, message: string): CliError {
  return new CliError(`${message}\n\nLock Info:\n${lockInfoBlock(holder).trimEnd()}`, EXIT.LOCKED);
}
