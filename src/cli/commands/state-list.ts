import type { StateSummaryJson } from '../../protocols/api/representations.js';
import type { Command } from '../command.js';
import { formatAge, paint, printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { formatBytes } from '../progress.js';
import { UsageError } from '../usage-error.js';

/** A state as the API lists it: the API's own type, imported for its shape only. */
export type StateSummaryView = StateSummaryJson;

/** The first 8 characters of a lineage: enough to tell two apart in a table (--json has it whole). */
export function shortLineage(lineage: string): string {
  return lineage.length > 8 ? lineage.slice(0, 8) : lineage;
}

/** `statelock state list [prefix] [--json]`: live states, by key, optionally under a key prefix. */
export const stateListCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { prefix: { type: 'string' }, json: { type: 'boolean' } } });
  if (positionals.length > 1 || (positionals.length === 1 && values.prefix !== undefined)) throw new UsageError('usage: statelock state list [prefix] [--json]');
  const prefix = positionals[0] ?? values.prefix;
  const states = await ctx.api.all<StateSummaryView>('states', { prefix: prefix || undefined });
  if (values.json) {
    printJson(ctx.io, states);
    return 0;
  }
  if (states.length === 0) {
    ctx.io.out(prefix ? `No states under "${prefix}".\n` : 'No states.\n');
    return 0;
  }
  const now = ctx.now();
  const rows = states.map((s) => [
    s.key,
    String(s.serial),
    shortLineage(s.lineage),
    formatBytes(s.size),
    `${formatAge((now - Date.parse(s.updatedAt)) / 1000)} ago`,
    String(s.versions),
    s.locked ? paint(ctx.io, 'yellow', 'yes') : 'no',
  ]);
  ctx.io.out(table(ctx.io, ['KEY', 'SERIAL', 'LINEAGE', 'SIZE', 'UPDATED', 'VERSIONS', 'LOCKED'], rows));
  return 0;
};
