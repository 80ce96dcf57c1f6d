import * as crypto from 'node:crypto';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { StatelockError } from '../../server/errors.js';
import type { ChunkObserver } from './aws-chunked.js';

/**
 * Server-side AWS Signature Version 4 (header auth), per reference §4: parse the Authorization header,
 * rebuild the canonical request from the request exactly as it arrived, and compare signatures in constant
 * time. Also the chunk and trailer signatures of the signed aws-chunked variants, checked chunk by chunk as the
 * body is decoded. No I/O.
 */

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** AWS's limit on the difference between the request time and the server clock: 15 minutes. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

export interface SigV4Authorization {
  accessKeyId: string;
  /** yyyymmdd */
  date: string;
  region: string;
  service: string;
  /** lowercase names, in the order the client listed them */
  signedHeaders: string[];
  signedHeadersRaw: string;
  /** 64 lowercase hex digits */
  signature: string;
}

export interface SignedRequest {
  method: string;
  /** exactly as on the request line, percent-encoded, no query */
  rawPath: string;
  /** after '?', '' if none */
  rawQuery: string;
  /** node's req.rawHeaders: [name, value, name, value, ...] */
  rawHeaders: string[];
}

function malformed(reason: string): StatelockError {
  return new StatelockError('AWS_AUTH_MALFORMED', { reason });
}

/** True when the request carries SigV4 header auth (Authorization starts with "AWS4-HMAC-SHA256"). */
export function isSigV4(authorizationHeader: string | undefined): boolean {
  if (authorizationHeader === undefined) return false;
  const text = authorizationHeader.trimStart();
  return text.startsWith(ALGORITHM) && (text.length === ALGORITHM.length || /\s/.test(text.charAt(ALGORITHM.length)));
}

/** Splits `Credential=<AKID>/<date>/<region>/<service>/aws4_request`'s value into its parts. */
function parseCredential(value: string): Pick<SigV4Authorization, 'accessKeyId' | 'date' | 'region' | 'service'> {
  const parts = value.split('/');
  if (parts.length !== 5) {
    throw malformed(`Credential must be <access key>/<yyyymmdd>/<region>/<service>/aws4_request, got "${value}"`);
  }
  const [accessKeyId, date, region, service, terminator] = parts as [string, string, string, string, string];
  if (accessKeyId === '') throw malformed('Credential has an empty access key ID');
  if (!/^\d{8}$/.test(date)) throw malformed(`Credential date "${date}" is not yyyymmdd`);
  if (region === '') throw malformed('Credential has an empty region');
  if (service === '') throw malformed('Credential has an empty service name');
  if (terminator !== TERMINATOR) throw malformed(`Credential must end with "${TERMINATOR}", not "${terminator}"`);
  return { accessKeyId, date, region, service };
}

/** Splits `SignedHeaders=a;b;c`'s value; names must be lowercase field names and `host` must be one of them. */
function parseSignedHeaders(value: string): string[] {
  const names = value.split(';');
  for (const name of names) {
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) {
      throw malformed(`SignedHeaders "${value}" must be lowercase header names separated by ';'`);
    }
  }
  if (new Set(names).size !== names.length) throw malformed(`SignedHeaders "${value}" names a header twice`);
  if (!names.includes('host')) throw malformed(`SignedHeaders "${value}" must include host`);
  return names;
}

/** Parses `AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=<64 hex>`. Throws AWS_AUTH_MALFORMED with a clear reason; `host` must be signed. */
export function parseAuthorization(header: string): SigV4Authorization {
  const text = header.trim();
  if (!isSigV4(text)) {
    throw malformed(`the Authorization header must start with "${ALGORITHM} " (got "${text.split(/\s/, 1)[0] ?? ''}")`);
  }
  const rest = text.slice(ALGORITHM.length).trim();
  if (rest === '') throw malformed('the Credential, SignedHeaders and Signature components are missing');
  let credential: string | undefined;
  let signedHeadersRaw: string | undefined;
  let signature: string | undefined;
  for (const item of rest.split(',')) {
    const part = item.trim();
    const equals = part.indexOf('=');
    if (equals <= 0) throw malformed(`"${part}" is not a name=value component`);
    const name = part.slice(0, equals);
    const value = part.slice(equals + 1);
    const given = name === 'Credential' ? credential : name === 'SignedHeaders' ? signedHeadersRaw : name === 'Signature' ? signature : null;
    if (given === null) throw malformed(`unknown component "${name}" (expected Credential, SignedHeaders and Signature)`);
    if (given !== undefined) throw malformed(`component ${name} is given twice`);
    if (name === 'Credential') credential = value;
    else if (name === 'SignedHeaders') signedHeadersRaw = value;
    else signature = value;
  }
  if (credential === undefined) throw malformed('the Credential component is missing');
  if (signedHeadersRaw === undefined) throw malformed('the SignedHeaders component is missing');
  if (signature === undefined) throw malformed('the Signature component is missing');
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) throw malformed('Signature must be 64 hexadecimal digits');
  // Named one by one: spreading the credential's object in cost more than the rest of the parse.
  const { accessKeyId, date, region, service } = parseCredential(credential);
  return {
    accessKeyId,
    date,
    region,
    service,
    signedHeaders: parseSignedHeaders(signedHeadersRaw),
    signedHeadersRaw,
    signature: signature.toLowerCase(),
  };
}

