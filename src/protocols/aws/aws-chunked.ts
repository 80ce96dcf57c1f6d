import type { IncomingHttpHeaders } from 'node:http';
import { StatelockError } from '../../server/errors.js';

/**
 * The aws-chunked content encoding S3 clients use for streaming uploads (reference §3.3 points 3–5):
 *
 *   <hex size>[;chunk-signature=<64 hex>]\r\n<data>\r\n   (repeated)
 *   0[;chunk-signature=<64 hex>]\r\n
 *   <name>:<value>\r\n                                   (zero or more trailers)
 *   \r\n
 *
 * Pure functions over a fully received body; the HTTP layer has already removed any HTTP
 * `Transfer-Encoding: chunked` framing around it.
 */

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

/** Longest chunk-size line accepted: a size, a chunk-signature extension and generous slack. */
const MAX_SIZE_LINE = 4096;

/** Hex digits allowed in a chunk size: 13 keeps every value a safe integer (< 2^52). */
const MAX_SIZE_DIGITS = 13;

/** The characters of an HTTP field name (RFC 9110 token). */
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/** One header value as a string (node gives an array only for a few repeated headers). */
function headerText(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/** The comma-separated codings of a Content-Encoding value, trimmed and lowercased, empty ones dropped. */
function contentCodings(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '');
}

/** Does this request carry an aws-chunked body? (x-amz-content-sha256 starts with STREAMING- or Content-Encoding contains aws-chunked) */
export function isAwsChunked(headers: IncomingHttpHeaders): boolean {
  const payloadHash = headerText(headers['x-amz-content-sha256']);
  if (payloadHash !== undefined && payloadHash.trim().startsWith('STREAMING-')) return true;
  return contentCodings(headerText(headers['content-encoding'])).includes('aws-chunked');
}

/**
 * The Content-Encoding to keep with the decoded object: the request's value without `aws-chunked`
 * (the JS SDK sends e.g. `gzip,aws-chunked`), or null when nothing else remains.
 */
export function storedContentEncoding(value: string | undefined): string | null {
  const rest = contentCodings(value).filter((coding) => coding !== 'aws-chunked');
  return rest.length === 0 ? null : rest.join(',');
}

export interface DecodedChunked {
  /** The decoded payload: every chunk's data, concatenated. */
  body: Buffer;
  /** Trailer fields after the final chunk, names lowercased, values trimmed, in arrival order. */
  trailers: Record<string, string>;
  /** The chunk-signature of every chunk, the final 0-length one included; empty for the unsigned variants. */
  chunkSignatures: string[];
  /** The data length of every chunk, the final 0-length one included (aligned with chunkSignatures when signed). */
  chunkLengths: number[];
}

function malformed(reason: string): StatelockError {
  return new StatelockError('AWS_CHUNKED_MALFORMED', { reason });
}

