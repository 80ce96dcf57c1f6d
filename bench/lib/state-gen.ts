import { rng } from '../../test/support/rng.js';
export { rng };

/**
 * Realistic Terraform v4 state bodies (2-space indent, trailing newline, as Terraform writes them):
 * AWS-like resource instances with random IDs, ARNs, IPs, tags and base64 `private` blobs, so that
 * sizes and compressibility resemble real states. Deterministic (seeded), so every run sends the same bytes.
 */

export const LINEAGE = '6f1c3a52-9b7e-4d0a-8c2f-3e5b7a9d1c40';


const hex = (r: () => number, n: number) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');
const b64 = (r: () => number, n: number) => {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  return Array.from({ length: n }, () => abc[Math.floor(r() * 64)]).join('');
};
const pick = <T>(r: () => number, xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;

const TYPES = ['aws_instance', 'aws_security_group', 'aws_s3_bucket', 'aws_iam_role', 'aws_subnet', 'aws_lb_target_group'] as const;

/** One resource entry of `resources`, as an object. `revision` changes a few attributes. */
export function resource(index: number, revision = 0): Record<string, unknown> {
  const r = rng(index * 7919 + 17);
  const type = TYPES[index % TYPES.length]!;
  const id = `${type.split('_')[1]!.slice(0, 3)}-${hex(r, 17)}`;
  const rev = rng(index * 104729 + revision * 31 + 5);
  const attributes: Record<string, unknown> = {
    arn: `arn:aws:ec2:eu-west-1:123456789012:${type.slice(4)}/${id}`,
    id,
    ami: `ami-${hex(r, 17)}`,
    availability_zone: pick(r, ['eu-west-1a', 'eu-west-1b', 'eu-west-1c']),
    instance_type: pick(r, ['t3.micro', 't3.small', 'm6i.large', 'c6g.xlarge']),
    private_ip: `10.${Math.floor(rev() * 255)}.${Math.floor(rev() * 255)}.${Math.floor(rev() * 255)}`,
    public_dns: `ec2-${Math.floor(r() * 255)}-${Math.floor(r() * 255)}.eu-west-1.compute.amazonaws.com`,
    subnet_id: `subnet-${hex(r, 17)}`,
    vpc_security_group_ids: [`sg-${hex(r, 17)}`, `sg-${hex(r, 17)}`],
    monitoring: r() < 0.5,
    ebs_optimized: false,
    root_block_device: [
      { delete_on_termination: true, device_name: '/dev/xvda', encrypted: true, iops: 3000, kms_key_id: `arn:aws:kms:eu-west-1:123456789012:key/${hex(r, 8)}-${hex(r, 4)}-${hex(r, 4)}-${hex(r, 12)}`, throughput: 125, volume_id: `vol-${hex(r, 17)}`, volume_size: 8 + Math.floor(r() * 200), volume_type: 'gp3' },
    ],
    tags: { Name: `${type}-${index}`, Environment: 'prod', Team: pick(r, ['platform', 'payments', 'search']), Revision: String(revision), Commit: hex(rev, 40) },
    tags_all: { Name: `${type}-${index}`, Environment: 'prod', ManagedBy: 'terraform' },
    timeouts: null,
    user_data: hex(r, 40),
  };
  return {
    mode: 'managed',
    type,
    name: `${type.slice(4)}_${index}`,
    provider: 'provider["registry.terraform.io/hashicorp/aws"]',
    instances: [
      {
        schema_version: 1,
        attributes,
        sensitive_attributes: [],
        identity_schema_version: 0,
        private: b64(rev, 160),
        dependencies: [`aws_subnet.subnet_${index % 16}`, `aws_security_group.sg_${index % 8}`],
      },
    ],
  };
}

/** A resource rendered at the depth of `resources[]` in a 2-space-indented state. */
export function renderResource(index: number, revision = 0): string {
  return '    ' + JSON.stringify(resource(index, revision), null, 2).replace(/\n/g, '\n    ');
}

function head(serial: number): string {
  return `{\n  "version": 4,\n  "terraform_version": "1.15.0",\n  "serial": ${serial},\n  "lineage": "${LINEAGE}",\n  "outputs": {\n    "vpc_id": {\n      "value": "vpc-0a1b2c3d4e5f67890",\n      "type": "string"\n    }\n  },\n  "resources": [\n`;
}
const TAIL = '\n  ],\n  "check_results": null\n}\n';

/** Builds a body for any serial from pre-rendered resources (the big middle is shared between serials). */
export class StateTemplate {
  constructor(private readonly middle: Buffer) {}

  /** Resources enough for about `targetBytes` bytes. */
  static ofSize(targetBytes: number): StateTemplate {
    const parts: string[] = [];
    let size = head(0).length + TAIL.length;
    for (let i = 0; size < targetBytes; i++) {
      const s = renderResource(i);
      parts.push(s);
      size += s.length + 2;
    }
    return new StateTemplate(Buffer.from(parts.join(',\n')));
  }

  body(serial: number): Buffer {
    return Buffer.concat([Buffer.from(head(serial)), this.middle, Buffer.from(TAIL)]);
  }
}

/**
 * `count` successive versions of one state (same lineage, serial 1, 2, …): each version changes
 * `changesPerVersion` resources (new Revision tag, commit, private IP and private blob).
 */
export function versionSeries(targetBytes: number, count: number, changesPerVersion = 3): Buffer[] {
  const rendered: string[] = [];
  let size = head(0).length + TAIL.length;
  for (let i = 0; size < targetBytes; i++) {
    const s = renderResource(i);
    rendered.push(s);
    size += s.length + 2;
  }
  const revisions = rendered.map(() => 0);
  const r = rng(4242);
  const out: Buffer[] = [];
  for (let v = 1; v <= count; v++) {
    if (v > 1) {
      for (let c = 0; c < changesPerVersion; c++) {
        const i = Math.floor(r() * rendered.length);
        revisions[i]!++;
        rendered[i] = renderResource(i, revisions[i]!);
      }
    }
    out.push(Buffer.from(head(v) + rendered.join(',\n') + TAIL));
  }
  return out;
}