/** Every value of the header `name` (case-insensitive) in arrival order, from node's rawHeaders. */
export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === wanted) values.push(rawHeaders[i + 1] ?? '');
  }
  return values;
}

/** The last timestamp parsed and its answer: every request signed within the same second carries the same one. */
let lastAmzDate: { text: string; ms: number | null } = { text: '', ms: null };

/** `yyyymmddThhmmssZ` → epoch ms, or null when it is not that format or not a real instant. */
function parseAmzDate(text: string): number | null {
  if (text === lastAmzDate.text) return lastAmzDate.ms;
  const ms = parseAmzDateOnce(text);
  lastAmzDate = { text, ms };
  return ms;
}

function parseAmzDateOnce(text: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  return formatAmzDate(ms) === text ? ms : null;
}

/** Epoch ms → `yyyymmddThhmmssZ` (UTC, seconds precision). */
export function formatAmzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** The header value of x-amz-date (or Date), validated yyyymmddThhmmssZ and whose date part equals auth.date; throws AWS_AUTH_MALFORMED otherwise. */
export function requestTime(auth: SigV4Authorization, req: SignedRequest): { amzDate: string; ms: number } {
  let name = 'x-amz-date';
  let values = headerValues(req.rawHeaders, name);
  if (values.length === 0) {
    name = 'date';
    values = headerValues(req.rawHeaders, name);
  }
  if (values.length === 0) throw malformed('the request has neither an X-Amz-Date nor a Date header');
  if (values.length > 1) throw malformed(`the ${name} header is given ${values.length} times`);
  const amzDate = (values[0] ?? '').trim();
  const ms = parseAmzDate(amzDate);
  if (ms === null) throw malformed(`the ${name} header "${amzDate}" is not a valid yyyymmddThhmmssZ timestamp`);
  if (amzDate.slice(0, 8) !== auth.date) {
    throw malformed(`the credential scope date ${auth.date} does not match the ${name} header ${amzDate}`);
  }
  return { amzDate, ms };
}

/** A skew limit in words, for the error message. */
function describeSkew(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minutes`;
  return `${ms / 1000} seconds`;
}

/** Throws AWS_CLOCK_SKEW when |now - requestMs| > maxSkewMs (default 15 minutes). */
export function checkClockSkew(amzDate: string, requestMs: number, nowMs: number, maxSkewMs: number = DEFAULT_MAX_CLOCK_SKEW_MS): void {
  if (Math.abs(nowMs - requestMs) > maxSkewMs) {
    throw new StatelockError('AWS_CLOCK_SKEW', {
      requestTime: amzDate,
      serverTime: formatAmzDate(nowMs),
      maxSkew: describeSkew(maxSkewMs),
    });
  }
}

const HEX_DIGITS = '0123456789ABCDEF';

/** Is byte `b` one of SigV4's unreserved characters (A–Z a–z 0–9 - _ . ~)? */
function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f || b === 0x2e || b === 0x7e
  );
}

/** Percent-encodes every byte but the unreserved ones (uppercase hex; a space becomes %20). */
export function uriEncode(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    out += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX_DIGITS[b >> 4]}${HEX_DIGITS[b & 15]}`;
  }
  return out;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Percent-decodes to bytes. `+` stays a literal `+` (SigV4 is RFC 3986, not form encoding), a `%` not
 * followed by two hex digits stays a literal `%`, other characters contribute their UTF-8 bytes.
 */
export function percentDecode(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x25 && i + 2 < text.length && hexValue(text.charCodeAt(i + 1)) >= 0 && hexValue(text.charCodeAt(i + 2)) >= 0) {
      bytes.push(hexValue(text.charCodeAt(i + 1)) * 16 + hexValue(text.charCodeAt(i + 2)));
      i += 2;
    } else if (code < 0x80) {
      bytes.push(code);
    } else {
      const end = code >= 0xd800 && code <= 0xdbff && i + 1 < text.length ? i + 2 : i + 1;
      for (const b of Buffer.from(text.slice(i, end), 'utf8')) bytes.push(b);
      i = end - 1;
    }
  }
  return Buffer.from(bytes);
}

/**
 * The raw query split into decoded [name, value] pairs, the way the signature sees them: split on '&', each
 * item at its first '=' (no '=' → empty value), percent-decoded with '+' kept literal. Routing should decode
 * with this too, so that what is acted on is what was signed.
 */
