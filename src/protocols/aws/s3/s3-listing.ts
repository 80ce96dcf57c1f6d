import { createHash } from 'node:crypto';
import { StatelockError } from '../../../server/errors.js';
import { validateKey } from '../../../state/state-key.js';
import type { VersionMeta } from '../../../store/store.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import { compareKeys, LOCK_SUFFIX, objectKeyOf, urlEncodeKey } from './s3-addressing.js';
import { intParam } from './s3-multipart.js';
import { isoDate, md5HexOfBase64, quotedEtag, sendXml } from './s3-response.js';
import { document, node, text } from './s3-xml.js';

/**
 * The listings: ListObjectsV2, ListObjects (v1) and ListObjectVersions over one bucket.
 *
 * A bucket's objects are the live states under `<bucket>/` and, for every lock held on one of them, its
 * `<key>.tflock` lock file (what GetObject on that name answers; Terraform's workspace listing ignores
 * it, as it ignores lock files on S3). Versions are the states' versions only (a lock file has none).
 */

const PAGE = 1000;

interface ListedObject {
  key: string;
  size: number;
  etag: string;
  lastModified: string;
}

/** Every object of `bucket` whose key starts with `prefix` and sorts after `after`, in S3 key order. */
async function* objectsOf(deps: AwsDoorDeps, bucket: string, prefix: string, after: string | null): AsyncGenerator<ListedObject> {
  const lockFiles: ListedObject[] = [];
  let lockCursor: string | undefined;
  for (;;) {
    const page = await deps.store.listLocks({ prefix: `${bucket}/`, limit: PAGE, ...(lockCursor !== undefined ? { after: lockCursor } : {}) });
    for (const lock of page.items) {
      const key = objectKeyOf(bucket, lock.key) + LOCK_SUFFIX;
      if (!key.startsWith(prefix) || (after !== null && compareKeys(key, after) <= 0)) continue;
      const raw = Buffer.from(lock.raw, 'utf8');
      lockFiles.push({ key, size: raw.length, etag: quotedEtag(createHash('md5').update(raw).digest('hex')), lastModified: lock.acquiredAt });
    }
    if (!page.next) break;
    lockCursor = page.next;
  }
  lockFiles.sort((a, b) => compareKeys(a.key, b.key));

  let li = 0;
  let stateCursor: string | undefined = after !== null ? `${bucket}/${after}` : undefined;
  for (;;) {
    const page = await deps.state.list({ prefix: `${bucket}/${prefix}`, limit: PAGE, ...(stateCursor !== undefined ? { after: stateCursor } : {}) });
    for (const s of page.items) {
      const key = objectKeyOf(bucket, s.key);
      // A state whose own name ends in .tflock (written through the http door) is not reachable as a state here.
      if (key.endsWith(LOCK_SUFFIX)) continue;
      while (li < lockFiles.length && compareKeys(lockFiles[li]!.key, key) < 0) yield lockFiles[li++]!;
      yield { key, size: s.current.size, etag: quotedEtag(md5HexOfBase64(s.current.md5)), lastModified: s.current.createdAt };
    }
    if (!page.next) break;
    stateCursor = page.next;
  }
  while (li < lockFiles.length) yield lockFiles[li++]!;
}

interface Grouped<T> {
  entries: T[];
  commonPrefixes: string[];
  truncated: boolean;
  /** The last key or common prefix returned: where the next page resumes. */
  last: string | null;
}

/**
 * One page of a listing: entries whose key, past `prefix`, contains `delimiter` roll up into one common
 * prefix each; entries and common prefixes together count against `maxKeys`. `skipPrefix` is a common
 * prefix already returned on an earlier page (the resume marker), never returned again.
 */
async function groupPage<T>(source: AsyncIterable<T>, keyOf: (e: T) => string, opts: { prefix: string; delimiter: string; maxKeys: number; skipPrefix: string | null }): Promise<Grouped<T>> {
  const out: Grouped<T> = { entries: [], commonPrefixes: [], truncated: false, last: null };
  if (opts.maxKeys === 0) return out;
  let lastPrefix = opts.skipPrefix;
  let count = 0;
  for await (const e of source) {
    const key = keyOf(e);
    const at = opts.delimiter === '' ? -1 : key.indexOf(opts.delimiter, opts.prefix.length);
    if (at >= 0) {
      const cp = key.slice(0, at + opts.delimiter.length);
      if (cp === lastPrefix) continue;
      if (count === opts.maxKeys) {
        out.truncated = true;
        break;
      }
      out.commonPrefixes.push(cp);
      lastPrefix = cp;
      out.last = cp;
    } else {
      if (count === opts.maxKeys) {
        out.truncated = true;
        break;
      }
      out.entries.push(e);
      out.last = key;
    }
    count++;
  }
  return out;
}

