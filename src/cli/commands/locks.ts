import type { Command } from '../command.js';
import { formatAge, printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { heldByCi, verdictText, type LockView } from '../lock-view.js';

/** `statelock locks [--prefix P] [--json]`: every held lock, with its age and liveness verdict. */
export const locksCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { prefix: { type: 'string' }, json: { type: 'boolean' } } });
  const locks = await ctx.api.all<LockView>('locks', { prefix: values.prefix });
  if (values.json) {
    printJson(ctx.io, locks);
    return 0;
  }
  if (locks.length === 0) {
    ctx.io.out(values.prefix ? `No locks held under "${values.prefix}".\n` : 'No locks held.\n');
    return 0;
  }
  const now = ctx.now();
  const rows = locks.map((l) => [
    l.key,
    String(l.info.ID ?? ''),
    String(l.info.Operation ?? ''),
    String(l.info.Who ?? ''),
    String(l.info.Created ?? ''),
    formatAge(l.ageSeconds),
    `${formatAge((now - Date.parse(l.lastActivityAt)) / 1000)} ago`,
    verdictText(ctx.io, l.verdict),
    heldByCi(l) ?? '-',
  ]);
  ctx.io.out(table(ctx.io, ['KEY', 'ID', 'OPERATION', 'WHO', 'CREATED', 'AGE', 'LAST ACTIVITY', 'VERDICT', 'HELD BY'], rows));
  return 0;
};