export function parseRawQuery(rawQuery: string): Array<[string, string]> {
  if (rawQuery === '') return [];
  const pairs: Array<[string, string]> = [];
  for (const item of rawQuery.split('&')) {
    if (item === '') continue;
    const equals = item.indexOf('=');
    const name = equals < 0 ? item : item.slice(0, equals);
    const value = equals < 0 ? '' : item.slice(equals + 1);
    pairs.push([percentDecode(name).toString('utf8'), percentDecode(value).toString('utf8')]);
  }
  return pairs;
}

/** Canonical query string: every parameter decoded, re-encoded with the unreserved set, sorted by name then value. */
export function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  const encoded: Array<[string, string]> = [];
  for (const item of rawQuery.split('&')) {
    if (item === '') continue;
    const equals = item.indexOf('=');
    const name = equals < 0 ? item : item.slice(0, equals);
    const value = equals < 0 ? '' : item.slice(equals + 1);
    encoded.push([uriEncode(percentDecode(name)), uriEncode(percentDecode(value))]);
  }
  // Encoded strings are ASCII, so code-unit order is the byte order AWS sorts by.
  encoded.sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  return encoded.map(([name, value]) => `${name}=${value}`).join('&');
}

/**
 * Canonical URI. For S3 the path exactly as received (the client encoded it once and signs that); for other
 * services the path with `.`/`..`/empty segments removed and every segment encoded again with the
 * unreserved set (SigV4's double encoding; `/` in practice for DynamoDB and STS).
 */
export function canonicalUri(rawPath: string, service: string): string {
  if (service === 's3') return rawPath === '' ? '/' : rawPath;
  const segments: string[] = [];
  for (const segment of rawPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(uriEncode(Buffer.from(segment, 'utf8')));
  }
  if (segments.length === 0) return '/';
  return `/${segments.join('/')}${rawPath.endsWith('/') ? '/' : ''}`;
}

/** The S3 path decoded and re-encoded with the unreserved set (keeping '/'): the tolerant second attempt. */
function reencodedS3Path(rawPath: string): string {
  if (rawPath === '') return '/';
  return rawPath
    .split('/')
    .map((segment) => uriEncode(percentDecode(segment)))
    .join('/');
}

/** Canonical headers: `name:value\n` for each signed header, all its values trimmed, whitespace runs collapsed, joined with ','. */
export function canonicalHeaders(rawHeaders: readonly string[], signedHeaders: readonly string[]): string {
  let out = '';
  for (const name of signedHeaders) {
    const values = headerValues(rawHeaders, name).map((value) => value.replace(/^[ \t]+|[ \t]+$/g, '').replace(/[ \t]+/g, ' '));
    out += `${name}:${values.join(',')}\n`;
  }
  return out;
}

/** Builds the canonical request around a given canonical URI. */
function canonicalRequestWithUri(req: SignedRequest, auth: SigV4Authorization, uri: string, payloadHash: string): string {
  return [
    req.method,
    uri,
    canonicalQuery(req.rawQuery),
    canonicalHeaders(req.rawHeaders, auth.signedHeaders),
    auth.signedHeadersRaw,
    payloadHash,
  ].join('\n');
}

/** canonical request string per the reference §4 step 2. payloadHash: for S3 the literal x-amz-content-sha256 value; otherwise the hex sha256 of the body. For service 's3' the canonical URI is rawPath verbatim (empty → '/'); for other services the URI-encoded normalised path. */
export function canonicalRequest(req: SignedRequest, auth: SigV4Authorization, payloadHash: string): string {
  return canonicalRequestWithUri(req, auth, canonicalUri(req.rawPath, auth.service), payloadHash);
}

/** `<date>/<region>/<service>/aws4_request` */
export function credentialScope(auth: Pick<SigV4Authorization, 'date' | 'region' | 'service'>): string {
  return `${auth.date}/${auth.region}/${auth.service}/${TERMINATOR}`;
}

/** Hex SHA-256 of a string (UTF-8) or bytes (one-shot crypto.hash where Node has it, 20.12+: two per signed request). */
export function sha256Hex(data: string | Uint8Array): string {
  return typeof crypto.hash === 'function' ? crypto.hash('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex');
}

