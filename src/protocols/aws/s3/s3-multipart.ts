import { createHash, randomBytes } from 'node:crypto';
import { StatelockError } from '../../../server/errors.js';
import type { UploadRecord } from '../../../store/store.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import type { ObjectAddress } from './s3-addressing.js';
import { checksumEcho, sseEcho, writeObject } from './s3-objects.js';
import { header, isoDate, quotedEtag, sendS3, sendXml } from './s3-response.js';
import { document, node, parseCompleteMultipartUpload, text, unquote } from './s3-xml.js';

/** S3's floor for every part but the last. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_NUMBER = 10_000;

/**
 * Multipart uploads (Terraform's manager.Uploader above 5 MiB, the CLI above 8 MiB). The parts wait in
 * the store; CompleteMultipartUpload concatenates them and writes ONE state version, exactly as a
 * PutObject of the whole body would. An upload is tied to its object: `<bucket>/<object key>`.
 */

function uploadKey(addr: ObjectAddress): string {
  return `${addr.bucket}/${addr.objectKey}`;
}

/** The upload named by `?uploadId=`, which must belong to this object. */
async function findUpload(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<UploadRecord> {
  const uploadId = r.query.get('uploadId') ?? '';
  const upload = uploadId === '' ? null : await deps.store.getUpload(uploadId);
  if (!upload || upload.key !== uploadKey(addr)) throw new StatelockError('S3_NO_SUCH_UPLOAD', { uploadId });
  return upload;
}

/** CreateMultipartUpload `POST /<b>/<k>?uploads` → InitiateMultipartUploadResult. */
export async function createMultipartUpload(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  const sse = sseEcho(r);
  const id = randomBytes(24).toString('base64url');
  await deps.store.createUpload({
    id,
    key: uploadKey(addr),
    contentType: header(r, 'content-type') ?? 'application/octet-stream',
    createdAt: new Date().toISOString(),
    clientAddr: r.ctx.client.addr,
  });
  const algorithm = header(r, 'x-amz-checksum-algorithm');
  sendXml(
    r,
    document('InitiateMultipartUploadResult', text('Bucket', addr.bucket), text('Key', addr.objectKey), text('UploadId', id)),
    { ...sse, ...(algorithm ? { 'x-amz-checksum-algorithm': algorithm } : {}) },
  );
}

/** UploadPart `PUT /<b>/<k>?partNumber=N&uploadId=U` → ETag of the part. */
export async function uploadPart(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  if (header(r, 'x-amz-copy-source') !== undefined) throw new StatelockError('S3_NOT_IMPLEMENTED', { what: 'UploadPartCopy' });
  const partNumber = parsePartNumber(r.query.get('partNumber') ?? '');
  const upload = await findUpload(deps, r, addr);
  const md5 = createHash('md5').update(r.body).digest('hex');
  await deps.store.putPart(upload.id, partNumber, r.body, md5);
  sendS3(r, 200, { ETag: quotedEtag(md5), ...sseEcho(r), ...checksumEcho(r) });
}

function parsePartNumber(value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_PART_NUMBER)) throw new StatelockError('S3_INVALID_ARGUMENT', { name: 'partNumber', reason: `"${value}" is not an integer from 1 to ${MAX_PART_NUMBER}` });
  return n;
}

/**
 * CompleteMultipartUpload `POST /<b>/<k>?uploadId=U` with the part list: ascending part numbers, each
 * uploaded with that ETag, every part but the last at least 5 MiB. The concatenation is written like a
 * PutObject; the upload is removed only once that write succeeded (a refused write leaves it for
 * AbortMultipartUpload, as S3 does).
 */
