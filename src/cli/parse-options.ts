import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage-error.js';

/**
 * `node:util` parseArgs, strict, with its own errors (unknown option, missing value, extra positional)
 * turned into {@link UsageError} so that every command exits 2 on a command line it cannot run.
 */
export function parseOptions<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>({ ...config, strict: config.strict ?? true });
  } catch (err) {
    if (err instanceof Error && String((err as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS_')) throw new UsageError(err.message);
    throw err;
  }
}
