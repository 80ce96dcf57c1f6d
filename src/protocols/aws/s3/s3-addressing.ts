import { StatelockError } from '../../../server/errors.js';
import { validateKey } from '../../../state/state-key.js';

/** The suffix that makes an object the S3-native lock file of the state beside it (`use_lockfile`). */
export const LOCK_SUFFIX = '.tflock';

/** Where a request points: the service (no bucket), a bucket, or an object in a bucket. */
export interface S3Target {
  bucket: string | null;
  /** The object key, percent-decoded once; null for service- and bucket-level requests. */
  objectKey: string | null;
}

/** An object of the S3 door: either a state (`s3://b/k` IS the state `b/k`) or the lock file of one. */
export interface ObjectAddress {
  bucket: string;
  objectKey: string;
  /** `<bucket>/<key>`, or for `<key>.tflock` the state it locks: `<bucket>/<key>`. */
  stateKey: string;
  kind: 'state' | 'lock';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Virtual-host addressing when the Host (port stripped, lower-cased) is `<bucket>.<domain>` for one of
 * the configured domains; path-style `/<bucket>/<key…>` otherwise. The key is percent-decoded once
 * (`+` stays a plus, as S3 clients encode a space as %20).
 * @throws StatelockError INVALID_KEY for an undecodable path, S3_INVALID_BUCKET_NAME for a bad bucket.
 */
export function resolveTarget(host: string, rawPath: string, domains: readonly string[]): S3Target {
  const path = rawPath.startsWith('/') ? rawPath.slice(1) : rawPath;
  const domain = domains.find((d) => host.length > d.length + 1 && host.endsWith(`.${d.toLowerCase()}`));
  if (domain) {
    const bucket = validateBucketName(host.slice(0, host.length - domain.length - 1));
    return { bucket, objectKey: path === '' ? null : decodeKey(path) };
  }
  if (path === '') return { bucket: null, objectKey: null };
  const slash = path.indexOf('/');
  const rawBucket = slash < 0 ? path : path.slice(0, slash);
  const rawKey = slash < 0 ? '' : path.slice(slash + 1);
  const bucket = validateBucketName(decodeKey(rawBucket, 'bucket'));
  return { bucket, objectKey: rawKey === '' ? null : decodeKey(rawKey) };
}

/**
 * S3 bucket names as statelock accepts them: 3–63 characters of lower-case letters, digits, `.` and `-`.
 * @throws StatelockError S3_INVALID_BUCKET_NAME
 */
export function validateBucketName(name: string): string {
  if (name.length < 3 || name.length > 63) throw new StatelockError('S3_INVALID_BUCKET_NAME', { bucket: name, reason: `it is ${name.length} characters long; bucket names have 3 to 63` });
  if (!/^[a-z0-9.-]+$/.test(name)) throw new StatelockError('S3_INVALID_BUCKET_NAME', { bucket: name, reason: 'bucket names may contain only lower-case letters, digits, "." and "-"' });
  return name;
}

/** Whether `name` could be a bucket (for the buckets implied by state keys). */
export function isBucketName(name: string): boolean {
  return name.length >= 3 && name.length <= 63 && /^[a-z0-9.-]+$/.test(name);
}

/**
 * The object `<bucket>/<objectKey>` as statelock sees it: `<k>.tflock` is the lock of state `<k>`,
 * anything else is the state of the same name.
 * @throws StatelockError INVALID_KEY when `<bucket>/<key>` is not a valid state key.
 */
export function objectAddress(bucket: string, objectKey: string): ObjectAddress {
  const isLock = objectKey.endsWith(LOCK_SUFFIX);
  const stateKey = `${bucket}/${isLock ? objectKey.slice(0, -LOCK_SUFFIX.length) : objectKey}`;
  if (isLock && stateKey === `${bucket}/`) throw new StatelockError('INVALID_KEY', { reason: `"${LOCK_SUFFIX}" alone names no state to lock` });
  validateKey(stateKey);
  return { bucket, objectKey, stateKey, kind: isLock ? 'lock' : 'state' };
}

/** The S3 object key of a state key under `bucket` (the state key minus `<bucket>/`). */
export function objectKeyOf(bucket: string, stateKey: string): string {
  return stateKey.slice(bucket.length + 1);
}

/** Percent-decodes once into UTF-8 text; `+` is literal. */
export function decodeKey(raw: string, what = 'key'): string {
  const src = Buffer.from(raw, 'utf8');
  const out = Buffer.allocUnsafe(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if (b !== 0x25) {
      out[n++] = b;
      continue;
    }
    const hex = src.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new StatelockError('INVALID_KEY', { reason: `the ${what} has a malformed percent-escape` });
    out[n++] = parseInt(hex, 16);
    i += 2;
  }
  try {
    return utf8.decode(out.subarray(0, n));
  } catch {
    throw new StatelockError('INVALID_KEY', { reason: `the ${what} is not valid UTF-8` });
  }
}

/**
 * `encoding-type=url` encoding of a key or prefix in a listing: every byte but the unreserved
 * `A–Z a–z 0–9 - _ . ~` and `/` percent-encoded (so a space is %20 and a plus %2B: botocore decodes
 * with unquote_plus).
 */
export function urlEncodeKey(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~/]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** S3's key order: UTF-8 byte order (what the stores' key indexes use), not UTF-16 code-unit order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
