/**
 * The one error registry: every refusal statelock can give, with its code, HTTP status and message
 * template. Handlers never invent a status or message; they throw a {@link StatelockError} naming a code.
 * docs/errors.md lists every entry, and test/errors-doc.test.ts keeps the two in sync.
 *
 * Templates use `{name}` placeholders filled from the error's params.
 */
export const ERROR_REGISTRY = {
  INVALID_KEY: { status: 400, message: 'invalid state key: {reason}', dynamodb: 'ValidationException' },
  INVALID_STATE: { status: 400, message: 'invalid state: {reason}' },
  INVALID_LOCK_INFO: { status: 400, message: 'invalid lock info: {reason}', dynamodb: 'ValidationException' },
  INVALID_SESSION: { status: 400, message: 'invalid session request: {reason}' },
  INVALID_QUERY: { status: 400, message: 'invalid query parameter {name}: {reason}' },
  REQUEST_ABORTED: { status: 400, message: 'the request body did not arrive whole ({reason}): nothing was stored', s3: 'IncompleteBody', dynamodb: 'SerializationException' },
  CONTENT_MD5_MISMATCH: { status: 400, message: 'Content-MD5 {given} does not match the body (md5 {actual}): the body was altered or truncated' },
  UNAUTHENTICATED: { status: 401, message: 'authentication required: {reason}', s3: 'AccessDenied', dynamodb: 'UnrecognizedClientException' },
  FORBIDDEN: { status: 403, message: 'principal "{principal}" lacks the {permission} permission on {target}', s3: 'AccessDenied', dynamodb: 'AccessDeniedException' },
  CSRF_REJECTED: { status: 403, message: 'refused a cross-site request: {reason}' },
  INVALID_TOKEN_REQUEST: { status: 400, message: 'invalid token request: {reason}' },
  TOKEN_NOT_FOUND: { status: 404, message: 'no live token named {name}' },
  TOKEN_LAST_ADMIN: { status: 409, message: 'refusing to revoke {name}: it is the last live token, or the last with admin on "*"; revoking it would switch authentication off (or lock every operator out). Create its replacement first' },
  TOKEN_EXISTS: { status: 409, message: 'a live token named {name} already exists; revoke it first or choose another name' },
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
  LOCK_ID_MISMATCH: { status: 409, message: 'lock ID "{given}" does not match the lock held on {key} (held by ID "{holder}")', dynamodb: 'ConditionalCheckFailedException' },
  RESTORE_ENCRYPTED: { status: 422, message: 'cannot restore version {seq} of {key}: it is an OpenTofu encrypted state, whose serial is sealed inside the ciphertext; pull it and push it with `tofu state push` instead' },
  DIFF_ENCRYPTED: { status: 422, message: 'cannot diff {key}: version {seq} is an OpenTofu encrypted state' },
  SESSION_ENDED: { status: 409, message: 'session {session} has ended ({reason}); start a new one' },
  HOLDER_ALIVE: { status: 409, message: 'refusing to force-unlock {key}: its holder is alive ({evidence}); unlocking a live apply lets a second one run beside it and can corrupt the state. Override with --even-if-alive (API: evenIfAlive=true) only if you know better; it is audited', dynamodb: 'ConditionalCheckFailedException' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'request body exceeds the limit of {limit} bytes', s3: 'EntityTooLarge', dynamodb: 'ValidationException' },
  STATE_LOCKED: { status: 423, message: 'state {key} is locked by ID "{holder}" ({operation}, {who}, since {created})', dynamodb: 'ConditionalCheckFailedException' },
  LOCK_FENCED: { status: 423, message: 'lock ID "{given}" was released from {key}: this write comes from a holder that lost its lock and was refused; its body is kept as a rejected write (GET /api/v1/rejected/{key})' },
  STATE_LOCKED_NO_ID: { status: 423, message: 'state {key} is locked by ID "{holder}" and the write carries no lock ID (?ID=); writes without the lock (-lock=false) are refused while another holds it' },
  AWS_AUTH_MISSING: { status: 403, message: 'the request is not signed: S3, DynamoDB and STS requests need an AWS Signature Version 4 Authorization header', s3: 'AccessDenied', dynamodb: 'MissingAuthenticationTokenException' },
  AWS_AUTH_MALFORMED: { status: 400, message: 'malformed AWS Signature Version 4 authorization: {reason}', s3: 'AuthorizationHeaderMalformed', dynamodb: 'IncompleteSignatureException' },
  AWS_UNKNOWN_ACCESS_KEY: { status: 403, message: 'the access key ID {accessKeyId} is not known to this server', s3: 'InvalidAccessKeyId', dynamodb: 'UnrecognizedClientException' },
  AWS_SIGNATURE_MISMATCH: { status: 403, message: 'the request signature we calculated does not match the signature you provided; check your secret access key and signing method', s3: 'SignatureDoesNotMatch', dynamodb: 'InvalidSignatureException' },
  AWS_CLOCK_SKEW: { status: 403, message: 'the difference between the request time {requestTime} and the server time {serverTime} is more than {maxSkew}', s3: 'RequestTimeTooSkewed', dynamodb: 'InvalidSignatureException' },
  AWS_PAYLOAD_HASH_MISMATCH: { status: 400, message: 'the x-amz-content-sha256 header {given} does not match the body (sha256 {actual})', s3: 'XAmzContentSHA256Mismatch', dynamodb: 'InvalidSignatureException' },
  AWS_BAD_DIGEST: { status: 400, message: 'the {header} you specified did not match the body received: {given} given, {actual} computed; nothing was stored', s3: 'BadDigest', dynamodb: 'ValidationException' },
  AWS_INVALID_DIGEST: { status: 400, message: 'the {header} you specified is not valid: {reason}', s3: 'InvalidDigest', dynamodb: 'ValidationException' },
  AWS_CHUNKED_MALFORMED: { status: 400, message: 'malformed aws-chunked body: {reason}', s3: 'IncompleteBody', dynamodb: 'SerializationException' },
  S3_NO_SUCH_BUCKET: { status: 404, message: 'the specified bucket does not exist: {bucket}', s3: 'NoSuchBucket' },
  S3_NO_SUCH_KEY: { status: 404, message: 'the specified key does not exist: {key}', s3: 'NoSuchKey' },
  S3_NO_SUCH_VERSION: { status: 404, message: 'the specified version {versionId} of {key} does not exist', s3: 'NoSuchVersion' },
  S3_NO_SUCH_UPLOAD: { status: 404, message: 'the specified multipart upload {uploadId} does not exist; it may have been completed or aborted', s3: 'NoSuchUpload' },
  S3_INVALID_BUCKET_NAME: { status: 400, message: 'invalid bucket name {bucket}: {reason}', s3: 'InvalidBucketName' },
  S3_BUCKET_EXISTS: { status: 409, message: 'bucket {bucket} already exists and is yours', s3: 'BucketAlreadyOwnedByYou' },
  S3_BUCKET_NOT_EMPTY: { status: 409, message: 'bucket {bucket} still holds states; delete them first', s3: 'BucketNotEmpty' },
  S3_INVALID_ARGUMENT: { status: 400, message: 'invalid argument {name}: {reason}', s3: 'InvalidArgument' },
  S3_MALFORMED_XML: { status: 400, message: 'the XML you provided was not well-formed or did not validate: {reason}', s3: 'MalformedXML' },
  S3_INVALID_PART: { status: 400, message: 'part {part} of upload {uploadId} was not uploaded or its ETag does not match', s3: 'InvalidPart' },
  S3_INVALID_PART_ORDER: { status: 400, message: 'the list of parts was not in ascending order', s3: 'InvalidPartOrder' },
  S3_ENTITY_TOO_SMALL: { status: 400, message: 'part {part} is {size} bytes; every part but the last must be at least 5 MiB', s3: 'EntityTooSmall' },
  S3_INVALID_RANGE: { status: 416, message: 'the requested range {range} is not satisfiable (the object is {size} bytes)', s3: 'InvalidRange' },
  S3_LOCK_HELD: { status: 412, message: 'at least one of the pre-conditions you specified did not hold: {key} is locked by ID "{holder}" ({operation}, {who}, since {created})', s3: 'PreconditionFailed' },
  S3_NOT_IMPLEMENTED: { status: 501, message: 'statelock does not implement {what}', s3: 'NotImplemented' },
  DYNAMODB_SERIALIZATION: { status: 400, message: 'the request body is not valid JSON: {reason}', dynamodb: 'SerializationException' },
  DYNAMODB_UNKNOWN_OPERATION: { status: 400, message: 'unknown operation {target}', dynamodb: 'UnknownOperationException' },
  DYNAMODB_VALIDATION: { status: 400, message: '{reason}', dynamodb: 'ValidationException' },
  DYNAMODB_TABLE_NOT_FOUND: { status: 400, message: 'Requested resource not found: Table: {table} not found', dynamodb: 'ResourceNotFoundException' },
  DYNAMODB_TABLE_EXISTS: { status: 400, message: 'Table already exists: {table}', dynamodb: 'ResourceInUseException' },
  DYNAMODB_CONDITION_FAILED: { status: 400, message: 'The conditional request failed', dynamodb: 'ConditionalCheckFailedException' },
  STS_INVALID_ACTION: { status: 400, message: 'could not find operation {action} for version {version}', s3: 'InvalidAction' },
  SHUTTING_DOWN: { status: 503, message: 'server is shutting down; retry', s3: 'ServiceUnavailable', dynamodb: 'ServiceUnavailable' },
  STORE_UNAVAILABLE: { status: 503, message: 'the database is unavailable ({reason}); retry', s3: 'ServiceUnavailable', dynamodb: 'ServiceUnavailable' },
  STORE_FULL: { status: 507, message: 'the disk holding the database is full ({reason}): nothing was stored; free space and retry' },
  ENCRYPTION_KEY_MISSING: { status: 500, message: 'this data is encrypted with key "{keyId}", which the server was not given; add it to STATELOCK_ENCRYPTION_KEY or --encryption-key-file (the newest key last)' },
  ENCRYPTION_FAILED: { status: 500, message: 'stored data under key "{keyId}" failed authentication: the key is not the one it was sealed with, or the data was altered on disk' },
  INSECURE_NO_AUTH: { status: 500, message: 'refusing to listen on {host} without authentication: no token exists yet. Start on loopback, create an admin token (`statelock token create --name admin --allow "*:admin"`), then restart on {host}; or pass --insecure-no-auth if a trusted network really is the only protection' },
  CHUNK_GONE: { status: 503, message: 'chunk {id} was stored when this write arrived but is gone now ({context}): a `statelock rekey` re-filed it under a key this server does not have yet, or it was swept. Nothing was stored; retry', s3: 'ServiceUnavailable', dynamodb: 'ServiceUnavailable' },
  CHUNK_MISSING: { status: 500, message: 'stored content is damaged: chunk {id} is missing from the database ({context}); restore the database from a backup' },
  INTERNAL: { status: 500, message: 'internal error: {reason}', s3: 'InternalError', dynamodb: 'InternalServerError' },
} as const satisfies Record<string, { status: number; message: string; s3?: string; dynamodb?: string }>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

/**
 * The error name an AWS client checks (S3's `<Code>`, DynamoDB's `__type` suffix), for the codes the S3,
 * DynamoDB and STS doors answer with. Codes without one travel under their statelock code.
 */
export function awsErrorName(code: ErrorCode, protocol: 's3' | 'dynamodb'): string | undefined {
  const entry = ERROR_REGISTRY[code] as { s3?: string; dynamodb?: string };
  return entry[protocol];
}
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
