import { ApiError } from '../api-client.js';
import type { CliContext, Command } from '../command.js';
import { paint, printJson, table } from '../output.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import { parseGrant, PERMISSIONS } from '../../auth/permissions.js';
import type { CreatedToken, TokenJson } from '../../auth/token-service.js';

const USAGE = `usage: statelock token create --name N --allow '<key glob>:<permission,…>' [--allow …] [--aws] [--json]
       statelock token list [--json]
       statelock token revoke <name>
permissions: ${PERMISSIONS.join(', ')} (admin implies all; a glob's * matches any run of characters, / included)`;

/** The live (not revoked) tokens, or null when the server does not let us list them. */
async function liveTokens(ctx: CliContext): Promise<TokenJson[] | null> {
  try {
    const { items } = await ctx.api.getJson<{ items: TokenJson[] }>('tokens');
    return items.filter((t) => t.revokedAt === null);
  } catch (err) {
    if (err instanceof ApiError) return null;
    throw err;
  }
}

/** `statelock token create`: a new principal; its secrets are printed this once and never shown again. */
export const tokenCreateCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { name: { type: 'string' }, allow: { type: 'string', multiple: true }, aws: { type: 'boolean' }, json: { type: 'boolean' } } });
  if (!values.name) throw new UsageError(`--name is required\n${USAGE}`);
  if (!values.allow?.length) throw new UsageError(`give at least one --allow '<key glob>:<permission,…>', e.g. --allow 'lesson-17/pr-*:read,write,lock'\n${USAGE}`);
  for (const text of values.allow) {
    const grant = parseGrant(text);
    if ('error' in grant) throw new UsageError(`--allow ${grant.error}`);
  }
  // Asked first, so that the first token (the bootstrap) can say that authentication is now on.
  const before = await liveTokens(ctx);
  let created: CreatedToken;
  try {
    const res = await ctx.api.call('POST', '/api/v1/tokens', { body: JSON.stringify({ name: values.name, allow: values.allow, aws: values.aws === true }) });
    created = (await res.json()) as CreatedToken;
  } catch (err) {
    // A name or grant the server refuses is a command line that cannot run as written.
    if (err instanceof ApiError && err.code === 'INVALID_TOKEN_REQUEST') throw new UsageError(err.message);
    throw err;
  }
  if (values.json) {
    printJson(ctx.io, created);
    return 0;
  }
  const out = ctx.io.out;
  out(`Token "${created.name}" created with ${created.grants.join(' ')}:\n\n  ${paint(ctx.io, 'bold', created.token)}\n\n`);
  out(`For the CLI:\n\n  export STATELOCK_TOKEN=${created.token}\n\n`);
  if (created.awsAccessKeyId && created.awsSecretAccessKey) {
    out(`AWS key pair for the S3, DynamoDB and STS doors (backend "s3", the AWS CLI and SDKs):\n\n`);
    out(`  export AWS_ACCESS_KEY_ID=${created.awsAccessKeyId}\n  export AWS_SECRET_ACCESS_KEY=${created.awsSecretAccessKey}\n\n`);
  }
  out(
    paint(ctx.io, 'yellow', `Copy ${created.awsSecretAccessKey ? 'these secrets' : 'this token'} now: ${created.awsSecretAccessKey ? 'they' : 'it'} cannot be shown again (statelock keeps only a hash of the token).`) +
      '\n',
  );
  out('backend "http": username = "terraform", password = the token (HTTP Basic); OpenTofu may send headers = { Authorization = "Bearer <token>" }.\n');
  if (before !== null && before.length === 0) {
    out(`\nThis is the first live token: from now on every request to this server needs a token (authentication was off until now).\n`);
  }
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
    ctx.io.out("No tokens: authentication is off. Create the first admin token with `statelock token create --name admin --allow '*:admin'`.\n");
    return 0;
  }
  const rows = items.map((t) => [t.name, t.grants.join(' '), t.awsAccessKeyId ?? '-', t.createdAt, t.revokedAt ?? '-']);
  ctx.io.out(table(ctx.io, ['NAME', 'GRANTS', 'AWS KEY', 'CREATED', 'REVOKED'], rows));
  if (items.every((t) => t.revokedAt !== null)) ctx.io.out('\nEvery token is revoked: authentication is off.\n');
  return 0;
};

/** `statelock token revoke <name>`: the token's (and its AWS key's) next request is refused. */
export const tokenRevokeCommand: Command = async (args, ctx) => {
  const { positionals } = parseOptions({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError(`give exactly one token name\n${USAGE}`);
  const revoked = await ctx.api.sendJson<TokenJson>('DELETE', `tokens/${encodeURIComponent(positionals[0]!)}`);
  ctx.io.out(`Token "${revoked.name}" revoked at ${revoked.revokedAt}: its next request is refused (401)${revoked.awsAccessKeyId ? `, and so is its AWS key ${revoked.awsAccessKeyId}` : ''}.\n`);
  const live = await liveTokens(ctx);
  if (live !== null && live.length === 0) {
    ctx.io.err(
      paint(ctx.io, 'red', 'Warning: no live token is left, so authentication is OFF again: every request is allowed.') +
        "\nCreate a new admin token now: statelock token create --name admin --allow '*:admin'\n",
    );
  }
  return 0;
};