export async function completeMultipartUpload(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  const upload = await findUpload(deps, r, addr);
  const requested = parseCompleteMultipartUpload(r.body);
  for (let i = 1; i < requested.length; i++) {
    if (requested[i]!.partNumber <= requested[i - 1]!.partNumber) throw new StatelockError('S3_INVALID_PART_ORDER');
  }
  const stored = new Map((await deps.store.listParts(upload.id)).map((p) => [p.partNumber, p]));
  for (const part of requested) {
    const have = stored.get(part.partNumber);
    if (!have || have.md5.toLowerCase() !== unquote(part.etag).toLowerCase()) throw new StatelockError('S3_INVALID_PART', { part: part.partNumber, uploadId: upload.id });
  }
  requested.slice(0, -1).forEach((part) => {
    const size = stored.get(part.partNumber)!.size;
    if (size < MIN_PART_SIZE) throw new StatelockError('S3_ENTITY_TOO_SMALL', { part: part.partNumber, size });
  });
  // The parts stream through the same ingest as a PutObject body, one part in memory at a time.
  async function* parts(): AsyncGenerator<Buffer> {
    for (const part of requested) {
      const body = await deps.store.readPart(upload.id, part.partNumber);
      if (!body) throw new StatelockError('S3_INVALID_PART', { part: part.partNumber, uploadId: upload.id });
      yield body;
    }
  }
  const { versionId } = await writeObject(deps, r, addr, parts());
  await deps.store.deleteUpload(upload.id);
  const etag = quotedEtag(`${multipartMd5(requested.map((p) => stored.get(p.partNumber)!.md5))}-${requested.length}`);
  const location = `${isTls(r) ? 'https' : 'http'}://${header(r, 'host') ?? r.host}/${addr.bucket}/${encodeURI(addr.objectKey)}`;
  sendXml(
    r,
    document('CompleteMultipartUploadResult', text('Location', location), text('Bucket', addr.bucket), text('Key', addr.objectKey), text('ETag', etag)),
    versionId ? { 'x-amz-version-id': versionId } : {},
  );
}

/** S3's multipart ETag body: the MD5 of the parts' binary MD5s, concatenated. */
export function multipartMd5(partMd5Hex: string[]): string {
  return createHash('md5').update(Buffer.concat(partMd5Hex.map((h) => Buffer.from(h, 'hex')))).digest('hex');
}

function isTls(r: AwsRequest): boolean {
  return (r.ctx.req.socket as { encrypted?: boolean }).encrypted === true;
}

/** AbortMultipartUpload `DELETE /<b>/<k>?uploadId=U` → 204. */
export async function abortMultipartUpload(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  const upload = await findUpload(deps, r, addr);
  if (!(await deps.store.deleteUpload(upload.id))) throw new StatelockError('S3_NO_SUCH_UPLOAD', { uploadId: upload.id });
  sendS3(r, 204, {});
}

/** ListParts `GET /<b>/<k>?uploadId=U` (`part-number-marker`, `max-parts`). */
export async function listParts(deps: AwsDoorDeps, r: AwsRequest, addr: ObjectAddress): Promise<void> {
  const upload = await findUpload(deps, r, addr);
  const marker = intParam(r, 'part-number-marker', 0, 0, MAX_PART_NUMBER);
  const maxParts = intParam(r, 'max-parts', 1000, 0, 1000);
  const after = (await deps.store.listParts(upload.id)).filter((p) => p.partNumber > marker);
  const page = after.slice(0, maxParts);
  const truncated = after.length > page.length;
  const owner = node('Owner', text('ID', 'statelock'), text('DisplayName', 'statelock'));
  sendXml(
    r,
    document(
      'ListPartsResult',
      text('Bucket', addr.bucket),
      text('Key', addr.objectKey),
      text('UploadId', upload.id),
      node('Initiator', text('ID', 'statelock'), text('DisplayName', 'statelock')),
      owner,
      text('StorageClass', 'STANDARD'),
      text('PartNumberMarker', marker),
      text('NextPartNumberMarker', page.length ? page[page.length - 1]!.partNumber : marker),
      text('MaxParts', maxParts),
      text('IsTruncated', truncated),
      ...page.map((p) => node('Part', text('PartNumber', p.partNumber), text('LastModified', isoDate(upload.createdAt)), text('ETag', quotedEtag(p.md5)), text('Size', p.size))),
    ),
  );
}

/** An integer query parameter within [min, max], `fallback` when absent. */
export function intParam(r: AwsRequest, name: string, fallback: number, min: number, max: number): number {
  const raw = r.query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^-?\d+$/.test(raw)) throw new StatelockError('S3_INVALID_ARGUMENT', { name, reason: `"${raw}" is not an integer` });
  const n = Number(raw);
  if (n < min) throw new StatelockError('S3_INVALID_ARGUMENT', { name, reason: `must be at least ${min}` });
  return Math.min(n, max);
}
