import { join } from 'node:path';
import { backupFileName, writeBackup } from '../backup-file.js';
import type { Command } from '../command.js';
import { CliError, EXIT } from '../exit-codes.js';
import { table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import { validateKey } from '../../state/state-key.js';

const USAGE = 'usage: statelock backup <key> [--dir D] | statelock backup --prefix P [--dir D]';

/** A state as `GET /api/v1/states` lists it (only the key is needed here). */
interface StateSummary {
  key: string;
}

/**
 * `statelock backup <key> | --prefix P [--dir D]`: the lesson's step 3 (`terraform state pull >
 * state-backup-$(date +%Y%m%d-%H%M%S).json`) without a Terraform working directory. Writes the stored
 * bytes of each state, unchanged, to `state-backup-<key-slug>-YYYYMMDD-HHMMSS.json` in D (default the
 * current directory); never overwrites a file. One timestamp per run, so a prefix's files sort together.
 */
export const backupCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { prefix: { type: 'string' }, dir: { type: 'string' } } });
  const prefix = values.prefix;
  if (positionals.length > 1 || (positionals.length === 1) === (prefix !== undefined)) throw new UsageError(USAGE);
  if (prefix === '') throw new UsageError('--prefix must not be empty (give the key prefix to back up, e.g. --prefix lesson-17/)');
  if (values.dir === '') throw new UsageError('--dir must not be empty');
  const dir = values.dir ?? '.';
  const at = new Date(ctx.now());

  let keys: string[];
  if (prefix === undefined) {
    keys = [checkedKey(positionals[0]!)];
  } else {
    keys = (await ctx.api.all<StateSummary>('states', { prefix })).map((s) => s.key);
    if (keys.length === 0) throw new CliError(`no states under prefix "${prefix}": nothing to back up`, EXIT.NOT_FOUND);
  }

  const rows: string[][] = [];
  const problems: string[] = [];
  for (const key of keys) {
    let written: Awaited<ReturnType<typeof writeBackup>>;
    try {
      written = await writeBackup(ctx.api, key, dir, at);
    } catch (err) {
      const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
      const message = exists ? `${key}: ${join(dir, backupFileName(key, at))} already exists; not overwritten (run it again a second later, or use another --dir)` : `${key}: ${(err as Error).message}`;
      if (prefix === undefined) throw exists ? new CliError(message) : err;
      problems.push(message);
      continue;
    }
    if (!written) {
      if (prefix === undefined) throw new CliError(`no state stored at key ${key}: nothing to back up`, EXIT.NOT_FOUND);
      problems.push(`${key}: deleted since it was listed; not backed up`);
      continue;
    }
    rows.push([key, String(written.serial), String(written.size), written.path]);
  }

  if (rows.length > 0) ctx.io.out(table(ctx.io, ['KEY', 'SERIAL', 'BYTES', 'FILE'], rows));
  for (const p of problems) ctx.io.err(`statelock: ${p}\n`);
  if (prefix !== undefined) ctx.io.out(`Backed up ${rows.length} of ${keys.length} state${keys.length === 1 ? '' : 's'} under "${prefix}".\n`);
  return problems.length > 0 ? EXIT.ERROR : EXIT.OK;
};

/** A key as the server would accept it, or a usage error with the server's reason. */
function checkedKey(key: string): string {
  try {
    return validateKey(key);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
