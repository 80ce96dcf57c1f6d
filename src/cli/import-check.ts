import { stableJson } from '../shared/stable-json.js';
/**
 * The client-side checks of `terraform state push` (statemgr.CheckValidImport,
 * /work/shared/reference/terraform-http-backend.md §4.4), with Terraform's exact messages.
 */

/** What `state push` needs to know about a state file: its header, and its content for comparisons. */
export interface StateFileView {
  serial: number;
  lineage: string;
  /** OpenTofu client-side encrypted envelope (`encrypted_data`, no `version`). */
  encrypted: boolean;
  doc: Record<string, unknown>;
}

const HEADER_KEYS = new Set(['version', 'terraform_version', 'serial', 'lineage']);

/**
 * Reads a state file as `state push` accepts it: a JSON object that is a versioned state or an
 * OpenTofu encrypted envelope, with an integer serial and a string lineage (the server refuses others).
 * @throws Error with the reason, for `Error reading source state "<path>": <reason>`.
 */
export function readStateFile(bytes: Buffer): StateFileView {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`the file could not be parsed as JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('the file is not a JSON object');
  const d = doc as Record<string, unknown>;
  const encrypted = 'encrypted_data' in d && !('version' in d);
  if (!encrypted && d.version === undefined) {
    throw new Error('the state file does not have a "version" attribute, which is required to identify the format version');
  }
  if (typeof d.serial !== 'number' || !Number.isSafeInteger(d.serial) || d.serial < 0) throw new Error('"serial" must be a non-negative integer');
  if (typeof d.lineage !== 'string') throw new Error('"lineage" must be a string');
  return { serial: d.serial, lineage: d.lineage, encrypted, doc: d };
}

/** states.State.Empty(): no resources and no root outputs. An encrypted envelope is never empty. */
export function isEmptyState(s: StateFileView): boolean {
  if (s.encrypted) return false;
  const { resources, outputs } = s.doc;
  const noResources = !Array.isArray(resources) || resources.length === 0;
  const noOutputs = typeof outputs !== 'object' || outputs === null || Object.keys(outputs).length === 0;
  return noResources && noOutputs;
}

/**
 * statefile.StatesMarshalEqual: the two states are the same apart from their header (format version,
 * terraform_version, serial, lineage); object key order never counts.
 */
export function sameContent(a: StateFileView, b: StateFileView): boolean {
  return contentKey(a) === contentKey(b);
}

/**
 * statemgr.CheckValidImport: null when `incoming` may replace `existing`, else Terraform's message.
 * - no destination state, or one with no resources and no outputs: always allowed;
 * - either lineage empty: allowed (legacy states);
 * - other lineage, lower serial, or same serial with other content: refused.
 */
export function checkValidImport(incoming: StateFileView, existing: StateFileView | null): string | null {
  if (existing === null || isEmptyState(existing)) return null;
  if (existing.lineage === '' || incoming.lineage === '') return null;
  if (existing.lineage !== incoming.lineage) {
    return `cannot import state with lineage ${JSON.stringify(incoming.lineage)} over unrelated state with lineage ${JSON.stringify(existing.lineage)}`;
  }
  if (existing.serial > incoming.serial) {
    return `cannot import state with serial ${incoming.serial} over newer state with serial ${existing.serial}`;
  }
  if (existing.serial === incoming.serial && !sameContent(incoming, existing)) {
    return `cannot overwrite existing state with serial ${incoming.serial} with a different state that has the same serial`;
  }
  return null;
}

function contentKey(s: StateFileView): string {
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.doc)) if (!(s.encrypted ? k === 'serial' || k === 'lineage' : HEADER_KEYS.has(k))) rest[k] = v;
  if (!s.encrypted) {
    // Terraform writes these even when empty: a file without them equals one with the empty values.
    rest.outputs ??= {};
    rest.resources ??= [];
    rest.check_results ??= null;
  }
  return stableJson(rest);
}
