import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { awsErrorName, StatelockError } from '../../../server/errors.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import { xmlEscape } from '../xml-escape.js';
import { objectAddress, resolveTarget, type ObjectAddress } from './s3-addressing.js';
import { isAllowed } from '../../../auth/permissions.js';
import type { StateService } from '../../../state/state-service.js';
import type { Store } from '../../../store/store.js';
import { createBucket, deleteBucket, getBucketLocation, getBucketVersioning, headBucket, listBuckets, requireBucket } from './s3-buckets.js';
import { listObjectsV1, listObjectsV2, listObjectVersions } from './s3-listing.js';
import { abortMultipartUpload, completeMultipartUpload, createMultipartUpload, listParts, uploadPart } from './s3-multipart.js';
import { deleteObject, getObject, putObject, removeObject } from './s3-objects.js';
import { sendXml } from './s3-response.js';
import { document, node, parseDeleteObjects, text } from './s3-xml.js';

/**
 * Query parameters that select an S3 sub-resource (an operation other than the plain one on the path).
 * Unknown parameters (`x-id`, `list-type`, `prefix` …) select nothing and are ignored when routing.
 */
const SUBRESOURCES = [
  'uploads', 'uploadId', 'versions', 'versioning', 'location', 'delete',
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'encryption', 'intelligent-tiering', 'inventory',
  'legal-hold', 'lifecycle', 'logging', 'metadataConfiguration', 'metadataTable', 'metrics', 'notification',
  'object-lock', 'ownershipControls', 'policy', 'policyStatus', 'publicAccessBlock', 'renameObject',
  'replication', 'requestPayment', 'restore', 'retention', 'select', 'session', 'tagging', 'torrent', 'website',
] as const;

/**
 * The S3 door: an unchanged `backend "s3"` block (path style or virtual host, custom endpoint) and the
 * `aws s3` / `aws s3api` commands, on statelock's one model — the object `s3://<bucket>/<key>` IS the
 * state `<bucket>/<key>`, its S3 versions ARE the state's versions (VersionId = seq), and
 * `<key>.tflock` IS the lock on `<bucket>/<key>`. Decode, call the services, encode: no rules here.
 *
 * The AWS door in front has already checked the signature, the clock, the payload hash, aws-chunked
 * framing, Content-MD5 and x-amz-checksum-* (for a streamed PutObject body: as it streams, and before the
 * writer commits, through AwsRequest.verifyBody); what arrives here is trusted to be what the client sent.
 */
export class S3Door {
  constructor(private readonly deps: AwsDoorDeps) {}

  /**
   * Whether this request is a PutObject of a state object, whose body the AWS door may hand over unread
   * (AwsRequest.bodyStream). Anything doubtful (an invalid key, a copy, a sub-resource) says no and is read
   * whole as before, so its errors stay exactly as they were.
   */
  streamsBody(method: string, host: string, rawPath: string, query: URLSearchParams, headers: IncomingHttpHeaders): boolean {
    if (method !== 'PUT' || headers['x-amz-copy-source'] !== undefined) return false;
    if (SUBRESOURCES.some((s) => query.has(s)) || query.has('partNumber')) return false;
    try {
      const target = resolveTarget(host, rawPath, this.deps.s3Domains);
      return target.bucket !== null && target.objectKey !== null && objectAddress(target.bucket, target.objectKey).kind === 'state';
    } catch {
      return false;
    }
  }

  /** r.service === 's3'. Answers with the S3 response; throws StatelockError for refusals. */
  async handle(r: AwsRequest): Promise<void> {
    const target = resolveTarget(r.host, r.rawPath, this.deps.s3Domains);
    const sub = SUBRESOURCES.find((s) => r.query.has(s)) ?? null;
    if (target.bucket === null) {
      if ((r.method === 'GET' || r.method === 'HEAD') && sub === null) return listBuckets(this.deps, r);
      throw notImplemented(`${r.method} on the service root${sub ? ` (?${sub})` : ''}`);
    }
    if (target.objectKey === null) return this.bucketRequest(r, target.bucket, sub);
    return this.objectRequest(r, target.bucket, target.objectKey, sub);
  }

