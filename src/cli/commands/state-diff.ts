import { keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { paint, printJson, type Output } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import type { VersionView } from './state-history.js';
import { parseCount } from './state-pull.js';

/** The API's diff (src/state/state-diff.ts StateDiff, with the two versions compared). */
export interface DiffView {
  key: string;
  from: VersionView | null;
  to: VersionView;
  resources: Array<{ address: string; change: 'added' | 'removed' | 'changed'; attributes?: string[] }>;
  outputs: Array<{ name: string; change: 'added' | 'removed' | 'changed'; sensitive: boolean }>;
  summary: { added: number; removed: number; changed: number };
}

const SIGN = { added: '+', removed: '-', changed: '~' } as const;
const COLOR = { added: 'green', removed: 'red', changed: 'yellow' } as const;

/** The human rendering: a header, one line per resource instance and per output, and the summary line. */
export function renderDiff(o: Output, d: DiffView): string {
  const version = (v: VersionView) => `serial ${v.serial} (seq ${v.seq})`;
  const lines = [d.from ? `${d.key}: ${version(d.from)} → ${version(d.to)}` : `${d.key}: ${version(d.to)}, the first version`];
  for (const r of d.resources) {
    const attrs = r.change === 'changed' && r.attributes?.length ? `  (${r.attributes.join(', ')})` : '';
    lines.push(paint(o, COLOR[r.change], `${SIGN[r.change]} ${r.address}`) + attrs);
  }
  if (d.outputs.length) {
    lines.push('Outputs:');
    for (const out of d.outputs) lines.push(paint(o, COLOR[out.change], `${SIGN[out.change]} output.${out.name}`) + (out.sensitive ? '  (sensitive)' : ''));
  }
  if (!d.resources.length && !d.outputs.length) lines.push('No changes to resources or outputs.');
  lines.push(`${d.summary.added} added, ${d.summary.changed} changed, ${d.summary.removed} removed`);
  return lines.join('\n') + '\n';
}

/**
 * `statelock state diff <key> [FROM] [TO] [--json]`: resource instances and outputs added, removed and
 * changed between two serials (default: the version before the current one → the current one). Names
 * only, never values: a state holds secrets.
 */
export const stateDiffCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length < 1 || positionals.length > 3) throw new UsageError('usage: statelock state diff <key> [FROM_SERIAL] [TO_SERIAL] [--json]');
  const [key, from, to] = positionals as [string, string | undefined, string | undefined];
  const diff = await ctx.api.getJson<DiffView>(`diff/${keyPath(key)}`, { fromSerial: parseCount('FROM', from), toSerial: parseCount('TO', to) });
  if (values.json) printJson(ctx.io, diff);
  else ctx.io.out(renderDiff(ctx.io, diff));
  return 0;
};
