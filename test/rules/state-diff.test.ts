import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { diffStates, instanceAddress } from '../../src/state/state-diff.js';

const res = (over: Record<string, unknown>, instances: Array<Record<string, unknown>>) => ({ mode: 'managed', provider: 'provider["registry.terraform.io/hashicorp/aws"]', ...over, instances });
const inst = (attributes: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ schema_version: 0, attributes, sensitive_attributes: [], ...extra });

describe('instanceAddress', () => {
  test('root, module, data, count, for_each and deposed addresses as Terraform writes them', () => {
    assert.equal(instanceAddress({ type: 'aws_s3_bucket', name: 'b', mode: 'managed' }, {}), 'aws_s3_bucket.b');
    assert.equal(instanceAddress({ module: 'module.net', type: 'aws_vpc', name: 'main', mode: 'managed' }, { index_key: 'eu' }), 'module.net.aws_vpc.main["eu"]');
    assert.equal(instanceAddress({ type: 'aws_s3_object', name: 'marker', mode: 'managed' }, { index_key: 0 }), 'aws_s3_object.marker[0]');
    assert.equal(instanceAddress({ type: 'aws_caller_identity', name: 'me', mode: 'data' }, {}), 'data.aws_caller_identity.me');
    assert.equal(instanceAddress({ module: 'module.a["x"].module.b', type: 't', name: 'n', mode: 'managed' }, { deposed: '00abc' }), 'module.a["x"].module.b.t.n (deposed 00abc)');
  });
});

describe('diffStates', () => {
  const before = {
    resources: [
      res({ type: 'random_id', name: 'suffix' }, [inst({ hex: 'a3f2', byte_length: 4 })]),
      res({ type: 'aws_s3_object', name: 'marker' }, [inst({ key: 'm0' }, { index_key: 0 })]),
      res({ module: 'module.net', type: 'aws_vpc', name: 'main' }, [inst({ cidr_block: '10.0.0.0/16', tags: { env: 'eu' } }, { index_key: 'eu' })]),
      res({ type: 'aws_instance', name: 'old' }, [inst({ ami: 'x' })]),
    ],
    outputs: { bucket: { value: 'b1', type: 'string' }, secret: { value: 's1', type: 'string', sensitive: true }, gone: { value: 1, type: 'number' } },
  };
  const after = {
    resources: [
      res({ type: 'random_id', name: 'suffix' }, [inst({ byte_length: 4, hex: 'a3f2' })]), // same values, other key order
      res({ type: 'aws_s3_object', name: 'marker' }, [inst({ key: 'm0' }, { index_key: 0 }), inst({ key: 'm1' }, { index_key: 1 })]),
      res({ module: 'module.net', type: 'aws_vpc', name: 'main' }, [inst({ cidr_block: '10.1.0.0/16', tags: { env: 'eu', team: 'x' } }, { index_key: 'eu', status: 'tainted' })]),
    ],
    outputs: { bucket: { value: 'b2', type: 'string' }, secret: { value: 's2', type: 'string', sensitive: true }, fresh: { value: true, type: 'bool' } },
  };

  test('finds added, removed and changed instances with the changed attribute names', () => {
    const d = diffStates(before, after);
    assert.deepEqual(d.resources, [
      { address: 'aws_instance.old', change: 'removed' },
      { address: 'aws_s3_object.marker[1]', change: 'added' },
      { address: 'module.net.aws_vpc.main["eu"]', change: 'changed', attributes: ['cidr_block', 'tags', 'status'] },
    ]);
    assert.deepEqual(d.summary, { added: 1, removed: 1, changed: 1 });
  });

  test('reports outputs by name only, marking sensitive ones', () => {
    const d = diffStates(before, after);
    assert.deepEqual(d.outputs, [
      { name: 'bucket', change: 'changed', sensitive: false },
      { name: 'fresh', change: 'added', sensitive: false },
      { name: 'gone', change: 'removed', sensitive: false },
      { name: 'secret', change: 'changed', sensitive: true },
    ]);
    assert.ok(!JSON.stringify(d).includes('s2'), 'no values leak into the diff');
  });

  test('from nothing, everything is added; identical states differ in nothing', () => {
    assert.equal(diffStates(null, after).summary.added, 4);
    assert.deepEqual(diffStates(after, JSON.parse(JSON.stringify(after))), { resources: [], outputs: [], summary: { added: 0, removed: 0, changed: 0 } });
  });
});
