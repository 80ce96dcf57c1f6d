import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../../auth/authenticator.js';
import { bodyStream, readRawBody } from '../../server/http-io.js';
import type { Digests } from '../../state/state-file.js';
import { StatelockError } from '../../server/errors.js';
import type { RequestContext } from '../../server/request-context.js';
import { AwsChunkedDecoder, decodeAwsChunked, isAwsChunked, type ChunkObserver } from './aws-chunked.js';
import type { AwsDoorDeps, AwsRequest, AwsService } from './aws-request.js';
import { checkAnnouncedTrailers, verifyChecksums, verifyChecksumsStreaming } from './checksums.js';
import { DynamoDbDoor } from './dynamodb/dynamodb-door.js';
import { S3Door } from './s3/s3-door.js';
import { checkClockSkew, isSigV4, parseAuthorization, parseRawQuery, requestTime, sha256Hex, streamingSignatureCheck, verifySignature, type SignedRequest } from './sigv4.js';
import { StsDoor } from './sts/sts-door.js';

export interface AwsAuthPolicy {
  /** Finds the principal and secret of an access key (see Authenticator.fromAccessKey). */
  authenticator: Authenticator;
  /** The server listens on loopback only: without any credential configured, any access key is accepted unverified. */
  loopback: boolean;
  maxSkewMs: number;
}

/** What an error answer needs to know about the request it answers. */
interface Answering {
  service: AwsService;
  requestId: string;
  method: string;
  resource: string;
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/**
 * The one entry for S3, DynamoDB and STS: every SigV4-signed request (and any request that looks like
 * one of those APIs) comes here, on the same port as the other doors. It checks what all three share —
 * the signature (or loopback trust), the clock, the payload hash, aws-chunked framing, Content-MD5 and
 * x-amz-checksum-* — and hands an {@link AwsRequest} to the service door named by the credential scope.
 */
export class AwsDoor {
  private readonly s3: S3Door;
  private readonly dynamodb: DynamoDbDoor;
  private readonly sts = new StsDoor();
  private readonly answering = new WeakMap<IncomingMessage, Answering>();

  constructor(
    deps: AwsDoorDeps,
    private readonly policy: AwsAuthPolicy,
    private readonly maxBodyBytes: number,
  ) {
    this.s3 = new S3Door(deps);
    this.dynamodb = new DynamoDbDoor(deps);
  }

  /** Does this request belong here? SigV4-signed, or unsigned but speaking DynamoDB (X-Amz-Target) or AWS headers. */
  static claims(req: IncomingMessage): boolean {
    return isSigV4(req.headers.authorization) || req.headers['x-amz-target'] !== undefined || req.headers['x-amz-content-sha256'] !== undefined || req.headers['x-amz-date'] !== undefined;
  }

