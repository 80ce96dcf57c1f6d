import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countInstances, diffStates, instanceAddress, MASKED } from '../../src/state/state-diff.js';

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

describe('diffStates with values', () => {
  const v1 = {
    resources: [
      res({ type: 'aws_db_instance', name: 'db' }, [inst({ instance_class: 'db.t3.micro', password: 'hunter2', endpoint: 'a' }, { sensitive_attributes: [[{ type: 'get_attr', value: 'endpoint' }]] })]),
      res({ type: 'aws_iam_access_key', name: 'k' }, [inst({ user: 'u1', secret: 's-one' })]),
    ],
    outputs: { url: { value: 'u1', type: 'string' }, pw: { value: 'p1', type: 'string', sensitive: true } },
  };
  const v2 = {
    resources: [
      res({ type: 'aws_db_instance', name: 'db' }, [inst({ instance_class: 'db.t3.small', password: 'hunter3', endpoint: 'b' }, { sensitive_attributes: [[{ type: 'get_attr', value: 'endpoint' }]] })]),
      res({ type: 'aws_iam_access_key', name: 'k' }, [inst({ user: 'u2', secret: 's-two' }, { sensitive_attributes: ['.user'] })]),
    ],
    outputs: { url: { value: 'u2', type: 'string' }, pw: { value: 'p2', type: 'string', sensitive: true } },
  };

  test('changed attributes carry before and after; sensitive ones are masked, whichever way they are marked', () => {
    const d = diffStates(v1, v2, { values: true });
    const db = d.resources.find((r) => r.address === 'aws_db_instance.db')!;
    assert.deepEqual(db.values, {
      endpoint: { before: MASKED, after: MASKED }, // sensitive_attributes
      instance_class: { before: 'db.t3.micro', after: 'db.t3.small' },
      password: { before: MASKED, after: MASKED }, // named like a secret
    });
    const key = d.resources.find((r) => r.address === 'aws_iam_access_key.k')!;
    assert.deepEqual(key.values, { secret: { before: MASKED, after: MASKED }, user: { before: MASKED, after: MASKED } }, 'sensitive in the newer version only is still masked in both');
    assert.deepEqual(d.outputs, [
      { name: 'pw', change: 'changed', sensitive: true, before: MASKED, after: MASKED },
      { name: 'url', change: 'changed', sensitive: false, before: 'u1', after: 'u2' },
    ]);
    const text = JSON.stringify(d);
    for (const secret of ['hunter2', 'hunter3', 's-one', 's-two', 'p1', 'p2', '"a"', '"b"']) assert.ok(!text.includes(secret), `${secret} never appears`);
  });

  test('without values nothing but names is returned', () => {
    const d = diffStates(v1, v2);
    assert.equal(JSON.stringify(d).includes('db.t3'), false);
    assert.equal(d.resources[0]!.values, undefined);
  });

  test('countInstances counts resource instances', () => {
    assert.equal(countInstances(v1), 2);
    assert.equal(countInstances({ resources: [res({ type: 't', name: 'n' }, [inst({}, { index_key: 0 }), inst({}, { index_key: 1 })])] }), 2);
    assert.equal(countInstances(null), 0);
  });
});