function encoder(r: AwsRequest): { url: boolean; enc: (s: string) => string } {
  const type = r.query.get('encoding-type');
  if (type !== null && type !== '' && type !== 'url') throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'encoding-type', reason: `"${type}" is not "url"` });
  const url = type === 'url';
  return { url, enc: url ? urlEncodeKey : (s: string) => s };
}

function contents(o: ListedObject, enc: (s: string) => string): string {
  return node('Contents', text('Key', enc(o.key)), text('LastModified', isoDate(o.lastModified)), text('ETag', o.etag), text('Size', o.size), text('StorageClass', 'STANDARD'));
}

/** ListObjectsV2 `GET /<b>?list-type=2`: prefix, delimiter, max-keys, continuation-token, start-after, encoding-type. */
export async function listObjectsV2(deps: AwsDoorDeps, r: AwsRequest, bucket: string): Promise<void> {
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const maxKeys = intParam(r, 'max-keys', 1000, 0, 1000);
  const startAfter = r.query.get('start-after');
  const token = r.query.get('continuation-token');
  const { url, enc } = encoder(r);
  let marker = startAfter || null;
  if (token !== null) marker = decodeToken(token);
  const page = await groupPage(objectsOf(deps, bucket, prefix, marker), (o) => o.key, { prefix, delimiter, maxKeys, skipPrefix: marker });
  sendXml(
    r,
    document(
      'ListBucketResult',
      text('Name', bucket),
      text('Prefix', enc(prefix)),
      delimiter ? text('Delimiter', enc(delimiter)) : '',
      text('MaxKeys', maxKeys),
      url ? text('EncodingType', 'url') : '',
      text('KeyCount', page.entries.length + page.commonPrefixes.length),
      text('IsTruncated', page.truncated),
      token !== null ? text('ContinuationToken', token) : '',
      page.truncated && page.last !== null ? text('NextContinuationToken', encodeToken(page.last)) : '',
      startAfter ? text('StartAfter', enc(startAfter)) : '',
      ...page.entries.map((o) => contents(o, enc)),
      ...page.commonPrefixes.map((p) => node('CommonPrefixes', text('Prefix', enc(p)))),
    ),
  );
}

/** ListObjects (v1) `GET /<b>`: prefix, delimiter, max-keys, marker, encoding-type. */
export async function listObjectsV1(deps: AwsDoorDeps, r: AwsRequest, bucket: string): Promise<void> {
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const maxKeys = intParam(r, 'max-keys', 1000, 0, 1000);
  const marker = r.query.get('marker') ?? '';
  const { url, enc } = encoder(r);
  const page = await groupPage(objectsOf(deps, bucket, prefix, marker || null), (o) => o.key, { prefix, delimiter, maxKeys, skipPrefix: marker || null });
  sendXml(
    r,
    document(
      'ListBucketResult',
      text('Name', bucket),
      text('Prefix', enc(prefix)),
      text('Marker', enc(marker)),
      page.truncated && page.last !== null ? text('NextMarker', enc(page.last)) : '',
      text('MaxKeys', maxKeys),
      delimiter ? text('Delimiter', enc(delimiter)) : '',
      url ? text('EncodingType', 'url') : '',
      text('IsTruncated', page.truncated),
      ...page.entries.map((o) => contents(o, enc)),
      ...page.commonPrefixes.map((p) => node('CommonPrefixes', text('Prefix', enc(p)))),
    ),
  );
}

/** The opaque continuation token: base64url of the last key (or common prefix) returned. */
export function encodeToken(last: string): string {
  return Buffer.from(last, 'utf8').toString('base64url');
}

function decodeToken(token: string): string {
  const key = /^[A-Za-z0-9_-]+={0,2}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  if (key === '' || encodeToken(key) !== token.replace(/=+$/, '')) {
    throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'continuation-token', reason: 'the continuation token is not one this server gave' });
  }
  return key;
}

interface ListedVersion {
  key: string;
  meta: VersionMeta;
  isLatest: boolean;
}

/**
 * Every version of every state of `bucket` under `prefix`, by key, newest version first, resuming
 * after (`keyMarker`, `versionIdMarker`). Live states only — except that when `prefix` names a
 * soft-deleted state exactly, its versions are listed too (none of them latest): the store can list a
 * deleted key's versions but cannot enumerate deleted keys.
 */