  async handle(ctx: RequestContext, rawUrl: string): Promise<void> {
    const { req } = ctx;
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
    const answering: Answering = { service: guessService(req), requestId: newRequestId(), method: ctx.method, resource: rawPath };
    this.answering.set(req, answering);

    const header = req.headers.authorization;
    if (!header) throw new StatelockError('AWS_AUTH_MISSING');
    const auth = parseAuthorization(header);
    const service = toService(auth.service);
    answering.service = service;
    const signed: SignedRequest = { method: ctx.method, rawPath, rawQuery, rawHeaders: req.rawHeaders };
    const time = requestTime(auth, signed);
    checkClockSkew(time.amzDate, time.ms, Date.now(), this.policy.maxSkewMs);
    const { principal, secret } = await this.policy.authenticator.fromAccessKey(auth.accessKeyId, this.policy.loopback);
    ctx.principal = principal;
    // The DynamoDB operation travels in X-Amz-Target: unsigned, a captured GetItem could be replayed as a DeleteItem.
    if (service === 'dynamodb' && secret !== null && req.headers['x-amz-target'] !== undefined && !auth.signedHeaders.includes('x-amz-target')) {
      throw new StatelockError('AWS_AUTH_MALFORMED', { reason: 'X-Amz-Target must be among the signed headers' });
    }

    // S3 signs the payload hash it declares; the other services sign the hash of the body itself.
    const declaredHash = headerValue(req, 'x-amz-content-sha256');
    if (service === 's3') {
      if (!declaredHash) throw new StatelockError('AWS_AUTH_MALFORMED', { reason: 'S3 requests must carry x-amz-content-sha256' });
      if (secret !== null) verifySignature(signed, auth, secret, declaredHash);
    }
    const query = new URLSearchParams(parseRawQuery(rawQuery));
    const plainPayload = declaredHash === 'UNSIGNED-PAYLOAD' || (declaredHash !== undefined && /^[0-9a-f]{64}$/i.test(declaredHash));
    const chunked = isAwsChunked(req.headers);
    // Signed streaming uploads sign every chunk (and the trailer): check them, or a body changed in flight would land.
    const signatures = chunked && secret !== null && declaredHash?.startsWith('STREAMING-AWS4-HMAC-SHA256-PAYLOAD') ? streamingSignatureCheck(auth, time.amzDate, secret, declaredHash.endsWith('-TRAILER')) : undefined;
    const decodedLength = chunked ? declaredDecodedLength(req) : null;
    const streamable = chunked ? declaredHash?.startsWith('STREAMING-') === true : plainPayload;
    if (service === 's3' && streamable && this.s3.streamsBody(ctx.method, hostOf(req), rawPath, query, req.headers)) {
      // A state object's body streams into the store (decoded on the way when aws-chunked); what the buffered
      // path checks here is checked as it streams and before anything is committed (see streamedPayload).
      const { stream, verifyBody, checksums } = streamedPayload(req, this.maxBodyBytes, declaredHash!, chunked ? { decodedLength, signatures } : null);
      const r: AwsRequest = { ctx, service, method: ctx.method, rawPath, rawQuery, query, host: hostOf(req), region: auth.region, accessKeyId: auth.accessKeyId, body: Buffer.alloc(0), bodyStream: stream, verifyBody, checksums, requestId: answering.requestId };
      ctx.client.principal = principal.kind === 'anonymous' ? `aws:${auth.accessKeyId}` : principal.name;
      return this.s3.handle(r);
    }
    const raw = await readRawBody(req, this.maxBodyBytes);
    if (service !== 's3' && secret !== null) verifySignature(signed, auth, secret, raw.length === 0 ? EMPTY_SHA256 : sha256Hex(raw));

    let body = raw;
    let trailers: Record<string, string> | null = null;
    if (declaredHash && /^[0-9a-f]{64}$/i.test(declaredHash)) {
      const actual = sha256Hex(raw);
      if (actual !== declaredHash.toLowerCase()) throw new StatelockError('AWS_PAYLOAD_HASH_MISMATCH', { given: declaredHash, actual });
    } else if (declaredHash && declaredHash !== 'UNSIGNED-PAYLOAD' && !declaredHash.startsWith('STREAMING-')) {
      throw new StatelockError('AWS_AUTH_MALFORMED', { reason: `x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING- value, not "${declaredHash}"` });
    }
    if (chunked) {
      // Read whole (UploadPart, lock objects …), decoded by the same decoder in one piece.
      const decoded = decodeAwsChunked(raw, decodedLength, signatures);
      checkAnnouncedTrailers(req.headers, decoded.trailers);
      body = decoded.body;
      trailers = decoded.trailers;
    }
    // CompleteMultipartUpload's checksum headers describe the whole object, not this request's XML body.
    const completing = service === 's3' && ctx.method === 'POST' && /(^|&)uploadId=/.test(rawQuery);
    const checksums = completing ? {} : verifyChecksums(req.headers, trailers, body);

    const r: AwsRequest = {
      ctx,
      service,
      method: ctx.method,
      rawPath,
      rawQuery,
      // Decoded as the signature decodes it: a raw '+' is a plus, not a space (URLSearchParams would say space).
      query,
      host: hostOf(req),
      region: auth.region,
      accessKeyId: auth.accessKeyId,
      body,
      checksums,
      requestId: answering.requestId,
    };
    ctx.client.principal = principal.kind === 'anonymous' ? `aws:${auth.accessKeyId}` : principal.name;
    if (service === 's3') return this.s3.handle(r);
    if (service === 'dynamodb') return this.dynamodb.handle(r);
    return this.sts.handle(r);
  }

