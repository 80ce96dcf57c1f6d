import { Writable } from 'node:stream';
import { ApiError, keyPath } from '../api-client.js';
import type { CliContext, Command } from '../command.js';
import { parseDuration } from '../../shared/duration.js';
import { CliError, EXIT } from '../exit-codes.js';
import type { LockView } from '../lock-view.js';
import { formatAge, paint, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { ask } from '../prompt.js';
import { UsageError } from '../usage-error.js';

const USAGE = 'usage: statelock prune --prefix P [--older-than 7d] [--dry-run] [--yes]';

/** A state as `GET /api/v1/states` lists it (representations.ts stateSummaryJson). */
interface StateSummary {
  key: string;
  serial: number;
  size: number;
  updatedAt: string;
  locked: boolean;
}

interface Skipped {
  key: string;
  holder: Record<string, unknown> | undefined;
}

/**
 * `statelock prune --prefix P [--older-than 7d] [--dry-run] [--yes]`: the lesson's post-merge cleanup
 * (`aws s3 rm …/pr-N/terraform.tfstate`) as a soft delete. Lists what it will remove, asks, then
 * deletes each state through the API; locked states are skipped and named, never forced. Every
 * version stays readable, so a mistake is undone with `statelock state restore`.
 */
export const pruneCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({
    args,
    allowPositionals: true,
    options: { prefix: { type: 'string' }, 'older-than': { type: 'string' }, 'dry-run': { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (the states to remove are chosen with --prefix)\n${USAGE}`);
  const prefix = values.prefix;
  if (prefix === undefined) throw new UsageError(`prune needs --prefix, e.g. --prefix lesson-17/pr-42/ (it never removes every state)\n${USAGE}`);
  if (prefix === '') throw new UsageError('--prefix must not be empty: prune never removes every state');
  const olderThanText = values['older-than'];
  const olderThan = olderThanText === undefined ? 0 : parseDuration(olderThanText);
  if (olderThan === null) throw new UsageError(`--older-than must be a whole number and a unit s, m, h, d or w (90m, 36h, 7d, 2w), not "${olderThanText}"`);
  const dryRun = values['dry-run'] === true;
  const yes = values.yes === true;
  if (!dryRun && !yes && !ctx.stdin.isTTY) {
    throw new UsageError('prune asks for confirmation but stdin is not a terminal: pass --yes to remove without asking (or --dry-run to only list); nothing removed');
  }

  const [states, locks] = await Promise.all([ctx.api.all<StateSummary>('states', { prefix }), ctx.api.all<LockView>('locks', { prefix })]);
  const holders = new Map(locks.map((l) => [l.key, l.info]));
  const now = ctx.now();
  const ageOf = (s: StateSummary) => Math.max(0, (now - Date.parse(s.updatedAt)) / 1000);
  const matched = states.filter((s) => olderThanText === undefined || ageOf(s) >= olderThan);
  const locked: Skipped[] = matched.filter((s) => s.locked || holders.has(s.key)).map((s) => ({ key: s.key, holder: holders.get(s.key) }));
  const candidates = matched.filter((s) => !s.locked && !holders.has(s.key));
  const scope = `under "${prefix}"${olderThanText !== undefined ? ` last written ${olderThanText} or more ago` : ''}`;

  const newer = states.length - matched.length;
  const kept = newer > 0 ? ` (${count(newer)} under "${prefix}" written less than ${olderThanText} ago kept)` : '';
  if (matched.length === 0) {
    ctx.io.out(`No states ${scope}: nothing to remove${kept}.\n`);
    return EXIT.OK;
  }
  if (candidates.length > 0) {
    ctx.io.out(`${dryRun ? 'Would remove' : 'To remove'}: ${count(candidates.length)} ${scope}${kept}\n\n`);
    ctx.io.out(table(ctx.io, ['KEY', 'SERIAL', 'LAST WRITE'], candidates.map((s) => [s.key, String(s.serial), `${formatAge(ageOf(s))} ago`])));
  }
  if (locked.length > 0) ctx.io.out(`${candidates.length > 0 ? '\n' : ''}${skippedText(ctx, locked, 'locked')}`);
  if (candidates.length === 0) {
    ctx.io.out(`\nNothing to remove: every state ${scope} is locked.\n`);
    return EXIT.OK;
  }
  if (dryRun) {
    ctx.io.out(`\nDry run: nothing removed.\n`);
    return EXIT.OK;
  }
  if (!yes) {
    const answer = await ask(`\nRemove ${count(candidates.length)}? Only 'yes' will be accepted to confirm.\n  Enter a value: `, ctx.stdin, errStream(ctx));
    if (answer !== 'yes') throw new CliError('prune cancelled: nothing removed');
  }

  ctx.io.out('\n');
  const removed: StateSummary[] = [];
  const raced: Skipped[] = [];
  const failed: string[] = [];
  for (const s of candidates) {
    try {
      await ctx.api.sendJson('DELETE', `states/${keyPath(s.key)}`);
      removed.push(s);
      ctx.io.out(`Removed ${s.key} (serial ${s.serial})\n`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 423) raced.push({ key: s.key, holder: err.holder });
      else if (err instanceof ApiError && err.status === 404) ctx.io.out(`Already gone: ${s.key} (deleted by someone else since it was listed)\n`);
      else failed.push(`${s.key}: ${(err as Error).message}`);
    }
  }
  if (raced.length > 0) ctx.io.out(`\n${skippedText(ctx, raced, 'locked since it was listed')}`);
  for (const f of failed) ctx.io.err(`statelock: could not remove ${f}\n`);

  const skippedCount = locked.length + raced.length;
  ctx.io.out(`\nRemoved ${count(removed.length)}${skippedCount > 0 ? `; skipped ${skippedCount} locked` : ''}${failed.length > 0 ? `; ${failed.length} failed` : ''}.\n`);
  if (removed.length > 0) {
    const example = removed[0]!;
    ctx.io.out(
      `This was a soft delete: every version is kept, and a removed state comes back with\n` +
        `  statelock state restore <key> <serial>      e.g. statelock state restore ${shellWord(example.key)} ${example.serial}\n` +
        `Its versions are listed by GET /api/v1/versions/<key> (statelock state history <key>).\n`,
    );
  }
  return failed.length > 0 ? EXIT.ERROR : EXIT.OK;
};

/** `s` as one shell word: unchanged when it is plain, single-quoted otherwise. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function count(n: number): string {
  return `${n} state${n === 1 ? '' : 's'}`;
}

/** The skipped states, each with its holder's Who and ID, as force-unlock would need them. */
function skippedText(ctx: CliContext, skipped: Skipped[], why: string): string {
  const rows = skipped.map((s) => [s.key, String(s.holder?.Who ?? 'unknown'), String(s.holder?.ID ?? 'unknown'), String(s.holder?.Operation ?? '')]);
  return `${paint(ctx.io, 'yellow', `Skipped (${why}):`)} ${count(skipped.length)}, not removed\n` + indent(table(ctx.io, ['KEY', 'WHO', 'ID', 'OPERATION'], rows));
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}

/** The prompt goes where the command's other messages to people go. */
function errStream(ctx: CliContext): Writable {
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      ctx.io.err(chunk.toString());
      done();
    },
  });
}