/** `AWS4-HMAC-SHA256\n<amzDate>\n<scope>\n<hex sha256(canonical request)>` */
export function stringToSign(amzDate: string, auth: SigV4Authorization, canonical: string): string {
  return [ALGORITHM, amzDate, credentialScope(auth), sha256Hex(canonical)].join('\n');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/**
 * Derived keys by date, region, service and secret, as AWS's own SDKs keep them: the chain costs four HMACs,
 * and a key is valid for a whole day. Bounded: emptied when it grows past {@link SIGNING_KEYS_MAX}. Holds
 * nothing a caller could not derive from the secret the server already holds; a request is still checked
 * against the secret looked up for it, so a revoked or changed key derives nothing from here.
 */
const signingKeys = new Map<string, Buffer>();
const SIGNING_KEYS_MAX = 256;

/** The derived key: HMAC-SHA256 chain "AWS4"+secret → date → region → service → "aws4_request". */
export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const id = `${date}\0${region}\0${service}\0${secret}`;
  let key = signingKeys.get(id);
  if (key === undefined) {
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), TERMINATOR);
    if (signingKeys.size >= SIGNING_KEYS_MAX) signingKeys.clear();
    signingKeys.set(id, key);
  }
  return key;
}

/** Hex HMAC-SHA256 of `toSign` under a signing key: the signature. */
export function signatureOf(key: Buffer, toSign: string): string {
  return hmac(key, toSign).toString('hex');
}

/** Constant-time comparison of two hex signatures. */
function sameSignature(a: string, b: string): boolean {
  const left = Buffer.from(a, 'latin1');
  const right = Buffer.from(b, 'latin1');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** Verifies the signature in constant time; for S3 also tries the tolerant variant (decode + re-encode the path with the unreserved set) before failing. Throws AWS_SIGNATURE_MISMATCH. */
export function verifySignature(req: SignedRequest, auth: SigV4Authorization, secret: string, payloadHash: string): void {
  const { amzDate } = requestTime(auth, req);
  const key = signingKey(secret, auth.date, auth.region, auth.service);
  const uris = [canonicalUri(req.rawPath, auth.service)];
  if (auth.service === 's3') {
    const tolerant = reencodedS3Path(req.rawPath);
    if (tolerant !== uris[0]) uris.push(tolerant);
  }
  for (const uri of uris) {
    const expected = signatureOf(key, stringToSign(amzDate, auth, canonicalRequestWithUri(req, auth, uri, payloadHash)));
    if (sameSignature(expected, auth.signature)) return;
  }
  throw new StatelockError('AWS_SIGNATURE_MISMATCH');
}

/** The signature of one chunk of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body (given its data's hex SHA-256), chained on the previous one. */
export function chunkSignature(key: Buffer, amzDate: string, auth: SigV4Authorization, previousSignature: string, chunkSha256Hex: string): string {
  const toSign = [`${ALGORITHM}-PAYLOAD`, amzDate, credentialScope(auth), previousSignature, EMPTY_SHA256, chunkSha256Hex].join('\n');
  return signatureOf(key, toSign);
}

/**
 * The x-amz-trailer-signature of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body: over `name:value\n` for
 * every trailer but the signature itself, in arrival order, chained on the final chunk's signature.
 */
export function trailerSignature(
  key: Buffer,
  amzDate: string,
  auth: SigV4Authorization,
  previousSignature: string,
  trailers: Record<string, string>,
): string {
  let canonical = '';
  for (const [name, value] of Object.entries(trailers)) {
    if (name !== 'x-amz-trailer-signature') canonical += `${name}:${value}\n`;
  }
  const toSign = [`${ALGORITHM}-TRAILER`, amzDate, credentialScope(auth), previousSignature, sha256Hex(canonical)].join('\n');
  return signatureOf(key, toSign);
}

/**
 * The chunk signatures (and, with `withTrailer`, the x-amz-trailer-signature) of a signed aws-chunked body,
 * checked as the decoder completes each chunk: the chain starts at the Authorization header's signature and
 * each chunk's signature chains into the next. Throws AWS_SIGNATURE_MISMATCH at the first chunk whose
 * signature is missing or wrong, and at the end when the trailer signature is.
 */
export function streamingSignatureCheck(auth: SigV4Authorization, amzDate: string, secret: string, withTrailer: boolean): ChunkObserver {
  const key = signingKey(secret, auth.date, auth.region, auth.service);
  let previous = auth.signature;
  return {
    wantsDigest: true,
    chunk(_size, signature, sha256Hex) {
      if (signature === undefined || sha256Hex === undefined) throw new StatelockError('AWS_SIGNATURE_MISMATCH');
      const expected = chunkSignature(key, amzDate, auth, previous, sha256Hex);
      if (!sameSignature(expected, signature)) throw new StatelockError('AWS_SIGNATURE_MISMATCH');
      previous = expected;
    },
    end(trailers) {
      // The decoder has seen the final 0-length chunk, so at least that one was signed and checked.
      if (!withTrailer) return;
      const given = trailers['x-amz-trailer-signature'];
      if (given === undefined || !sameSignature(trailerSignature(key, amzDate, auth, previous, trailers), given.toLowerCase())) {
        throw new StatelockError('AWS_SIGNATURE_MISMATCH');
      }
    },
  };
}