  /** The error answer in the wire format of the service the request was for. */
  sendError(req: IncomingMessage, res: ServerResponse, err: StatelockError): void {
    const a = this.answering.get(req) ?? { service: guessService(req), requestId: newRequestId(), method: req.method ?? 'GET', resource: (req.url ?? '/').split('?')[0]! };
    if (a.service === 'dynamodb') DynamoDbDoor.sendError(res, err, a.requestId);
    else if (a.service === 'sts') StsDoor.sendError(res, err, a.requestId);
    else S3Door.sendError(res, err, a.requestId, a.method, a.resource);
  }
}

function toService(scope: string): AwsService {
  if (scope === 's3' || scope === 'dynamodb' || scope === 'sts') return scope;
  if (scope === 'iam') return 'sts'; // iam:GetUser, which Terraform tries for the account ID, is answered beside STS
  throw new StatelockError('AWS_AUTH_MALFORMED', { reason: `statelock speaks S3, DynamoDB and STS; the credential scope names service "${scope}"` });
}

/** Before the Authorization header is parsed (or when it is missing): which wire format to answer in. */
function guessService(req: IncomingMessage): AwsService {
  const m = /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\//.exec(req.headers.authorization ?? '');
  if (m) return m[1] === 'dynamodb' ? 'dynamodb' : m[1] === 'sts' || m[1] === 'iam' ? 'sts' : 's3';
  if (req.headers['x-amz-target'] !== undefined) return 'dynamodb';
  if (String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') && req.method === 'POST' && (req.url ?? '/') === '/') return 'sts';
  return 's3';
}

function hostOf(req: IncomingMessage): string {
  const host = (req.headers.host ?? '').toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}


/** x-amz-decoded-content-length when it is a decimal number, else null (not checked, as before). */
function declaredDecodedLength(req: IncomingMessage): number | null {
  const value = headerValue(req, 'x-amz-decoded-content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

/**
 * An S3 body as it arrives (the size limit applies to the bytes on the wire), with the checks the buffered
 * path makes on the whole body. A plain body goes to the writer as it is; an aws-chunked one (`chunked`)
 * through AwsChunkedDecoder, whose data pieces go on as they are decoded — the framing, the decoded length
 * and the chunk signatures (`signatures`) are checked as chunks complete, the trailer signature when the body
 * ends. The CRCs and SHA-1 of x-amz-checksum-* headers and announced trailers run over the (decoded) pieces;
 * the declared payload hash (plain bodies), Content-MD5, SHA-256 and the trailers' values are compared with the
 * digests the ingest computes in the same pass, by `verifyBody`, which the writer calls before it commits.
 * `checksums` is filled then. Any refusal happens before the version is committed: the chunks already
 * stored are named by nothing, and the sweep removes them.
 */
function streamedPayload(req: IncomingMessage, limit: number, declaredHash: string, chunked: { decodedLength: number | null; signatures: ChunkObserver | undefined } | null) {
  // As the buffered path: a declared length over the limit is refused before anything else is looked at.
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new StatelockError('PAYLOAD_TOO_LARGE', { limit });
  const checks = verifyChecksumsStreaming(req.headers, { trailers: chunked !== null }); // malformed header values are refused before a byte is read
  const checksums: Record<string, string> = {};
  let trailers: Record<string, string> | undefined;
  async function* plain(): AsyncGenerator<Buffer> {
    for await (const piece of bodyStream(req, limit)) {
      checks.update(piece);
      yield piece;
    }
  }
  async function* decoded(decoder: AwsChunkedDecoder): AsyncGenerator<Buffer> {
    for await (const piece of bodyStream(req, limit)) {
      for (const data of decoder.push(piece)) {
        checks.update(data);
        yield data;
      }
    }
    trailers = decoder.end().trailers;
  }
  const verifyBody = (digests: Digests): void => {
    if (chunked === null && declaredHash !== 'UNSIGNED-PAYLOAD' && digests.sha256 !== declaredHash.toLowerCase()) {
      throw new StatelockError('AWS_PAYLOAD_HASH_MISMATCH', { given: declaredHash, actual: digests.sha256 });
    }
    Object.assign(checksums, checks.finish(digests, trailers));
  };
  const stream = chunked === null ? plain() : decoded(new AwsChunkedDecoder(chunked.decodedLength, chunked.signatures));
  return { stream, verifyBody, checksums };
}

/** Random bytes for request IDs, drawn 4 KiB at a time: one randomBytes call per request showed in profiles. */
let idPool = Buffer.alloc(0);
let idAt = 0;

/** A request ID as AWS prints them (16 upper-case hex digits), random. */
function newRequestId(): string {
  if (idAt + 8 > idPool.length) {
    idPool = randomBytes(4096);
    idAt = 0;
  }
  const id = idPool.toString('hex', idAt, idAt + 8).toUpperCase();
  idAt += 8;
  return id;
}
