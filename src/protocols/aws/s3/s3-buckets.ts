import { StatelockError } from '../../../server/errors.js';
import { prefixUpperBound } from '../../../state/state-key.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import { isBucketName } from './s3-addressing.js';
import { isoDate, sendS3, sendXml } from './s3-response.js';
import { xmlEscape } from '../xml-escape.js';
import { document, node, parseCreateBucketConfiguration, S3_NS, text } from './s3-xml.js';

/**
 * Buckets. A bucket exists when it was made with CreateBucket (a record in the store) or, implicitly,
 * while a live state has a key under `<bucket>/` — so states written through the http door are
 * reachable over S3 without a CreateBucket. There is no second store: a bucket holds no objects of its own.
 */

export interface BucketInfo {
  name: string;
  /** The recorded region; null for an implicit bucket (it answers with the caller's region). */
  region: string | null;
  createdAt: string;
}

export async function findBucket(deps: AwsDoorDeps, name: string): Promise<BucketInfo | null> {
  const record = await deps.store.getBucket(name);
  if (record) return { name, region: record.region, createdAt: record.createdAt };
  const page = await deps.state.list({ prefix: `${name}/`, limit: 1 });
  const first = page.items[0];
  return first ? { name, region: null, createdAt: first.current.createdAt } : null;
}

/** @throws StatelockError S3_NO_SUCH_BUCKET */
export async function requireBucket(deps: AwsDoorDeps, name: string): Promise<BucketInfo> {
  const found = await findBucket(deps, name);
  if (!found) throw new StatelockError('S3_NO_SUCH_BUCKET', { bucket: name });
  return found;
}

/**
 * CreateBucket `PUT /<b>` with an optional CreateBucketConfiguration body (LocationConstraint; without
 * it the region the request was signed for). A bucket that exists already, recorded or implicit, is
 * 409 BucketAlreadyOwnedByYou (what `aws s3 mb` reports).
 */
export async function createBucket(deps: AwsDoorDeps, r: AwsRequest, name: string): Promise<void> {
  const config = r.body.toString('utf8').trim() === '' ? { locationConstraint: null } : parseCreateBucketConfiguration(r.body);
  if (await findBucket(deps, name)) throw new StatelockError('S3_BUCKET_EXISTS', { bucket: name });
  const created = await deps.store.createBucket({ name, region: config.locationConstraint ?? r.region, createdAt: new Date().toISOString() });
  if (!created) throw new StatelockError('S3_BUCKET_EXISTS', { bucket: name });
  sendS3(r, 200, { Location: `/${name}` });
}

/** HeadBucket: 200 with `x-amz-bucket-region`, or 404 with no body. */
export async function headBucket(deps: AwsDoorDeps, r: AwsRequest, name: string): Promise<void> {
  const bucket = await requireBucket(deps, name);
  sendS3(r, 200, { 'x-amz-bucket-region': bucket.region ?? r.region });
}

/** DeleteBucket: refused while states live under it; otherwise the record goes (204). */
export async function deleteBucket(deps: AwsDoorDeps, r: AwsRequest, name: string): Promise<void> {
  const live = await deps.state.list({ prefix: `${name}/`, limit: 1 });
  if (live.items.length > 0) throw new StatelockError('S3_BUCKET_NOT_EMPTY', { bucket: name });
  if (!(await deps.store.deleteBucket(name))) throw new StatelockError('S3_NO_SUCH_BUCKET', { bucket: name });
  sendS3(r, 204, {});
}

/** GetBucketLocation `GET /<b>?location`: empty for us-east-1, as S3 answers. */
export async function getBucketLocation(deps: AwsDoorDeps, r: AwsRequest, name: string): Promise<void> {
  const bucket = await requireBucket(deps, name);
  const region = bucket.region ?? r.region;
  sendXml(r, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}">${region === 'us-east-1' ? '' : xmlEscape(region)}</LocationConstraint>`);
}

/** GetBucketVersioning: always Enabled — statelock keeps every version of every state. */
export async function getBucketVersioning(deps: AwsDoorDeps, r: AwsRequest, name: string): Promise<void> {
  await requireBucket(deps, name);
  sendXml(r, document('VersioningConfiguration', text('Status', 'Enabled')));
}

/** Every bucket: the recorded ones and those implied by live state keys (`<bucket>/…`), by name. */
export async function allBuckets(deps: AwsDoorDeps): Promise<BucketInfo[]> {
  const byName = new Map<string, BucketInfo>();
  for (const b of await deps.store.listBuckets()) byName.set(b.name, { name: b.name, region: b.region, createdAt: b.createdAt });
  let after: string | undefined;
  for (;;) {
    const page = await deps.state.list({ limit: 100, ...(after !== undefined ? { after } : {}) });
    let jumpTo: string | null = null;
    for (const s of page.items) {
      const slash = s.key.indexOf('/');
      const first = slash < 0 ? null : s.key.slice(0, slash);
      if (first === null || !isBucketName(first)) {
        jumpTo = null;
        continue;
      }
      if (!byName.has(first)) byName.set(first, { name: first, region: null, createdAt: s.current.createdAt });
      // Skip the rest of this bucket's keys: every one sorts below the prefix's upper bound.
      jumpTo = prefixUpperBound(`${first}/`);
    }
    if (jumpTo !== null) {
      after = jumpTo;
      continue;
    }
    if (!page.next) break;
    after = page.next;
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** ListBuckets `GET /`. */
export async function listBuckets(deps: AwsDoorDeps, r: AwsRequest): Promise<void> {
  const buckets = await allBuckets(deps);
  sendXml(
    r,
    document(
      'ListAllMyBucketsResult',
      node('Owner', text('ID', 'statelock'), text('DisplayName', 'statelock')),
      node('Buckets', ...buckets.map((b) => node('Bucket', text('Name', b.name), text('CreationDate', isoDate(b.createdAt)), text('BucketRegion', b.region ?? r.region)))),
    ),
  );
}