  private async bucketRequest(r: AwsRequest, bucket: string, sub: (typeof SUBRESOURCES)[number] | null): Promise<void> {
    const d = this.deps;
    switch (r.method) {
      case 'PUT':
        if (sub === null) {
          r.ctx.authorize('admin', null);
          return createBucket(d, r, bucket);
        }
        break;
      case 'HEAD':
        if (sub === null) return headBucket(d, r, bucket);
        break;
      case 'DELETE':
        if (sub === null) {
          r.ctx.authorize('admin', null);
          return deleteBucket(d, r, bucket);
        }
        break;
      case 'GET':
        if (sub === null) {
          await requireBucket(d, bucket);
          const view = readableView(d, r);
          return r.query.get('list-type') === '2' ? listObjectsV2(view, r, bucket) : listObjectsV1(view, r, bucket);
        }
        if (sub === 'versions') {
          await requireBucket(d, bucket);
          return listObjectVersions(readableView(d, r), r, bucket);
        }
        if (sub === 'versioning') return getBucketVersioning(d, r, bucket);
        if (sub === 'location') return getBucketLocation(d, r, bucket);
        break;
      case 'POST':
        if (sub === 'delete') {
          await requireBucket(d, bucket);
          return this.deleteObjects(r, bucket);
        }
        break;
    }
    throw notImplemented(operationName(r.method, 'Bucket', sub));
  }

  private async objectRequest(r: AwsRequest, bucket: string, objectKey: string, sub: (typeof SUBRESOURCES)[number] | null): Promise<void> {
    const d = this.deps;
    const known = ['GET', 'HEAD', 'PUT', 'DELETE', 'POST'];
    if (!known.includes(r.method)) throw notImplemented(`${r.method} on an object`);
    await requireBucket(d, bucket);
    const addr = objectAddress(bucket, objectKey);
    authorizeObject(r, addr, sub);
    switch (r.method) {
      case 'GET':
        if (sub === 'uploadId') return listParts(d, r, addr);
        if (sub === null) return getObject(d, r, addr);
        break;
      case 'HEAD':
        if (sub === null) return getObject(d, r, addr);
        break;
      case 'PUT':
        if (sub === 'uploadId' && r.query.has('partNumber')) return uploadPart(d, r, addr);
        if (sub === null) return putObject(d, r, addr);
        break;
      case 'DELETE':
        if (sub === 'uploadId') return abortMultipartUpload(d, r, addr);
        if (sub === null) return deleteObject(d, r, addr);
        break;
      case 'POST':
        if (sub === 'uploads') return createMultipartUpload(d, r, addr);
        if (sub === 'uploadId') return completeMultipartUpload(d, r, addr);
        break;
    }
    throw notImplemented(operationName(r.method, 'Object', sub));
  }

  /** DeleteObjects `POST /<b>?delete` (`aws s3 rm --recursive`): each key as DeleteObject would, errors per key. */
  private async deleteObjects(r: AwsRequest, bucket: string): Promise<void> {
    const { quiet, objects } = parseDeleteObjects(r.body);
    const results: string[] = [];
    for (const o of objects) {
      try {
        const addr = objectAddress(bucket, o.key);
        authorizeObject({ ...r, method: 'DELETE' }, addr, null);
        await removeObject(this.deps, r, addr, o.versionId);
        if (!quiet) results.push(node('Deleted', text('Key', o.key), o.versionId ? text('VersionId', o.versionId) : ''));
      } catch (err) {
        if (!(err instanceof StatelockError)) throw err;
        results.push(node('Error', text('Key', o.key), o.versionId ? text('VersionId', o.versionId) : '', text('Code', awsErrorName(err.code, 's3') ?? err.code), text('Message', err.message)));
      }
    }
    sendXml(r, document('DeleteResult', ...results));
  }

