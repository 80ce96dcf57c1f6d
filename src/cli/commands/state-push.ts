import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { ApiError, keyPath } from '../api-client.js';
import type { CliContext, Command } from '../command.js';
import { CliError, EXIT } from '../exit-codes.js';
import { checkValidImport, readStateFile, type StateFileView } from '../import-check.js';
import { parseOptions } from '../parse-options.js';
import { countingStream, createProgress } from '../progress.js';
import { UsageError } from '../usage-error.js';

const USAGE = 'usage: statelock state push <key> FILE|- [--force]';

/** The statelock package version (dist/src/cli/commands → the package root): what the lock info's Version field carries. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '';
  } catch {
    return '';
  }
}

/** A lock info as Terraform builds it (statemgr.NewLockInfo): keys in struct order, Created in RFC 3339 UTC. */
export function pushLockInfo(at: Date = new Date()): { ID: string; Operation: string; Info: string; Who: string; Version: string; Created: string; Path: string } {
  const hex = randomBytes(16).toString('hex');
  let user = '';
  try {
    user = userInfo().username;
  } catch {
    user = '';
  }
  return {
    ID: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    Operation: 'state-push',
    Info: '',
    Who: `${user}@${hostname()}`,
    Version: packageVersion(),
    Created: at.toISOString().replace(/\.?0+Z$/, 'Z'),
    Path: '',
  };
}

async function readSource(file: string, stdin: NodeJS.ReadStream): Promise<Buffer> {
  if (file !== '-') return readFile(file);
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * `statelock state push <key> FILE|- [--force]`: uploads a state file through the http backend door
 * exactly as `terraform state push` does — LOCK (operation `state-push`), GET, CheckValidImport (skipped
 * with --force), POST ?ID=, UNLOCK (always, also on failure) — but sends the file's bytes unchanged, so a
 * backup goes back byte for byte. The server stores what the check would refuse only under this
 * `state-push` lock, as a forced overwrite that it audits; the overwritten version stays.
 */
export const statePushCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { force: { type: 'boolean' } } });
  if (positionals.length !== 2) throw new UsageError(USAGE);
  const [key, file] = positionals as [string, string];
  let bytes: Buffer;
  let incoming: StateFileView;
  try {
    bytes = await readSource(file, ctx.stdin);
    incoming = readStateFile(bytes);
  } catch (err) {
    throw new CliError(`Error reading source state "${file}": ${(err as Error).message}`);
  }

  const statePath = `/state/${keyPath(key)}`;
  const info = pushLockInfo(new Date(ctx.now()));
  const lockBody = JSON.stringify(info);
  try {
    await ctx.api.call('LOCK', statePath, { body: lockBody });
  } catch (err) {
    if (err instanceof ApiError && err.holder) {
      const h = err.holder;
      throw new ApiError(err.status, err.code, `Error acquiring the state lock: ${key} is locked by ID "${String(h.ID)}" (${String(h.Operation || 'no operation')}, ${String(h.Who || 'unknown')}, since ${String(h.Created || 'an unknown time')}); nothing was pushed`, h);
    }
    throw err;
  }

  const unlock = () => ctx.api.call('UNLOCK', statePath, { body: lockBody });
  const releaseFailure = (err: unknown) =>
    `Error releasing the state lock on ${key}: ${(err as Error).message}\n` +
    `The lock may still be held. Check with: statelock lock show ${key}\n` +
    `and, once sure that nothing else uses it: statelock force-unlock ${key} ${info.ID}\n`;

  let report: PushReport;
  try {
    report = await pushUnderLock(ctx, { key, statePath, lockId: info.ID, bytes, incoming, force: values.force === true });
  } catch (err) {
    await unlock().catch((unlockErr: unknown) => ctx.io.err(releaseFailure(unlockErr)));
    throw err;
  }
  let released = true;
  try {
    await unlock();
  } catch (err) {
    released = false;
    ctx.io.err(releaseFailure(err));
  }
  if (report.refused) ctx.io.err(report.text);
  else ctx.io.out(report.text);
  return report.refused || !released ? EXIT.ERROR : EXIT.OK;
};

/** What a push under the lock came to: a text for stdout, or (refused by the import check) for stderr. */
interface PushReport {
  refused: boolean;
  text: string;
}

/** GET, check, POST — with the lock held. Resolves with what to print. */
async function pushUnderLock(
  ctx: CliContext,
  p: { key: string; statePath: string; lockId: string; bytes: Buffer; incoming: StateFileView; force: boolean },
): Promise<PushReport> {
  let currentBytes: Buffer | null = null;
  try {
    currentBytes = Buffer.from(await (await ctx.api.call('GET', p.statePath)).arrayBuffer());
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw new CliError(`Failed to refresh destination state: ${(err as Error).message}`);
  }
  let current: StateFileView | null = null;
  if (currentBytes) {
    try {
      current = readStateFile(currentBytes);
    } catch (err) {
      if (!p.force) throw new CliError(`Failed to refresh destination state: ${(err as Error).message}`);
    }
  }
  if (!p.force) {
    const refusal = checkValidImport(p.incoming, current);
    if (refusal) return { refused: true, text: `Failed to write state: ${refusal}\nNothing was pushed. --force writes it anyway (the overwritten version is kept).\n` };
  }
  const query = { ID: p.lockId };
  const headers = { 'Content-MD5': createHash('md5').update(p.bytes).digest('base64') };
  const progress = createProgress('pushing', p.bytes.length);
  let res: Response;
  try {
    res = progress.active
      ? await ctx.api.call('POST', p.statePath, { query, body: countingStream(p.bytes, (n) => progress.add(n)), headers: { ...headers, 'Content-Length': String(p.bytes.length) } })
      : await ctx.api.call('POST', p.statePath, { query, body: p.bytes, headers });
  } finally {
    progress.done();
  }
  const written = (await res.json()) as {
    outcome: 'stored' | 'unchanged';
    serial: number;
    lineage: string;
    version: number;
    forced: string | null;
    overwritten: { seq: number; serial: number; lineage: string } | null;
  };
  if (written.outcome === 'unchanged') return { refused: false, text: 'unchanged: identical to the stored version\n' };
  let text = `pushed serial ${written.serial} (lineage ${written.lineage}) to ${p.key}\n`;
  if (written.forced && written.overwritten) {
    const o = written.overwritten;
    text +=
      `forced overwrite (${written.forced}) of serial ${o.serial} (lineage ${o.lineage}): recorded in the audit trail as state.write.forced; ` +
      `the overwritten version is kept as seq ${o.seq} (statelock state history ${p.key})\n`;
  }
  return { refused: false, text };
}
