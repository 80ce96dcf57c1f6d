import { isAllowed } from '../../../auth/permissions.js';
import { createHash } from 'node:crypto';
import { StatelockError } from '../../../server/errors.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import { sendStream } from '../../../server/http-io.js';
import type { BodySource } from '../../../state/state-service.js';
import { digest, type Digests } from '../../../state/state-file.js';
import type { ByteRange } from '../../../store/content/body-reader.js';
import type { ObjectAddress } from './s3-addressing.js';
import { header, httpDate, md5HexOfBase64, quotedEtag, sendS3 } from './s3-response.js';

/** What GetObject/HeadObject serve: the bytes (streamed, whole or a range) and what S3 says about them. */
interface Served {
  size: number;
  stream(range?: ByteRange): AsyncIterable<Buffer | Buffer[]>;
  etag: string;
  lastModified: string;
  versionId: string | null;
  sha256Hex: string;
}

/**
 * GetObject / HeadObject. A state object is the state's current bytes (or `?versionId=<seq>`); a
 * `.tflock` object is the held lock's info exactly as its holder sent it, and does not exist while the
 * state is unlocked. `Range` gives 206 with Content-Range; `x-amz-checksum-mode: ENABLED` adds the
 * SHA-256 to full-object answers.
 * @throws StatelockError S3_NO_SUCH_KEY, S3_NO_SUCH_VERSION, S3_INVALID_RANGE, S3_INVALID_ARGUMENT
 */
export async function getObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  const served = addr.kind === 'lock' ? await readLockObject(deps, r, addr) : await readStateObject(deps, r, addr);
  const size = served.size;
  const range = parseRange(header(r, 'range'), size);
  const headers: Record<string, string> = {
    'x-amz-request-id': r.requestId,
    'Accept-Ranges': 'bytes',
    ETag: served.etag,
    'Last-Modified': httpDate(served.lastModified),
    ...(served.versionId ? { 'x-amz-version-id': served.versionId } : {}),
    ...sseCustomerEcho(r),
    ...responseOverrides(r),
  };
  // Streamed chunk by chunk: a range reads only the chunks it covers.
  // response-content-type overrides the type, as on S3.
  const contentType = headers['Content-Type'] ?? 'application/json';
  delete headers['Content-Type'];
  if (range) {
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
    await sendStream(r.ctx.req, r.ctx.res, 206, range.end - range.start + 1, served.stream(range), contentType, headers);
    return;
  }
  if (header(r, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED') {
    headers['x-amz-checksum-sha256'] = Buffer.from(served.sha256Hex, 'hex').toString('base64');
  }
  await sendStream(r.ctx.req, r.ctx.res, 200, size, served.stream(), contentType, headers);
}

async function readStateObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<Served> {
  const versionId = r.query.get('versionId');
  let found;
  if (versionId !== null) {
    const seq = parseVersionId(versionId);
    found = await deps.state.readVersion(addr.stateKey, { seq });
    if (!found) throw new StatelockError('S3_NO_SUCH_VERSION', { versionId, key: addr.objectKey });
  } else {
    found = await deps.state.read(addr.stateKey);
    if (!found) throw new StatelockError('S3_NO_SUCH_KEY', { key: addr.objectKey });
  }
  const { meta, body } = found;
  return { size: meta.size, stream: (range) => body.batches(range), etag: quotedEtag(md5HexOfBase64(meta.md5)), lastModified: meta.createdAt, versionId: String(meta.seq), sha256Hex: meta.sha256 };
}

async function readLockObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<Served> {
  const lock = await deps.locks.get(addr.stateKey);
  if (!lock) throw new StatelockError('S3_NO_SUCH_KEY', { key: addr.objectKey });
  // A lock file has one version, the held lock; statelock numbers no versions for it.
  const versionId = r.query.get('versionId');
  if (versionId !== null && versionId !== 'null') throw new StatelockError('S3_NO_SUCH_VERSION', { versionId, key: addr.objectKey });
  const body = Buffer.from(lock.raw, 'utf8');
  return {
    size: body.length,
    stream: async function* (range) {
      yield range ? body.subarray(range.start, range.end + 1) : body;
    },
    etag: quotedEtag(createHash('md5').update(body).digest('hex')),
    lastModified: lock.acquiredAt,
    versionId: null,
    sha256Hex: createHash('sha256').update(body).digest('hex'),
  };
}

