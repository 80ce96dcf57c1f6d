import { keyPath } from '../api-client.js';
import type { Command } from '../command.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import { validateKey } from '../../state/state-key.js';

const USAGE = 'usage: statelock backend-config <key> [--pr N] [--s3]';

/**
 * `statelock backend-config <key> [--pr N] [--s3]`: the backend block that points Terraform/OpenTofu at
 * this server for one key. `--pr N` takes the key as the production key and prints the lesson's CI
 * pattern for pull request N: its own key (`pr-N` before the last segment), the `terraform init
 * -backend-config=… -reconfigure` line that selects it, and the post-merge cleanup. `--s3` prints the
 * lesson's `backend "s3"` block (bucket = first key segment, key = the rest) aimed at this server's S3,
 * DynamoDB, STS and IAM doors, path style (/work/shared/reference/s3-dynamodb.md §3.4, §4.1).
 * Everything printed is formatted as `terraform fmt` would leave it.
 */
export const backendConfigCommand: Command = async (args, ctx) => {
  const { values, positionals } = parseOptions({ args, allowPositionals: true, options: { pr: { type: 'string' }, s3: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const key = checkedKey(positionals[0]!);
  const pr = values.pr;
  if (pr !== undefined && !/^[1-9]\d{0,9}$/.test(pr)) throw new UsageError(`--pr must be a positive integer (the pull request number), not "${pr}"`);
  const s3 = values.s3 === true;
  if (s3 && !key.includes('/')) {
    throw new UsageError(`--s3 needs a key of at least two segments, <bucket>/<key> (e.g. acme/${key}): the s3 backend needs a bucket and a key`);
  }
  const server = ctx.api.server;
  const block = s3 ? s3Block(server, key) : httpBlock(server, key);
  if (s3) {
    ctx.io.err(
      'note: the s3 backend signs every request and will not start without AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile);\n' +
        '      Terraform >= 1.11 warns that dynamodb_table is deprecated in favour of use_lockfile: expected, both are set as in the lesson.\n',
    );
  }
  if (pr === undefined) {
    ctx.io.out(block);
    return 0;
  }

  const prKey = perPrKey(key, pr);
  const prPrefix = prKey.slice(0, prKey.lastIndexOf('/') + 1);
  const settings: Array<[string, string]> = s3 ? [['key', s3Parts(prKey).key]] : httpSettings(server, prKey);
  ctx.io.out(
    `# The backend block (versions.tf) keeps the production key, ${key}:\n` +
      block +
      `\n# Pull request ${pr} plans against its own state, ${prKey},\n` +
      `# so parallel PR builds never wait for each other's lock:\n` +
      `terraform init \\\n` +
      settings.map(([name, value]) => `  -backend-config=${doubleQuoted(`${name}=${value}`)} \\\n`).join('') +
      `  -reconfigure\n` +
      `\n# After the merge, remove its state (soft delete: its versions stay restorable):\n` +
      `statelock prune --prefix ${shellWord(prPrefix)} --yes --server ${shellWord(server)}\n`,
  );
  return 0;
};

/** `lesson-17/terraform.tfstate`, 42 → `lesson-17/pr-42/terraform.tfstate`: `pr-N` before the last segment. */
export function perPrKey(key: string, pr: string): string {
  const segments = key.split('/');
  segments.splice(segments.length - 1, 0, `pr-${pr}`);
  return segments.join('/');
}

function httpSettings(server: string, key: string): Array<[string, string]> {
  const address = `${server}/state/${keyPath(key)}`;
  return [
    ['address', address],
    ['lock_address', address],
    ['unlock_address', address],
  ];
}

function httpBlock(server: string, key: string): string {
  return terraformBlock('http', [attributes(4, httpSettings(server, key).map(([n, v]) => [n, hclString(v)]))]);
}

/** The statelock key `bucket/rest…` as the s3 backend names it. */
function s3Parts(key: string): { bucket: string; key: string } {
  const slash = key.indexOf('/');
  return { bucket: key.slice(0, slash), key: key.slice(slash + 1) };
}

function s3Block(server: string, key: string): string {
  const { bucket, key: objectKey } = s3Parts(key);
  const url = hclString(server);
  return terraformBlock('s3', [
    attributes(4, [
      ['bucket', hclString(bucket)],
      ['key', hclString(objectKey)],
      ['region', hclString('us-east-1')],
    ]),
    // `endpoints` is an attribute (an object), not a block: `endpoints { … }` is refused by Terraform.
    // statelock answers STS GetCallerIdentity and IAM GetUser, and verifies the SDK's checksums, so none of
    // skip_credentials_validation, skip_requesting_account_id or skip_s3_checksum is needed.
    `    endpoints = {\n${attributes(6, [
      ['s3', url],
      ['dynamodb', url],
      ['sts', url],
      ['iam', url],
    ])}    }\n` +
      attributes(4, [
        ['use_path_style', 'true'],
        ['skip_metadata_api_check', 'true'],
      ]),
    attributes(4, [
      ['dynamodb_table', hclString('terraform-state-lock')],
      ['use_lockfile', 'true'],
    ]),
  ]);
}

/** `terraform { backend "<type>" { … } }` with the groups separated by blank lines. */
function terraformBlock(type: string, groups: string[]): string {
  return `terraform {\n  backend "${type}" {\n${groups.join('\n')}  }\n}\n`;
}

/** One `name = value` line per attribute, the `=` aligned as terraform fmt aligns consecutive attributes. */
function attributes(indent: number, attrs: Array<[string, string]>): string {
  const width = Math.max(...attrs.map(([n]) => n.length));
  return attrs.map(([n, v]) => `${' '.repeat(indent)}${n.padEnd(width)} = ${v}\n`).join('');
}

/** An HCL quoted string: `\` and `"` escaped, and `${` / `%{` so that they are not template sequences. */
function hclString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/([$%])\{/g, (_m, c: string) => `${c}${c}{`)}"`;
}

/** A shell double-quoted word, as the lesson writes `-backend-config="key=…"`. */
function doubleQuoted(s: string): string {
  return `"${s.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

/** `s` as one shell word: unchanged when it is plain, single-quoted otherwise. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A key as the server would accept it, or a usage error with the server's reason. */
function checkedKey(key: string): string {
  try {
    return validateKey(key);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
