import { ApiError } from './api-client.js';
import { UsageError } from './usage-error.js';

/** The CLI's exit codes (docs/cli.md). */
export const EXIT = { OK: 0, ERROR: 1, USAGE: 2, LOCKED: 3, NOT_FOUND: 4 } as const;

/** A failure a command reports on purpose, with its message and exit code. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.ERROR,
  ) {
    super(message);
  }
}

const LOCK_CODES = new Set(['STATE_LOCKED', 'STATE_LOCKED_NO_ID', 'LOCK_ID_MISMATCH', 'HOLDER_ALIVE', 'LOCK_FENCED']);

/** The one mapping from a failure to an exit code. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.USAGE;
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof ApiError) {
    if (LOCK_CODES.has(err.code)) return EXIT.LOCKED;
    if (err.status === 404) return EXIT.NOT_FOUND;
  }
  return EXIT.ERROR;
}