/** A version ID is a seq: a positive decimal integer. */
export function parseVersionId(versionId: string): number {
  if (!/^[1-9]\d{0,15}$/.test(versionId)) throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'versionId', reason: `"${versionId}" is not a version ID of statelock (a version number: 1, 2, 3 …)` });
  return Number(versionId);
}

/**
 * `Range: bytes=a-b | a- | -n` → the inclusive byte span, or null for the whole object (no Range, or one
 * S3 ignores: several ranges, another unit, a > b). A zero-byte object is always served whole.
 * @throws StatelockError S3_INVALID_RANGE (416) when the range starts at or beyond the end.
 */
export function parseRange(value: string | undefined, size: number): { start: number; end: number } | null {
  if (value === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (size === 0) return null;
  const unsatisfiable = () => new StatelockError('S3_INVALID_RANGE', { range: value.trim(), size });
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable();
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const last = m[2] === '' ? null : Number(m[2]);
  if (last !== null && last < start) return null;
  if (start >= size) throw unsatisfiable();
  return { start, end: last === null ? size - 1 : Math.min(last, size - 1) };
}

/**
 * PutObject (and the body of a completed multipart upload): a state object is written as the state's
 * next version — Terraform's rules apply (serial, lineage), no lock ID is asked for (S3 writes carry
 * none); a `.tflock` object takes the lock with its body as lock info, and an existing lock file is a
 * 412 PreconditionFailed whether or not `If-None-Match: *` was sent (the lock's ID re-sending it is a
 * success: a retried acquire).
 * @returns the S3 version ID (the version's seq) for states, null for lock files.
 * @throws StatelockError INVALID_STATE, INVALID_LOCK_INFO, S3_LOCK_HELD, LINEAGE_MISMATCH, SERIAL_* …
 */
export async function writeObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress, source: BodySource, verify?: (digests: Digests) => void): Promise<{ versionId: string | null; md5Hex: string }> {
  if (addr.kind === 'lock') {
    const body = await collect(source); // lock info: a few hundred bytes
    const sums = digest(body);
    verify?.(sums);
    try {
      await deps.locks.lock(addr.stateKey, body, r.ctx.client, { door: 's3' });
    } catch (err) {
      if (err instanceof StatelockError && err.code === 'STATE_LOCKED') throw new StatelockError('S3_LOCK_HELD', err.params, err.holderBody);
      throw err;
    }
    return { versionId: null, md5Hex: md5HexOfBase64(sums.md5) };
  }
  const { version } = await deps.state.write(addr.stateKey, source, null, r.ctx.client, { holderCheck: false, ...(verify ? { verify } : {}) });
  return { versionId: String(version.seq), md5Hex: md5HexOfBase64(version.md5) };
}

async function collect(source: BodySource): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of source) pieces.push(Buffer.from(piece));
  return Buffer.concat(pieces);
}

/** PutObject. */
export async function putObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  if (header(r, 'x-amz-copy-source') !== undefined) throw new StatelockError('S3_NOT_IMPLEMENTED', { what: 'CopyObject' });
  const sse = sseEcho(r);
  // Streamed when the AWS door left the body unread (a state object's plain body), checked before the commit.
  const { versionId, md5Hex } = await writeObject(deps, r, addr, r.bodyStream ?? [r.body], r.verifyBody);
  sendS3(r, 200, {
    ETag: quotedEtag(md5Hex),
    ...(versionId ? { 'x-amz-version-id': versionId } : {}),
    ...sse,
    ...checksumEcho(r),
  });
}

/**
 * DeleteObject. A state is soft-deleted (its versions stay readable through the API), even while it is
 * locked: on S3 nothing stops a DeleteObject, and Terraform's `workspace delete` sends it under its own
 * lock. A `.tflock` object is the release of the lock's S3 hold (see decideDoorRelease). 204 also when
 * there was nothing to delete.
 */
export async function deleteObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  await removeObject(deps, r, addr, r.query.get('versionId'));
  sendS3(r, 204, {});
}

