import { ApiError, keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import type { VersionView } from './state-history.js';
import { parseCount } from './state-pull.js';

const USAGE = 'usage: statelock state restore <key> <serial> | <key> --seq N  [--lock-id ID]';

/**
 * `statelock state restore <key> <serial>`: roll forward. The old version's content is written as a new
 * version with serial = current + 1 and the current lineage (on a deleted key: its own serial and
 * lineage), so every Terraform client sees serials only increase; the version it replaces is kept.
 * Refused while someone else holds the lock (`--lock-id` names yours if you hold it).
 */
export const stateRestoreCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { seq: { type: 'string' }, 'lock-id': { type: 'string' } } });
  const seq = parseCount('--seq', values.seq);
  if (positionals.length !== (seq === undefined ? 2 : 1)) throw new UsageError(USAGE);
  const key = positionals[0]!;
  const serial = parseCount('<serial>', positionals[1]);
  const path = keyPath(key);

  let restored: VersionView;
  let replaced: { seq: number; serial: number } | null;
  try {
    ({ restored, replaced } = await ctx.api.sendJson<{ restored: VersionView; replaced: { seq: number; serial: number } | null }>('POST', `restore/${path}`, {
      serial,
      seq,
      lockId: values['lock-id'],
    }));
  } catch (err) {
    if (err instanceof ApiError && err.holder) throw new ApiError(err.status, err.code, `cannot restore ${key}: ${err.message}`, err.holder);
    throw err;
  }
  const which = seq !== undefined ? `seq ${seq}` : `serial ${serial}`;
  ctx.io.out(
    `Restored ${which} of ${key} as serial ${restored.serial} (seq ${restored.seq}, lineage ${restored.lineage}).\n` +
      (replaced
        ? `The version it replaced, seq ${replaced.seq} (serial ${replaced.serial}), is kept: statelock state history ${key}\n`
        : `${key} had no live state; nothing was replaced.\n`),
  );
  return 0;
};
