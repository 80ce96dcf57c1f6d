import type { VersionJson } from '../../protocols/api/representations.js';
import { ApiError, keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { paint, printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { formatBytes } from '../progress.js';
import { UsageError } from '../usage-error.js';
import { shortLineage } from './state-list.js';

/** A version as the API returns it: the API's own type, imported for its shape only. */
export type VersionView = VersionJson;

/** The documented `--json` shape of one version: exactly these keys, in this order. */
export function historyJson(v: VersionView) {
  return { seq: v.seq, serial: v.serial, lineage: v.lineage, md5: v.md5, size: v.size, createdAt: v.createdAt, lockId: v.lockId, operation: v.operation };
}

/** 2026-08-21T13:10:23.123Z → 2026-08-21 13:10:23Z */
export function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** `statelock state history <key> [--json]`: every version of a state, oldest first (deleted keys' too). */
export const stateHistoryCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('usage: statelock state history <key> [--json]');
  const key = positionals[0]!;
  const versions = await ctx.api.all<VersionView>(`versions/${keyPath(key)}`);
  if (values.json) {
    printJson(ctx.io, versions.map(historyJson));
    return 0;
  }
  const rows = versions.map((v) => [
    String(v.seq),
    String(v.serial),
    shortLineage(v.lineage),
    v.md5,
    formatBytes(v.size),
    shortTime(v.createdAt),
    v.lockId ?? '-',
    v.operation ?? '-',
    v.forced ? paint(ctx.io, 'yellow', v.forced) : '-',
  ]);
  ctx.io.out(table(ctx.io, ['SEQ', 'SERIAL', 'LINEAGE', 'MD5', 'SIZE', 'CREATED', 'LOCK ID', 'OPERATION', 'FORCED'], rows));
  let live = true;
  try {
    await ctx.api.getJson(`states/${keyPath(key)}`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    live = false;
  }
  if (!live) ctx.io.out(`\n${key} has no live state (it was deleted); bring a version back with: statelock state restore ${key} <serial>\n`);
  return 0;
};
