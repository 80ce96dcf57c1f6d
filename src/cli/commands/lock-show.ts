import { keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { heldByCi, lockInfoBlock, lockMeaning, verdictText, type LockView } from '../lock-view.js';
import { formatAge, paint, printJson } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';

/** `statelock lock show <key> [--json]`: the whole lock entry the lesson reads with get-item, its age, and what it means. */
export const lockShowCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('usage: statelock lock show <key> [--json]');
  const lock = await ctx.api.getJson<LockView>(`locks/${keyPath(positionals[0]!)}`);
  if (values.json) {
    printJson(ctx.io, lock);
    return 0;
  }
  const now = ctx.now();
  const ago = (iso: string) => `${iso} (${formatAge((now - Date.parse(iso)) / 1000)} ago)`;
  const created = typeof lock.info.Created === 'string' && !Number.isNaN(Date.parse(lock.info.Created)) ? ago(lock.info.Created) : String(lock.info.Created ?? '');
  ctx.io.out(
    `${paint(ctx.io, 'bold', `Lock on ${lock.key}`)}\n` +
      lockInfoBlock({ ...lock.info, Created: created }) +
      `\n${paint(ctx.io, 'bold', 'Seen by the server')}\n` +
      `  Acquired:      ${ago(lock.acquiredAt)}\n` +
      `  Age:           ${formatAge(lock.ageSeconds)}\n` +
      `  Last activity: ${ago(lock.lastActivityAt)}\n` +
      `  Client:        ${lock.clientAddr} (${lock.userAgent || 'no user agent'})\n` +
      `  Verdict:       ${verdictText(ctx.io, lock.verdict)} — ${String(lock.evidence.reason ?? '')}\n` +
      (heldByCi(lock) ? `  Held by:       ${heldByCi(lock)}\n` : '') +
      (lock.sessionId ? `  Session:       ${lock.sessionId} (statelock run)\n` : '') +
      `\n${paint(ctx.io, 'bold', 'What it means')}\n${lockMeaning(lock, now)}\n`,
  );
  return 0;
};