  /**
   * Renders any StatelockError as S3 XML: the code's registry status; `<Error><Code>` is the code's S3
   * name (or the statelock code when it has none), plus the fields S3 adds for that error. HEAD answers
   * carry no body.
   */
  static sendError(res: ServerResponse, err: StatelockError, requestId: string, method: string, resource: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const code = awsErrorName(err.code, 's3') ?? err.code;
    const p = err.params;
    const extra: string[] = [];
    switch (err.code) {
      case 'S3_NO_SUCH_KEY':
        extra.push(text('Key', p['key']));
        break;
      case 'S3_NO_SUCH_VERSION':
        extra.push(text('Key', p['key']), text('VersionId', p['versionId']));
        break;
      case 'S3_NO_SUCH_BUCKET':
      case 'S3_BUCKET_EXISTS':
      case 'S3_BUCKET_NOT_EMPTY':
      case 'S3_INVALID_BUCKET_NAME':
        extra.push(text('BucketName', p['bucket']));
        break;
      case 'S3_NO_SUCH_UPLOAD':
        extra.push(text('UploadId', p['uploadId']));
        break;
      case 'S3_LOCK_HELD':
        extra.push(text('Condition', 'If-None-Match'));
        break;
      case 'S3_INVALID_ARGUMENT':
        extra.push(text('ArgumentName', p['name']));
        break;
      case 'S3_INVALID_RANGE':
        extra.push(text('RangeRequested', p['range']), text('ActualObjectSize', p['size']));
        break;
      case 'S3_ENTITY_TOO_SMALL':
        extra.push(text('ProposedSize', p['size']), text('MinSizeAllowed', 5 * 1024 * 1024), text('PartNumber', p['part']));
        break;
      default:
        break;
    }
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(err.message)}</Message>${extra.join('')}<Resource>${xmlEscape(resource)}</Resource><RequestId>${xmlEscape(requestId)}</RequestId></Error>`;
    const body = Buffer.from(xml, 'utf8');
    const headers: Record<string, string> = { 'Content-Type': 'application/xml', 'x-amz-request-id': requestId };
    if (err.code === 'S3_INVALID_RANGE' && p['size'] !== undefined) headers['Content-Range'] = `bytes */${p['size']}`;
    if (method === 'HEAD') {
      res.writeHead(err.status, { ...headers, 'Content-Length': '0' });
      res.end();
      return;
    }
    res.writeHead(err.status, { ...headers, 'Content-Length': String(body.length) });
    res.end(body);
  }
}

function notImplemented(what: string): StatelockError {
  return new StatelockError('S3_NOT_IMPLEMENTED', { what });
}

/** Operations whose S3 name does not follow the verb + level + sub-resource pattern. */
const OPERATION_NAMES: Record<string, string> = {
  'GET Bucket uploads': 'ListMultipartUploads',
  'GET Object attributes': 'GetObjectAttributes',
  'POST Object restore': 'RestoreObject',
  'POST Object select': 'SelectObjectContent',
  'GET Bucket session': 'CreateSession',
  'PUT Object renameObject': 'RenameObject',
};

/** S3's name for the operation a method and sub-resource select: GetBucketAcl, PutBucketVersioning, PutObjectTagging … */
function operationName(method: string, level: 'Bucket' | 'Object', sub: string | null): string {
  const known = OPERATION_NAMES[`${method} ${level} ${sub ?? ''}`];
  if (known) return known;
  const verb = method.charAt(0) + method.slice(1).toLowerCase();
  if (sub === null) return `${verb}${level} (${method} without a sub-resource)`;
  const pascal = sub
    .split('-')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
  return `${verb}${level}${pascal}`;
}

/**
 * The permission an object request needs, checked before it runs: reads need read; state writes and
 * multipart uploads need write; a `.tflock` PutObject or DeleteObject needs lock (a DeleteObject that
 * turns out to be a force-unlock also needs force-unlock, decided in the transaction); deleting a state
 * needs delete.
 */
function authorizeObject(r: AwsRequest, addr: ObjectAddress, sub: string | null): void {
  const key = addr.stateKey;
  if (r.method === 'GET' || r.method === 'HEAD') return r.ctx.authorize(sub === 'uploadId' ? 'write' : 'read', key);
  if (addr.kind === 'lock' && sub === null) return r.ctx.authorize('lock', key);
  if (r.method === 'DELETE' && sub === null) return r.ctx.authorize('delete', key);
  r.ctx.authorize(addr.kind === 'lock' ? 'lock' : 'write', key);
}

/**
 * The door's dependencies as one principal sees them, for the listings: the states, their versions and
 * the locks it may not read do not exist (a listing is filtered, never refused). ListObjectVersions
 * also reads versions of the key named by `key-marker` or by an exact `prefix`: those go through
 * `read` and `listVersions`, so they are filtered too.
 */
function readableView(deps: AwsDoorDeps, r: AwsRequest): AwsDoorDeps {
  const grants = r.ctx.principal.grants;
  if (isAllowed(grants, 'read', null)) return deps;
  const can = (key: string) => isAllowed(grants, 'read', key);
  const state = Object.create(deps.state) as StateService;
  state.list = async (q: Parameters<StateService['list']>[0]) => {
    const page = await deps.state.list(q);
    return { ...page, items: page.items.filter((s) => can(s.key)) };
  };
  state.read = async (key: string) => (can(key) ? deps.state.read(key) : null);
  state.listVersions = async (key: string, q: Parameters<StateService['listVersions']>[1]) => (can(key) ? deps.state.listVersions(key, q) : { items: [], next: null });
  const store = Object.create(deps.store) as Store;
  store.listLocks = async (q: Parameters<Store['listLocks']>[0]) => {
    const page = await deps.store.listLocks(q);
    return { ...page, items: page.items.filter((l) => can(l.key)) };
  };
  return { ...deps, state, store };
}
