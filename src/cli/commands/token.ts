import type { Command } from '../command.js';
import { printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import type { CreatedToken, TokenJson } from '../../auth/token-service.js';

const USAGE = `usage: statelock token create --name N --allow '<key glob>:<permission,…>' [--allow …] [--aws] [--json]
       statelock token list [--json]
       statelock token revoke <name>
permissions: read, write, lock, force-unlock, delete, restore, admin`;

/** `statelock token create`: a new principal; its secrets are printed this once and never stored. */
export const tokenCreateCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { name: { type: 'string' }, allow: { type: 'string', multiple: true }, aws: { type: 'boolean' }, json: { type: 'boolean' } } });
  if (!values.name || !values.allow?.length) throw new UsageError(USAGE);
  const res = await ctx.api.call('POST', '/api/v1/tokens', { body: JSON.stringify({ name: values.name, allow: values.allow, aws: values.aws === true }) });
  const created = (await res.json()) as CreatedToken;
  if (values.json) {
    printJson(ctx.io, created);
    return 0;
  }
  ctx.io.out(`Token "${created.name}" created with ${created.grants.join(' ')}.\n\n  ${created.token}\n\n`);
  if (created.awsAccessKeyId && created.awsSecretAccessKey) {
    ctx.io.out(`AWS key pair for the S3/DynamoDB doors:\n\n  export AWS_ACCESS_KEY_ID=${created.awsAccessKeyId}\n  export AWS_SECRET_ACCESS_KEY=${created.awsSecretAccessKey}\n\n`);
  }
  ctx.io.out('Keep it now: statelock stores only a hash of the token and cannot show it again.\n');
  ctx.io.out('Use it as STATELOCK_TOKEN (or --token) for the CLI, as `password` in backend "http" (HTTP Basic), or as `Authorization: Bearer <token>`.\n');
  return 0;
};

/** `statelock token list`: every principal, revoked ones included, without secrets. */
export const tokenListCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { json: { type: 'boolean' } } });
  const { items } = await ctx.api.getJson<{ items: TokenJson[] }>('tokens');
  if (values.json) {
    printJson(ctx.io, items);
    return 0;
  }
  if (items.length === 0) {
    ctx.io.out('No tokens: authentication is off (loopback only). Create the first with `statelock token create --name admin --allow "*:admin"`.\n');
    return 0;
  }
  ctx.io.out(table(ctx.io, ['NAME', 'GRANTS', 'AWS KEY', 'CREATED', 'REVOKED'], items.map((t) => [t.name, t.grants.join(' '), t.awsAccessKeyId ?? '-', t.createdAt, t.revokedAt ?? '-'])));
  return 0;
};

/** `statelock token revoke <name>`: the token's next request is a 401. */
export const tokenRevokeCommand: Command = async (args, ctx) => {
  const { positionals } = parseOptions({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const revoked = await ctx.api.sendJson<TokenJson>('DELETE', `tokens/${encodeURIComponent(positionals[0]!)}`);
  ctx.io.out(`Token "${revoked.name}" revoked at ${revoked.revokedAt}.\n`);
  return 0;
};