async function* versionsOf(deps: AwsDoorDeps, bucket: string, prefix: string, keyMarker: string | null, versionIdMarker: number | null): AsyncGenerator<ListedVersion> {
  const versionsNewestFirst = async (stateKey: string): Promise<VersionMeta[]> => {
    const all: VersionMeta[] = [];
    let after: number | undefined;
    for (;;) {
      const page = await deps.state.listVersions(stateKey, { limit: PAGE, ...(after !== undefined ? { after } : {}) });
      all.push(...page.items);
      if (!page.next) break;
      after = Number(page.next);
    }
    return all.reverse();
  };
  const emit = function* (key: string, versions: VersionMeta[], currentSeq: number | null, below: number | null) {
    for (const meta of versions) if (below === null || meta.seq < below) yield { key, meta, isLatest: meta.seq === currentSeq };
  };

  // The marker key itself, when the previous page stopped inside its versions.
  if (keyMarker !== null && versionIdMarker !== null && keyMarker.startsWith(prefix)) {
    const stateKey = `${bucket}/${keyMarker}`;
    if (isStateKey(stateKey) && !keyMarker.endsWith(LOCK_SUFFIX)) {
      const current = await deps.state.read(stateKey);
      yield* emit(keyMarker, await versionsNewestFirst(stateKey), current?.meta.seq ?? null, versionIdMarker);
    }
  }
  // A soft-deleted state named exactly by the prefix.
  if (prefix !== '' && isStateKey(`${bucket}/${prefix}`) && !prefix.endsWith(LOCK_SUFFIX) && (keyMarker === null || compareKeys(prefix, keyMarker) > 0)) {
    const stateKey = `${bucket}/${prefix}`;
    if (!(await deps.state.read(stateKey))) yield* emit(prefix, await versionsNewestFirst(stateKey), null, null);
  }
  let cursor: string | undefined = keyMarker !== null ? `${bucket}/${keyMarker}` : undefined;
  for (;;) {
    const page = await deps.state.list({ prefix: `${bucket}/${prefix}`, limit: PAGE, ...(cursor !== undefined ? { after: cursor } : {}) });
    for (const s of page.items) {
      const key = objectKeyOf(bucket, s.key);
      if (key.endsWith(LOCK_SUFFIX)) continue;
      yield* emit(key, await versionsNewestFirst(s.key), s.current.seq, null);
    }
    if (!page.next) break;
    cursor = page.next;
  }
}

function isStateKey(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}

/** ListObjectVersions `GET /<b>?versions`: prefix, delimiter, max-keys, key-marker, version-id-marker, encoding-type. */
export async function listObjectVersions(deps: AwsDoorDeps, r: AwsRequest, bucket: string): Promise<void> {
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') ?? '';
  const maxKeys = intParam(r, 'max-keys', 1000, 0, 1000);
  const keyMarker = r.query.get('key-marker') || null;
  const rawVersionMarker = r.query.get('version-id-marker') || null;
  if (rawVersionMarker !== null && keyMarker === null) throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'version-id-marker', reason: 'a version-id-marker needs a key-marker' });
  const versionIdMarker = rawVersionMarker === null ? null : /^[1-9]\d{0,15}$/.test(rawVersionMarker) ? Number(rawVersionMarker) : NaN;
  if (Number.isNaN(versionIdMarker)) throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'version-id-marker', reason: `"${rawVersionMarker}" is not a version ID of statelock` });
  const { url, enc } = encoder(r);
  const page = await groupPage(versionsOf(deps, bucket, prefix, keyMarker, versionIdMarker), (v) => v.key, {
    prefix,
    delimiter,
    maxKeys,
    skipPrefix: versionIdMarker === null ? keyMarker : null,
  });
  const lastEntry = page.entries[page.entries.length - 1];
  const lastIsVersion = lastEntry !== undefined && page.last === lastEntry.key;
  const owner = node('Owner', text('ID', 'statelock'), text('DisplayName', 'statelock'));
  sendXml(
    r,
    document(
      'ListVersionsResult',
      text('Name', bucket),
      text('Prefix', enc(prefix)),
      text('KeyMarker', enc(keyMarker ?? '')),
      text('VersionIdMarker', rawVersionMarker ?? ''),
      page.truncated && page.last !== null ? text('NextKeyMarker', enc(page.last)) : '',
      page.truncated && lastIsVersion ? text('NextVersionIdMarker', String(lastEntry.meta.seq)) : '',
      text('MaxKeys', maxKeys),
      delimiter ? text('Delimiter', enc(delimiter)) : '',
      url ? text('EncodingType', 'url') : '',
      text('IsTruncated', page.truncated),
      ...page.entries.map((v) =>
        node(
          'Version',
          text('Key', enc(v.key)),
          text('VersionId', String(v.meta.seq)),
          text('IsLatest', v.isLatest),
          text('LastModified', isoDate(v.meta.createdAt)),
          text('ETag', quotedEtag(md5HexOfBase64(v.meta.md5))),
          text('Size', v.meta.size),
          text('StorageClass', 'STANDARD'),
          owner,
        ),
      ),
      ...page.commonPrefixes.map((p) => node('CommonPrefixes', text('Prefix', enc(p)))),
    ),
  );
}
