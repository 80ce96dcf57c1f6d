import { ApiError } from '../api-client.js';
import type { Command } from '../command.js';
import { printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { parseDuration } from '../../shared/duration.js';
import { UsageError } from '../usage-error.js';
import type { AuditEntry } from '../../audit/audit-entry.js';

/** An ISO 8601 date or date-time (2026-11-26, 2026-11-26T10:00:00Z, …+01:00); not whatever Date.parse guesses at. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

/** `--since`: a time, or a duration back from now (2h, 7d) → an ISO time for the API. */
export function sinceToIso(text: string, now: number): string {
  const seconds = parseDuration(text);
  if (seconds !== null) return new Date(now - seconds * 1000).toISOString();
  if (ISO_TIME.test(text) && !Number.isNaN(Date.parse(text))) return new Date(text).toISOString();
  throw new UsageError(`--since must be an ISO 8601 time (2026-11-26T10:00:00Z, 2026-11-26) or a duration back from now (30m, 2h, 7d), not "${text}"`);
}

/**
 * `statelock audit [--key K] [--since T|D] [--action A] [--limit N] [--json]`: the audit trail, oldest first,
 * every page of it (`--limit N`: only the newest N of the matching entries).
 */
export const auditCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({
    args,
    options: { key: { type: 'string' }, since: { type: 'string' }, action: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  });
  const since = values.since === undefined ? undefined : sinceToIso(values.since, ctx.now());
  let limit: number | undefined;
  if (values.limit !== undefined) {
    if (!/^\d{1,9}$/.test(values.limit) || Number(values.limit) < 1) throw new UsageError(`--limit must be a positive whole number, not "${values.limit}"`);
    limit = Number(values.limit);
  }
  let entries: AuditEntry[];
  try {
    entries = await ctx.api.all<AuditEntry>('audit', { key: values.key, since, action: values.action });
  } catch (err) {
    // An unknown --action (the server names the valid ones) is a command line that cannot run as written.
    if (err instanceof ApiError && err.code === 'INVALID_QUERY') throw new UsageError(err.message);
    throw err;
  }
  if (limit !== undefined) entries = entries.slice(-limit);
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
