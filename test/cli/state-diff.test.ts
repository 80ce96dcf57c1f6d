import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, sampleResources } from '../support/terraform-client.js';

/** `statelock state diff`: resource instances and outputs added, removed and changed between two serials. */

type Resource = Record<string, unknown> & { type: string; name: string; module?: string; instances: Array<Record<string, unknown> & { attributes: Record<string, unknown> }> };

const KEY = 'acme/lesson-17/terraform.tfstate';
const FIRST = 'acme/first/terraform.tfstate';

/** Version 1: one marker object, an old random_id, the VPC module's for_each instance "eu"; two outputs. */
function version1(): { resources: Resource[]; outputs: Record<string, unknown> } {
  const resources = sampleResources() as Resource[];
  const marker = resources.find((r) => r.type === 'aws_s3_object')!;
  marker.instances = marker.instances.slice(0, 1);
  const vpc = resources.find((r) => r.module === 'module.net')!;
  vpc.instances[0]!.index_key = 'eu';
  const old = structuredClone(resources.find((r) => r.type === 'random_id')!);
  old.name = 'old';
  resources.push(old);
  return {
    resources,
    outputs: {
      bucket_name: { value: 'lesson17-ab5c3665', type: 'string' },
      db_password: { value: 'hunter2', type: 'string', sensitive: true },
    },
  };
}

/** Version 2: a second marker added, random_id.old removed, the "eu" VPC's cidr_block and tags changed; outputs changed and added. */
function version2(): { resources: Resource[]; outputs: Record<string, unknown> } {
  const resources = sampleResources() as Resource[];
  const vpc = resources.find((r) => r.module === 'module.net')!;
  const eu = vpc.instances[0]!;
  eu.index_key = 'eu';
  eu.attributes.cidr_block = '10.18.0.0/16';
  eu.attributes.tags = { Name: 'lesson17-eu' };
  eu.attributes.tags_all = { ManagedBy: 'terraform', Name: 'lesson17-eu' };
  return {
    resources,
    outputs: {
      bucket_name: { value: 'lesson17-ab5c3665', type: 'string' },
      db_password: { value: 'correct horse battery staple', type: 'string', sensitive: true },
      vpc_id: { value: 'vpc-0a1b2c3d4e5f60718', type: 'string' },
    },
  };
}

describe('statelock state diff', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
    for (const [key, versions] of [
      [KEY, [version1(), version2()]],
      [FIRST, [version1()]],
    ] as const) {
      const address = `${server.url}/state/${key}`;
      const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
      for (const v of versions) await tf.apply([makeState({ serial: 1, lineage: 'x', ...v })]);
      tf.close();
    }
  });
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);

  test('default (previous → current), human: +, -, ~ with the changed attributes, outputs, the summary line', async () => {
    const r = await cli('state', 'diff', KEY);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        `${KEY}: serial 1 (seq 1) → serial 2 (seq 2)`,
        '+ aws_s3_object.marker[1]',
        '~ module.net.aws_vpc.main["eu"]  (cidr_block, tags, tags_all)',
        '- random_id.old',
        'Outputs:',
        '~ output.db_password  (sensitive)',
        '+ output.vpc_id',
        '1 added, 1 changed, 1 removed',
        '',
      ].join('\n'),
    );
    assert.doesNotMatch(r.stdout, /hunter2|correct horse|10\.18\.0\.0/, 'names only, never values');
  });

  test('FROM TO serials, --json: the API diff structure', async () => {
    const r = await cli('state', 'diff', KEY, '1', '2', '--json');
    assert.equal(r.code, 0, r.stderr);
    const diff = JSON.parse(r.stdout) as Record<string, unknown> & { from: { serial: number; seq: number }; to: { serial: number; seq: number } };
    assert.deepEqual(diff, (await rawRequest(`${server.url}/api/v1/diff/${KEY}?fromSerial=1&toSerial=2`)).json());
    assert.equal(diff.key, KEY);
    assert.deepEqual([diff.from.serial, diff.from.seq, diff.to.serial, diff.to.seq], [1, 1, 2, 2]);
    assert.deepEqual(diff.resources, [
      { address: 'aws_s3_object.marker[1]', change: 'added' },
      { address: 'module.net.aws_vpc.main["eu"]', change: 'changed', attributes: ['cidr_block', 'tags', 'tags_all'] },
      { address: 'random_id.old', change: 'removed' },
    ]);
    assert.deepEqual(diff.outputs, [
      { name: 'db_password', change: 'changed', sensitive: true },
      { name: 'vpc_id', change: 'added', sensitive: false },
    ]);
    assert.deepEqual(diff.summary, { added: 1, removed: 1, changed: 1 });
  });

  test('TO before FROM reverses it; FROM alone compares with the current version', async () => {
    const back = await cli('state', 'diff', KEY, '2', '1');
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /^- aws_s3_object\.marker\[1\]$/m);
    assert.match(back.stdout, /^\+ random_id\.old$/m);
    assert.match(back.stdout, /^- output\.vpc_id$/m);
    assert.match(back.stdout, /^1 added, 1 changed, 1 removed$/m);
    const fromOnly = await cli('state', 'diff', KEY, '1');
    assert.equal(fromOnly.stdout, (await cli('state', 'diff', KEY)).stdout);
    const same = await cli('state', 'diff', KEY, '2', '2');
    assert.match(same.stdout, /^No changes to resources or outputs\.\n0 added, 0 changed, 0 removed\n$/m);
  });

  test('the first version: everything added', async () => {
    const r = await cli('state', 'diff', FIRST);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `${FIRST}: serial 1 (seq 1), the first version`);
    assert.deepEqual(lines.slice(1, 7), [
      '+ aws_s3_bucket.lesson17',
      '+ aws_s3_object.marker[0]',
      '+ module.net.aws_vpc.main["eu"]',
      '+ random_id.old',
      '+ random_id.suffix',
      'Outputs:',
    ]);
    assert.equal(lines.at(-1), '5 added, 0 changed, 0 removed');
    const json = JSON.parse((await cli('state', 'diff', FIRST, '--json')).stdout) as { from: unknown };
    assert.equal(json.from, null);
  });

  test('not found: exit 4; bad serials: exit 2', async () => {
    const noSerial = await cli('state', 'diff', KEY, '1', '9');
    assert.equal(noSerial.code, 4, noSerial.stderr);
    assert.match(noSerial.stderr, /has no version with serial 9/);
    assert.equal((await cli('state', 'diff', 'acme/none')).code, 4);
    assert.equal((await cli('state', 'diff', KEY, 'one')).code, 2);
    assert.equal((await cli('state', 'diff')).code, 2);
    assert.equal((await cli('state', 'diff', KEY, '1', '2', '3')).code, 2);
  });
});