/** A short, printable excerpt of a line for an error message. */
function excerpt(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

interface ChunkHeader {
  size: number;
  signature: string | undefined;
}

/** Parses `<hex size>[;name=value]...`; only the chunk-signature extension means anything here. */
function parseChunkHeader(line: string, index: number): ChunkHeader {
  const semicolon = line.indexOf(';');
  const sizeText = semicolon < 0 ? line : line.slice(0, semicolon);
  if (!/^[0-9a-fA-F]+$/.test(sizeText)) {
    throw malformed(`chunk ${index}: size line ${excerpt(line)} does not start with a hexadecimal chunk size`);
  }
  if (sizeText.length > MAX_SIZE_DIGITS) {
    throw malformed(`chunk ${index}: chunk size ${excerpt(sizeText)} is too large`);
  }
  let signature: string | undefined;
  if (semicolon >= 0) {
    for (const extension of line.slice(semicolon + 1).split(';')) {
      const equals = extension.indexOf('=');
      const name = (equals < 0 ? extension : extension.slice(0, equals)).trim();
      if (!TOKEN.test(name)) throw malformed(`chunk ${index}: malformed chunk extension ${excerpt(extension)}`);
      if (name.toLowerCase() !== 'chunk-signature') continue;
      const value = equals < 0 ? '' : extension.slice(equals + 1).trim();
      if (!/^[0-9a-f]{64}$/.test(value)) {
        throw malformed(`chunk ${index}: chunk-signature ${excerpt(value)} is not 64 lowercase hexadecimal digits`);
      }
      if (signature !== undefined) throw malformed(`chunk ${index}: chunk-signature given twice`);
      signature = value;
    }
  }
  return { size: parseInt(sizeText, 16), signature };
}

/** The line starting at `pos` (without its CRLF) and where the next one starts, or null without a CRLF. */
function readLine(raw: Buffer, pos: number): { line: string; next: number } | null {
  const end = raw.indexOf(CRLF, pos);
  if (end < 0) return null;
  return { line: raw.toString('latin1', pos, end), next: end + 2 };
}

/** Splits a trailer line `name:value`; null when it is not one. */
function parseTrailerLine(line: string): { name: string; value: string } | null {
  const colon = line.indexOf(':');
  if (colon <= 0) return null;
  const name = line.slice(0, colon).trim();
  if (!TOKEN.test(name)) return null;
  return { name: name.toLowerCase(), value: line.slice(colon + 1).trim() };
}

/**
 * Reads the trailer section that starts at `pos` (just after the final chunk's size line) and checks that
 * nothing follows it. Accepted forms:
 * - the standard one (botocore, the Go and JS SDKs with a checksum): trailer lines, then an empty line;
 * - `0\r\n` at the very end of the body, with no trailer section at all: what the JS SDK's
 *   getAwsChunkedEncodingStream emits when it is given no checksum;
 * - the layout of the AWS documentation's signed-trailer example, where the final chunk carries its own
 *   empty data line (`0;chunk-signature=…\r\n\r\n`) before the trailer lines.
 */
function readTrailers(raw: Buffer, start: number): Record<string, string> {
  const trailers = new Map<string, string>();
  if (start === raw.length) return {};
  let pos = start;
  let first = true;
  for (;;) {
    const read = readLine(raw, pos);
    if (read === null) {
      throw malformed(
        `the trailer section is not terminated by an empty line (${excerpt(raw.toString('latin1', pos))} ends the body)`,
      );
    }
    if (read.line === '') {
      pos = read.next;
      if (first && pos < raw.length) {
        const following = readLine(raw, pos);
        if (following !== null && parseTrailerLine(following.line) !== null) {
          first = false; // the documentation's layout: an empty data line, then the trailers
          continue;
        }
      }
      break;
    }
    first = false;
    const trailer = parseTrailerLine(read.line);
    if (trailer === null) throw malformed(`trailer line ${excerpt(read.line)} is not "name:value"`);
    if (trailers.has(trailer.name)) throw malformed(`trailer ${trailer.name} is given twice`);
    trailers.set(trailer.name, trailer.value);
    pos = read.next;
  }
  if (pos !== raw.length) {
    throw malformed(`${raw.length - pos} bytes of trailing garbage after the end of the body: ${excerpt(raw.toString('latin1', pos))}`);
  }
  // fromEntries defines own data properties, so even a trailer named __proto__ stays an ordinary entry
  return Object.fromEntries(trailers);
}

/**
 * Decodes `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0\r\n<trailer lines>\r\n\r\n`. Throws
 * AWS_CHUNKED_MALFORMED with a precise reason (bad size line, short chunk, missing CRLF, trailing garbage,
 * decoded length != x-amz-decoded-content-length when given). Chunk signatures are only parsed here; see
 * verifyStreamingSignatures in sigv4.ts to check them.
 */
export function decodeAwsChunked(raw: Buffer, decodedContentLength: number | null): DecodedChunked {
  const pieces: Buffer[] = [];
  const chunkLengths: number[] = [];
  const chunkSignatures: string[] = [];
  let signed = false;
  let pos = 0;
  for (let index = 1; ; index++) {
    if (pos >= raw.length) {
      throw malformed(`the body ends after ${index - 1} chunk(s) without the final 0-length chunk`);
    }
    const end = raw.indexOf(CRLF, pos);
    if (end < 0 || end - pos > MAX_SIZE_LINE) {
      throw malformed(`chunk ${index}: size line ${excerpt(raw.toString('latin1', pos, pos + 60))} is not terminated by CRLF`);
    }
    const header = parseChunkHeader(raw.toString('latin1', pos, end), index);
    if (index === 1) signed = header.signature !== undefined;
    else if (signed !== (header.signature !== undefined)) {
      throw malformed(
        signed
          ? `chunk ${index} has no chunk-signature although the chunks before it are signed`
          : `chunk ${index} has a chunk-signature although the chunks before it are not signed`,
      );
    }
    if (header.signature !== undefined) chunkSignatures.push(header.signature);
    chunkLengths.push(header.size);
    pos = end + 2;
    if (header.size === 0) break;
    const remaining = raw.length - pos;
    if (header.size > remaining) {
      throw malformed(`chunk ${index} declares ${header.size} bytes but only ${remaining} remain`);
    }
    pieces.push(raw.subarray(pos, pos + header.size));
    pos += header.size;
    if (raw[pos] !== CR || raw[pos + 1] !== LF) {
      throw malformed(`chunk ${index}: its ${header.size} data bytes are not followed by CRLF`);
    }
    pos += 2;
  }
  const trailers = readTrailers(raw, pos);
  const body = Buffer.concat(pieces);
  if (decodedContentLength !== null && body.length !== decodedContentLength) {
    throw malformed(`the decoded body is ${body.length} bytes but x-amz-decoded-content-length says ${decodedContentLength}`);
  }
  return { body, trailers, chunkSignatures, chunkLengths };
}

/**
 * Encodes `body` as an unsigned aws-chunked stream (`chunkSize`-byte chunks, default 64 KiB, then the final
 * 0-length chunk and `trailers`), the form botocore and the Go SDK send with STREAMING-UNSIGNED-PAYLOAD-TRAILER.
 * For tests and tools; the server only decodes.
 */
export function encodeAwsChunked(body: Buffer, options: { chunkSize?: number; trailers?: Record<string, string> } = {}): Buffer {
  const chunkSize = options.chunkSize ?? 64 * 1024;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  const parts: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += chunkSize) {
    const chunk = body.subarray(offset, offset + chunkSize);
    parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF);
  }
  parts.push(Buffer.from('0\r\n', 'latin1'));
  for (const [name, value] of Object.entries(options.trailers ?? {})) parts.push(Buffer.from(`${name}:${value}\r\n`, 'latin1'));
  parts.push(CRLF);
  return Buffer.concat(parts);
}
