import { stableJson } from '../shared/stable-json.js';

/**
 * What changed between two versions of a state, by resource instance address and output name.
 * Values are never included (a state holds secrets; the dashboard and CLI show names only).
 */
export interface ResourceChange {
  /** e.g. `module.net.aws_vpc.main["eu"]`, `aws_s3_object.marker[0]`, `data.aws_caller_identity.me`; deposed objects get ` (deposed <key>)`. */
  address: string;
  change: 'added' | 'removed' | 'changed';
  /** For `changed`: the top-level attribute names whose values differ (and `status` when tainted-ness changed). */
  attributes?: string[];
  /** With `values`: each changed attribute's value before and after, {@link MASKED} when sensitive. */
  values?: Record<string, { before: unknown; after: unknown }>;
}

/** What a sensitive value is shown as. */
export const MASKED = '(sensitive)';

export interface OutputChange {
  name: string;
  change: 'added' | 'removed' | 'changed';
  sensitive: boolean;
  /** With `values`: the output's value before and after ({@link MASKED} when sensitive; absent when it did not exist). */
  before?: unknown;
  after?: unknown;
}

export interface StateDiff {
  resources: ResourceChange[];
  outputs: OutputChange[];
  summary: { added: number; removed: number; changed: number };
}

interface InstanceObject {
  attributes: Record<string, unknown>;
  status: string | null;
  /** Top-level attribute names the state marks sensitive (wholly or in part). */
  sensitive: Set<string>;
}

/** Attribute names that hold secrets whatever the provider says (masked even when not marked sensitive). */
const SECRET_NAME = /password|secret|token|private_key|api_key|access_key|credential|passphrase/i;

/**
 * Diffs two parsed v4 state documents (`from` null = nothing before). Pure. With `values`, changed
 * attributes and outputs carry their values before and after, sensitive ones masked: attributes listed in
 * either version's `sensitive_attributes`, attributes named like secrets, and sensitive outputs.
 */
export function diffStates(from: unknown, to: unknown, opts: { values?: boolean } = {}): StateDiff {
  const before = instances(from);
  const after = instances(to);
  const resources: ResourceChange[] = [];
  for (const [address, obj] of after) {
    const old = before.get(address);
    if (!old) resources.push({ address, change: 'added' });
    else {
      const attributes = changedAttributes(old, obj);
      if (attributes.length) resources.push({ address, change: 'changed', attributes, ...(opts.values ? { values: changedValues(old, obj, attributes) } : {}) });
    }
  }
  for (const address of before.keys()) if (!after.has(address)) resources.push({ address, change: 'removed' });
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));

  const outputs: OutputChange[] = [];
  const outBefore = outputsOf(from);
  const outAfter = outputsOf(to);
  for (const [name, o] of outAfter) {
    const old = outBefore.get(name);
    const sensitive = o.sensitive === true || old?.sensitive === true;
    const shown = (v: unknown) => (opts.values ? { ...(old ? { before: sensitive ? MASKED : old.value } : {}), after: sensitive ? MASKED : v } : {});
    if (!old) outputs.push({ name, change: 'added', sensitive, ...shown(o.value) });
    else if (stableJson(old.value) !== stableJson(o.value) || stableJson(old.type) !== stableJson(o.type)) outputs.push({ name, change: 'changed', sensitive, ...shown(o.value) });
  }
  for (const [name, o] of outBefore) {
    if (!outAfter.has(name)) outputs.push({ name, change: 'removed', sensitive: o.sensitive === true, ...(opts.values ? { before: o.sensitive === true ? MASKED : o.value } : {}) });
  }
  outputs.sort((a, b) => (a.name < b.name ? -1 : 1));

  const count = (c: ResourceChange['change']) => resources.filter((r) => r.change === c).length;
  return { resources, outputs, summary: { added: count('added'), removed: count('removed'), changed: count('changed') } };
}

/** How many resource instances a parsed state document holds. Pure. */
export function countInstances(doc: unknown): number {
  return instances(doc).size;
}

/** Terraform's resource instance address for one entry of `resources[].instances[]`. */
export function instanceAddress(resource: Record<string, unknown>, instance: Record<string, unknown>): string {
  const module = typeof resource.module === 'string' && resource.module ? `${resource.module}.` : '';
  const mode = resource.mode === 'data' ? 'data.' : '';
  const key = instance.index_key;
  const index = key === undefined || key === null ? '' : typeof key === 'number' ? `[${key}]` : `[${JSON.stringify(key)}]`;
  const deposed = typeof instance.deposed === 'string' && instance.deposed ? ` (deposed ${instance.deposed})` : '';
  return `${module}${mode}${String(resource.type)}.${String(resource.name)}${index}${deposed}`;
}

function instances(doc: unknown): Map<string, InstanceObject> {
  const out = new Map<string, InstanceObject>();
  const resources = (doc as { resources?: unknown } | null)?.resources;
  if (!Array.isArray(resources)) return out;
  for (const r of resources as Array<Record<string, unknown>>) {
    if (!Array.isArray(r.instances)) continue;
    for (const i of r.instances as Array<Record<string, unknown>>) {
      const attributes = (i.attributes ?? i.attributes_flat ?? {}) as Record<string, unknown>;
      out.set(instanceAddress(r, i), { attributes, status: typeof i.status === 'string' ? i.status : null, sensitive: sensitiveNames(i.sensitive_attributes) });
    }
  }
  return out;
}

function changedAttributes(a: InstanceObject, b: InstanceObject): string[] {
  const names = new Set([...Object.keys(a.attributes), ...Object.keys(b.attributes)]);
  const changed = [...names].filter((n) => stableJson(a.attributes[n]) !== stableJson(b.attributes[n])).sort();
  if (a.status !== b.status) changed.push('status');
  return changed;
}

function changedValues(a: InstanceObject, b: InstanceObject, names: string[]): Record<string, { before: unknown; after: unknown }> {
  const out: Record<string, { before: unknown; after: unknown }> = {};
  for (const n of names) {
    if (n === 'status' && !(n in a.attributes) && !(n in b.attributes)) {
      out[n] = { before: a.status, after: b.status };
      continue;
    }
    const masked = a.sensitive.has(n) || b.sensitive.has(n) || SECRET_NAME.test(n);
    out[n] = masked ? { before: MASKED, after: MASKED } : { before: a.attributes[n] ?? null, after: b.attributes[n] ?? null };
  }
  return out;
}

/**
 * The top-level attribute names of an instance's `sensitive_attributes`: a list of paths, each a list of
 * steps such as `{"type":"get_attr","value":"password"}` (or, in other writers, one such step or a
 * `.password`-style text). A path into an attribute makes the whole attribute sensitive.
 */
function sensitiveNames(raw: unknown): Set<string> {
  const names = new Set<string>();
  if (!Array.isArray(raw)) return names;
  for (const path of raw) {
    const first: unknown = Array.isArray(path) ? path[0] : path;
    if (typeof first === 'string') {
      const m = /^\.?([^.[\]]+)/.exec(first);
      if (m) names.add(m[1]!);
    } else if (typeof first === 'object' && first !== null && typeof (first as { value?: unknown }).value === 'string') names.add((first as { value: string }).value);
  }
  return names;
}

function outputsOf(doc: unknown): Map<string, { value?: unknown; type?: unknown; sensitive?: unknown }> {
  const outputs = (doc as { outputs?: unknown } | null)?.outputs;
  if (typeof outputs !== 'object' || outputs === null) return new Map();
  return new Map(Object.entries(outputs as Record<string, { value?: unknown; type?: unknown; sensitive?: unknown }>));
}
