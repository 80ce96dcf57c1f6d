import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { CliError } from '../exit-codes.js';
import { parseOptions } from '../parse-options.js';
import { createProgress, formatBytes, readCounted } from '../progress.js';
import { UsageError } from '../usage-error.js';

const USAGE = 'usage: statelock state pull <key> [--serial N | --seq N] [-o FILE]';

/** A non-negative integer option or argument, else a usage error naming it. */
export function parseCount(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw new UsageError(`${name} must be a non-negative integer, got "${raw}"`);
  return Number(raw);
}

/**
 * `statelock state pull <key> [--serial N | --seq N] [-o FILE]`: the stored bytes of the current
 * version (or of one version), byte for byte, to stdout or FILE. Unlike `terraform state pull`, nothing
 * is re-serialized: what Terraform wrote is what you get.
 */
export const statePullCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({
    args,
    allowPositionals: true,
    options: { serial: { type: 'string' }, seq: { type: 'string' }, output: { type: 'string', short: 'o' } },
  });
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const key = positionals[0]!;
  const serial = parseCount('--serial', values.serial);
  const seq = parseCount('--seq', values.seq);
  if (serial !== undefined && seq !== undefined) throw new UsageError(`give --serial or --seq, not both\n${USAGE}`);

  const res = await ctx.api.call('GET', `/api/v1/content/${keyPath(key)}`, { query: { serial, seq } });
  const total = Number(res.headers.get('content-length'));
  const progress = createProgress('pulling', Number.isFinite(total) ? total : 0);
  let bytes: Buffer;
  try {
    bytes = await readCounted(res.body, (n) => progress.add(n));
  } finally {
    progress.done();
  }
  const md5 = res.headers.get('content-md5');
  if (md5 && createHash('md5').update(bytes).digest('base64') !== md5) {
    throw new CliError(`the download of ${key} is corrupt: its MD5 does not match the server's Content-MD5 ${md5}`);
  }

  const output = values.output;
  if (output === undefined || output === '-') {
    await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (err) => (err ? reject(err) : resolve())));
    return 0;
  }
  await writeFile(output, bytes);
  ctx.io.out(`wrote serial ${res.headers.get('x-statelock-serial')} (seq ${res.headers.get('x-statelock-seq')}, ${formatBytes(bytes.length)}) of ${key} to ${output}\n`);
  return 0;
};
