/**
 * Small states that exercise every branch of the JSON scanner, for warming it up before real bodies arrive
 * (src/server/jit-warmup.ts on the event loop, the body worker's thread when it starts).
 */

/** A valid state with every construct the scanner distinguishes, at the top level and nested; indented and compact. */
export function syntheticStates(): Buffer[] {
  const instance = (i: number) => ({
    schema_version: i,
    attributes: {
      id: `i-${i.toString(16)}`,
      arn: `arn:aws:ec2:eu-west-1:123456789012:instance/i-${i}`,
      cpu: i * 1.5,
      ratio: -2.5e-3,
      big: 12345678901234,
      enabled: i % 2 === 0,
      disabled: false,
      nothing: null,
      tags: { Name: `web-${i}`, 'kubernetes.io/cluster': 'owned' },
      empty_list: [],
      empty_map: {},
      user_data: 'line one\nline "two"\ttab\\slash \u00e9\u2028 \u2603 \ud83d\ude00 \u0001',
      list: [1, 'two', true, null, { nested: [[], {}] }],
    },
    sensitive_attributes: [],
    dependencies: ['aws_vpc.main', 'aws_subnet.a'],
  });
  const state = {
    version: 4,
    terraform_version: '1.15.0',
    serial: 7,
    lineage: '0f6b4a2e-5c1d-4e8f-9a3b-7c2d1e0f9a8b',
    outputs: { vpc_id: { value: 'vpc-0a1b2c3d', type: 'string' }, count: { value: 3, type: 'number' }, flag: { value: true, type: 'bool' } },
    resources: Array.from({ length: 24 }, (_, i) => ({ mode: 'managed', type: 'aws_instance', name: `web_${i}`, provider: 'provider["registry.terraform.io/hashicorp/aws"]', instances: [instance(i)] })),
    check_results: null,
    empty: [],
    weight: 0.5,
    ok: true,
    off: false,
  };
  // Both layouts Terraform and other tools produce.
  return [Buffer.from(JSON.stringify(state, null, 2)), Buffer.from(JSON.stringify(state))];
}