/** The deletion behind DeleteObject and each entry of DeleteObjects. */
export async function removeObject(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress, versionId: string | null): Promise<void> {
  if (versionId !== null && versionId !== 'null') {
    throw new StatelockError('S3_NOT_IMPLEMENTED', { what: 'deleting one version of an object (statelock keeps every version of a state)' });
  }
  if (addr.kind === 'lock') {
    const mayForceUnlock = { allowed: isAllowed(r.ctx.principal.grants, 'force-unlock', addr.stateKey), principal: r.ctx.principal.name };
    await deps.locks.releaseThroughDoor(addr.stateKey, { door: 's3', id: null, mayForceUnlock }, r.ctx.client, `S3 DeleteObject ${addr.objectKey}`);
    return;
  }
  await deps.state.delete(addr.stateKey, r.ctx.client, { evenIfLocked: true });
}

const SSE_VALUES = ['AES256', 'aws:kms', 'aws:kms:dsse'];

/**
 * Server-side-encryption request headers, checked and echoed as S3 echoes them. statelock does not act
 * on them: its at-rest protection is its own (the database), not S3's per-object encryption.
 * @throws StatelockError S3_INVALID_ARGUMENT for values S3 would refuse.
 */
export function sseEcho(r: AwsRequest): Record<string, string> {
  const out: Record<string, string> = {};
  const sse = header(r, 'x-amz-server-side-encryption');
  if (sse !== undefined) {
    if (!SSE_VALUES.includes(sse)) throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'x-amz-server-side-encryption', reason: `"${sse}" is not one of ${SSE_VALUES.join(', ')}` });
    out['x-amz-server-side-encryption'] = sse;
    const kmsKey = header(r, 'x-amz-server-side-encryption-aws-kms-key-id');
    if (kmsKey !== undefined && sse.startsWith('aws:kms')) out['x-amz-server-side-encryption-aws-kms-key-id'] = kmsKey;
  }
  const algorithm = header(r, 'x-amz-server-side-encryption-customer-algorithm');
  const key = header(r, 'x-amz-server-side-encryption-customer-key');
  const keyMd5 = header(r, 'x-amz-server-side-encryption-customer-key-md5');
  if (algorithm !== undefined || key !== undefined || keyMd5 !== undefined) {
    const bad = (reason: string) => new StatelockError('S3_INVALID_ARGUMENT', { name: 'x-amz-server-side-encryption-customer-*', reason });
    if (sse !== undefined) throw bad('SSE-C cannot be combined with x-amz-server-side-encryption');
    if (algorithm !== 'AES256') throw bad('the customer algorithm must be AES256');
    if (key === undefined || keyMd5 === undefined) throw bad('the algorithm, the key and the key MD5 must all be sent');
    const keyBytes = Buffer.from(key, 'base64');
    if (keyBytes.length !== 32) throw bad('the customer key must be 256 bits, base64-encoded');
    if (createHash('md5').update(keyBytes).digest('base64') !== keyMd5) throw bad('the key MD5 does not match the key');
    out['x-amz-server-side-encryption-customer-algorithm'] = algorithm;
    out['x-amz-server-side-encryption-customer-key-MD5'] = keyMd5;
  }
  return out;
}

/** SSE-C headers on a read are echoed (the bytes are served as they are). */
function sseCustomerEcho(r: AwsRequest): Record<string, string> {
  const algorithm = header(r, 'x-amz-server-side-encryption-customer-algorithm');
  const keyMd5 = header(r, 'x-amz-server-side-encryption-customer-key-md5');
  return algorithm && keyMd5 ? { 'x-amz-server-side-encryption-customer-algorithm': algorithm, 'x-amz-server-side-encryption-customer-key-MD5': keyMd5 } : {};
}

/** The checksums the AWS door verified against the body, echoed as S3 does (`x-amz-checksum-<alg>`). */
export function checksumEcho(r: AwsRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [alg, value] of Object.entries(r.checksums)) if (alg !== 'md5') out[`x-amz-checksum-${alg}`] = value;
  return out;
}

const OVERRIDES: Record<string, string> = {
  'response-content-type': 'Content-Type',
  'response-content-language': 'Content-Language',
  'response-expires': 'Expires',
  'response-cache-control': 'Cache-Control',
  'response-content-disposition': 'Content-Disposition',
  'response-content-encoding': 'Content-Encoding',
};

/** GetObject's `response-*` query parameters (presigned downloads use them). */
function responseOverrides(r: AwsRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [param, name] of Object.entries(OVERRIDES)) {
    const v = r.query.get(param);
    // Only what an HTTP header can carry (visible ASCII, space, tab); anything else is ignored, never a 500.
    if (v !== null && /^[\t\x20-\x7e]*$/.test(v)) out[name] = v;
  }
  return out;
}
