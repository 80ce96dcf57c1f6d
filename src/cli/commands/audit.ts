import type { Command } from '../command.js';
import { printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { parseDuration } from '../../shared/duration.js';
import { UsageError } from '../usage-error.js';
import type { AuditEntry } from '../../audit/audit-entry.js';

/** `statelock audit [--key K] [--since T|D] [--action A] [--json]`: the audit trail, oldest first. */
export const auditCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { key: { type: 'string' }, since: { type: 'string' }, action: { type: 'string' }, json: { type: 'boolean' } } });
  let since: string | undefined;
  if (values.since !== undefined) {
    const seconds = parseDuration(values.since);
    if (seconds !== null) since = new Date(ctx.now() - seconds * 1000).toISOString();
    else if (!Number.isNaN(Date.parse(values.since))) since = new Date(values.since).toISOString();
    else throw new UsageError(`--since must be a time (2026-11-26T10:00:00Z) or a duration (2h, 7d), not "${values.since}"`);
  }
  const entries = await ctx.api.all<AuditEntry>('audit', { key: values.key, since, action: values.action });
  if (values.json) {
    printJson(ctx.io, entries);
    return 0;
  }
  if (entries.length === 0) {
    ctx.io.out('No audit entries.\n');
    return 0;
  }
  const rows = entries.map((e) => [e.at, e.action, e.key, e.lockId ?? '-', e.outcome, e.principal ?? '-', e.clientAddr]);
  ctx.io.out(table(ctx.io, ['AT', 'ACTION', 'KEY', 'LOCK ID', 'OUTCOME', 'PRINCIPAL', 'CLIENT'], rows));
  return 0;
};
