/**
 * The one error registry: every refusal statelock can give, with its code, HTTP status and message
 * template. Handlers never invent a status or message; they throw a {@link StatelockError} naming a code.
 * docs/errors.md lists every entry, and test/errors-doc.test.ts keeps the two in sync.
 *
 * Templates use `{name}` placeholders filled from the error's params.
 */
export const ERROR_REGISTRY = {
  INVALID_KEY: { status: 400, message: 'invalid state key: {reason}' },
  INVALID_STATE: { status: 400, message: 'invalid state: {reason}' },
  INVALID_LOCK_INFO: { status: 400, message: 'invalid lock info: {reason}' },
  INVALID_SESSION: { status: 400, message: 'invalid session request: {reason}' },
  INVALID_QUERY: { status: 400, message: 'invalid query parameter {name}: {reason}' },
  CONTENT_MD5_MISMATCH: { status: 400, message: 'Content-MD5 {given} does not match the body (md5 {actual}): the body was altered or truncated' },
  NOT_FOUND: { status: 404, message: 'no such endpoint: {path}' },
  STATE_NOT_FOUND: { status: 404, message: 'no state stored at key {key}' },
  VERSION_NOT_FOUND: { status: 404, message: 'key {key} has no version {which}' },
  LOCK_NOT_FOUND: { status: 404, message: 'key {key} is not locked' },
  SESSION_NOT_FOUND: { status: 404, message: 'no session {session}' },
  REJECTED_WRITE_NOT_FOUND: { status: 404, message: 'key {key} has no rejected write {id}' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method {method} is not allowed on {path}; allowed: {allowed}' },
  LINEAGE_MISMATCH: { status: 409, message: 'cannot import state with lineage "{incoming}" over unrelated state with lineage "{current}"' },
  SERIAL_LOWER: { status: 409, message: 'cannot import state with serial {incoming} over newer state with serial {current}' },
  SERIAL_SAME_DIFFERENT_CONTENT: { status: 409, message: 'cannot overwrite existing state with serial {serial} with a different state that has the same serial' },
  LOCK_ID_MISMATCH: { status: 409, message: 'lock ID "{given}" does not match the lock held on {key} (held by ID "{holder}")' },
  RESTORE_ENCRYPTED: { status: 422, message: 'cannot restore version {seq} of {key}: it is an OpenTofu encrypted state, whose serial is sealed inside the ciphertext; pull it and push it with `tofu state push` instead' },
  DIFF_ENCRYPTED: { status: 422, message: 'cannot diff {key}: version {seq} is an OpenTofu encrypted state' },
  SESSION_ENDED: { status: 409, message: 'session {session} has ended ({reason}); start a new one' },
  HOLDER_ALIVE: { status: 409, message: 'refusing to force-unlock {key}: its holder is alive ({evidence}); unlocking a live apply lets a second one run beside it and can corrupt the state. Override with --even-if-alive (API: evenIfAlive=true) only if you know better; it is audited' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'request body exceeds the limit of {limit} bytes' },
  STATE_LOCKED: { status: 423, message: 'state {key} is locked by ID "{holder}" ({operation}, {who}, since {created})' },
  LOCK_FENCED: { status: 423, message: 'lock ID "{given}" was released from {key}: this write comes from a holder that lost its lock and was refused; its body is kept as a rejected write (GET /api/v1/rejected/{key})' },
  STATE_LOCKED_NO_ID: { status: 423, message: 'state {key} is locked by ID "{holder}" and the write carries no lock ID (?ID=); writes without the lock (-lock=false) are refused while another holds it' },
  SHUTTING_DOWN: { status: 503, message: 'server is shutting down; retry' },
  STORE_UNAVAILABLE: { status: 503, message: 'the database is unavailable ({reason}); retry' },
  STORE_FULL: { status: 507, message: 'the disk holding the database is full ({reason}): nothing was stored; free space and retry' },
  INTERNAL: { status: 500, message: 'internal error: {reason}' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;
export type ErrorParams = Record<string, string | number>;

/** Fills a registry template; a placeholder without a param stays visible rather than vanishing. */
export function formatMessage(code: ErrorCode, params: ErrorParams): string {
  return ERROR_REGISTRY[code].message.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  );
}

/** A coded, expected refusal. `holderBody` is the lock-info JSON of the current holder, verbatim, when the refusal is about a lock. */
export class StatelockError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly params: ErrorParams;
  readonly holderBody: string | undefined;

  constructor(code: ErrorCode, params: ErrorParams = {}, holderBody?: string) {
    super(formatMessage(code, params));
    this.name = 'StatelockError';
    this.code = code;
    this.status = ERROR_REGISTRY[code].status;
    this.params = params;
    this.holderBody = holderBody;
  }
}

export function isStatelockError(err: unknown): err is StatelockError {
  return err instanceof StatelockError;
}
