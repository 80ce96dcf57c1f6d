import { StatelockError } from '../server/errors.js';
import { parseJsonObject } from '../shared/json-object.js';

/**
 * Terraform's LockInfo (`internal/states/statemgr/locker.go`): the JSON a client sends on LOCK, kept
 * verbatim in `raw` so that a refused client is shown exactly what the holder sent.
 */
export interface LockInfo {
  id: string;
  operation: string;
  info: string;
  who: string;
  version: string;
  created: string | null;
  path: string;
  /** The body exactly as received. */
  raw: string;
}

/** RFC 3339 date-time, as Go's time.Time unmarshals it (fraction optional, Z or ±hh:mm). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
/** The longest lock ID accepted. */
export const MAX_LOCK_ID_LENGTH = 256;
const FIELDS = ['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path'] as const;
type Field = (typeof FIELDS)[number];
/** The fields as Terraform and OpenTofu spell them. */
const EXACT = new Set<string>(FIELDS);
/** Lower-cased key → the field it names (Go matches keys case-insensitively). */
const FIELD_BY_LOWER = new Map<string, Field>(FIELDS.map((f) => [f.toLowerCase(), f]));

/**
 * Parses a LOCK (or non-empty UNLOCK) body. Keys match case-insensitively, as Go's decoder does;
 * unknown keys are kept in `raw` and otherwise ignored.
 * @throws StatelockError INVALID_LOCK_INFO when the body is not a flat JSON object with a non-empty
 *   string ID, string fields, and an RFC 3339 Created (null or absent is allowed, as in Go).
 */
export function parseLockInfo(body: Buffer): LockInfo {
  const { text: raw, doc } = parseJsonObject(body, invalid);
  // One slot per field, the last key naming it wins (as in Go). Keys as Terraform writes them are taken as they
  // are; only other spellings are lower-cased and looked up (this parse runs for every LOCK and UNLOCK).
  const values: Partial<Record<Field, unknown>> = {};
  for (const k of Object.keys(doc)) {
    const v = doc[k];
    if (typeof v === 'object' && v !== null) throw invalid(`field "${k}" is not a plain value: lock info must be a flat object`);
    const field = EXACT.has(k) ? (k as Field) : FIELD_BY_LOWER.get(k.toLowerCase());
    if (field) values[field] = v;
  }
  const id = text(values, 'ID');
  if (id === '') throw invalid('"ID" is missing or empty');
  // Terraform's and OpenTofu's IDs are UUIDs; a huge ID would only bloat the lock row and the audit trail.
  if (id.length > MAX_LOCK_ID_LENGTH) throw invalid(`"ID" is ${id.length} characters long; the limit is ${MAX_LOCK_ID_LENGTH}`);
  const createdValue = values.Created;
  let created: string | null = null;
  if (createdValue !== undefined && createdValue !== null) {
    if (typeof createdValue !== 'string' || !RFC3339.test(createdValue)) {
      throw invalid('"Created" must be an RFC 3339 timestamp');
    }
    created = createdValue;
  }
  return {
    id,
    operation: text(values, 'Operation'),
    info: text(values, 'Info'),
    who: text(values, 'Who'),
    version: text(values, 'Version'),
    created,
    path: text(values, 'Path'),
    raw,
  };
}

/** A string field's value; absent or null is ''. */
function text(values: Partial<Record<Field, unknown>>, field: Field): string {
  const v = values[field];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalid(`field "${field}" must be a string`);
  return v;
}

/**
 * OpenTofu's `force-unlock` sends a lock info that is zero-valued except for its ID
 * (`Created` = Go's zero time). Telling it apart lets the audit trail call it a force-unlock.
 */
export function isZeroValuedLockInfo(info: LockInfo): boolean {
  return (
    info.operation === '' &&
    info.who === '' &&
    info.version === '' &&
    info.info === '' &&
    (info.created === null || info.created.startsWith('0001-01-01T00:00:00'))
  );
}

function invalid(reason: string): StatelockError {
  return new StatelockError('INVALID_LOCK_INFO', { reason });
}
