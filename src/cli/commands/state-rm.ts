import { ApiError, keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import type { VersionView } from './state-history.js';

/**
 * `statelock state rm <key>`: soft delete. The key leaves `state list` and the http backend (Terraform
 * then sees no state); every version stays, and `statelock state restore` brings one back. Refused while
 * a lock is held: the holder may be mid-apply.
 */
export const stateRmCommand: Command = async (args, ctx) => {
  const { positionals } = parseOptions({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError('usage: statelock state rm <key>');
  const key = positionals[0]!;
  const path = `states/${keyPath(key)}`;
  const before = await ctx.api.getJson<{ current: VersionView; versions: number }>(path);
  try {
    await ctx.api.sendJson('DELETE', path);
  } catch (err) {
    if (err instanceof ApiError && err.holder) throw new ApiError(err.status, err.code, `cannot delete ${key}: ${err.message}`, err.holder);
    throw err;
  }
  ctx.io.out(
    `Deleted ${key} (was serial ${before.current.serial}, ${before.versions} version${before.versions === 1 ? '' : 's'}).\n` +
      `Its versions stay recoverable: statelock state history ${key}, then statelock state restore ${key} <serial>.\n`,
  );
  return 0;
};
