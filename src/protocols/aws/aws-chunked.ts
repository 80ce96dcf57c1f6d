import { createHash, type Hash } from 'node:crypto';
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
 * Decoded incrementally, as the body arrives (AwsChunkedDecoder); the HTTP layer has already removed any
 * HTTP `Transfer-Encoding: chunked` framing around it.
 */

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

/** Longest chunk-size line accepted: a size, a chunk-signature extension and generous slack. */
const MAX_SIZE_LINE = 4096;

/** Longest trailer section accepted (its lines and CRLFs): a few checksums and a signature need far less. */
const MAX_TRAILER_SECTION = 16 * 1024;

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

/**
 * What the decoder reports about the chunks as they complete, for the signed variants' chunk signatures
 * (see streamingSignatureCheck in sigv4.ts). Either method may throw to refuse the body.
 */
export interface ChunkObserver {
  /** Whether `chunk` needs the hex SHA-256 of each chunk's data (computed over the pieces as they pass). */
  readonly wantsDigest: boolean;
  /** A chunk is complete (the final 0-length one included): its size, chunk-signature (undefined when unsigned) and digest. */
  chunk(size: number, signature: string | undefined, sha256Hex: string | undefined): void;
  /** The trailer section was read: the body is complete and well-formed. */
  end(trailers: Record<string, string>): void;
}

export interface DecodedEnd {
  /** Trailer fields after the final chunk, names lowercased, values trimmed, in arrival order. */
  trailers: Record<string, string>;
  /** Bytes of data decoded (the chunks' sizes added up). */
  decodedLength: number;
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

/** Splits a trailer line `name:value`; null when it is not one. */
function parseTrailerLine(line: string): { name: string; value: string } | null {
  const colon = line.indexOf(':');
  if (colon <= 0) return null;
  const name = line.slice(0, colon).trim();
  if (!TOKEN.test(name)) return null;
  return { name: name.toLowerCase(), value: line.slice(colon + 1).trim() };
}

/**
 * Where the decoder is: reading a chunk-size line, a chunk's data, the CRLF after it, the trailer section
 * (`trailers`: lines up to an empty one; `trailersOrEnd`: the first line after the final chunk was empty, so
 * the body may end here or, in the documentation's layout, trailer lines follow), or done.
 */
type Phase = 'size' | 'data' | 'dataCrlf' | 'trailers' | 'trailersOrEnd' | 'done';

/**
 * The aws-chunked decoder, incremental: `push` takes the body's pieces as they arrive — split anywhere, in
 * the middle of a size line, of its chunk-signature, of a CRLF — and returns the data they complete
 * (subarrays of the pieces: nothing is copied); `end` checks that the body ended where it may and returns
 * the trailers. Memory is bounded whatever the body: a line is held only up to MAX_SIZE_LINE bytes, the
 * trailer section up to MAX_TRAILER_SECTION, and a chunk's data is never held.
 *
 * Refuses with AWS_CHUNKED_MALFORMED and a precise reason (bad or overlong size line, a chunk past
 * x-amz-decoded-content-length, short chunk, missing CRLF, bytes after the end, a decoded length other than
 * the declared one) as soon as the bytes show it. An `observer` sees every chunk as it completes (with its
 * data's SHA-256 when it asks for it) and the trailers at the end; it may throw to refuse.
 */
export class AwsChunkedDecoder {
  private phase: Phase = 'size';
  /** The line being read (size or trailer line), without its CRLF; `lineCr` when its last byte was a CR. */
  private line = '';
  private lineCr = false;
  /** Chunks begun so far (1-based index of the current one). */
  private index = 0;
  private signed: boolean | null = null;
  private size = 0;
  private signature: string | undefined;
  /** Data bytes of the current chunk still to come; CRLF bytes after it already seen. */
  private remaining = 0;
  private crlfSeen = 0;
  private hash: Hash | null = null;
  private decoded = 0;
  private trailerBytes = 0;
  private readonly trailers = new Map<string, string>();

  constructor(
    private readonly decodedContentLength: number | null,
    private readonly observer?: ChunkObserver,
  ) {}

  /** Feeds the next piece of the raw body; returns the data bytes it completes, in order. */
  push(piece: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < piece.length) {
      switch (this.phase) {
        case 'data': {
          const take = Math.min(this.remaining, piece.length - pos);
          const data = piece.subarray(pos, pos + take);
          this.hash?.update(data);
          out.push(data);
          this.remaining -= take;
          pos += take;
          if (this.remaining === 0) {
            this.completeChunk();
            this.phase = 'dataCrlf';
            this.crlfSeen = 0;
          }
          break;
        }
        case 'dataCrlf': {
          const expected = this.crlfSeen === 0 ? CR : LF;
          if (piece[pos] !== expected) throw malformed(`chunk ${this.index}: its ${this.size} data bytes are not followed by CRLF`);
          pos++;
          if (++this.crlfSeen === 2) this.phase = 'size';
          break;
        }
        case 'done':
          throw malformed(`bytes after the end of the body: ${excerpt(piece.toString('latin1', pos, pos + 60))}`);
        default:
          pos = this.readLine(piece, pos);
      }
    }
    return out;
  }

  /** The body has ended: checks that it ended where it may, and returns the trailers. */
  end(): DecodedEnd {
    switch (this.phase) {
      case 'size':
        if (this.line === '' && !this.lineCr) throw malformed(`the body ends after ${this.index} chunk(s) without the final 0-length chunk`);
        throw malformed(`chunk ${this.index + 1}: size line ${excerpt(this.line)} is not terminated by CRLF`);
      case 'data':
        throw malformed(`chunk ${this.index} declares ${this.size} bytes but only ${this.size - this.remaining} remain`);
      case 'dataCrlf':
        throw malformed(`chunk ${this.index}: its ${this.size} data bytes are not followed by CRLF`);
      case 'trailers':
        // `0\r\n` and nothing after it: what the JS SDK's encoder sends without a checksum.
        if (this.trailerBytes === 0 && this.line === '' && !this.lineCr) break;
        throw malformed(`the trailer section is not terminated by an empty line (${excerpt(this.line)} ends the body)`);
      case 'trailersOrEnd':
        if (this.line !== '' || this.lineCr) throw malformed(`bytes after the end of the body: ${excerpt(this.line)}`);
        break;
      case 'done':
        break;
    }
    this.phase = 'done';
    if (this.decodedContentLength !== null && this.decoded !== this.decodedContentLength) {
      throw malformed(`the decoded body is ${this.decoded} bytes but x-amz-decoded-content-length says ${this.decodedContentLength}`);
    }
    // fromEntries defines own data properties, so even a trailer named __proto__ stays an ordinary entry
    const trailers = Object.fromEntries(this.trailers);
    this.observer?.end(trailers);
    return { trailers, decodedLength: this.decoded };
  }

  /** Reads line bytes from `pos` up to the end of the piece or the line's LF; returns where it stopped. */
  private readLine(piece: Buffer, pos: number): number {
    const lf = piece.indexOf(LF, pos);
    const stop = lf < 0 ? piece.length : lf;
    if (stop > pos) {
      // A CR held back from an earlier piece was not the line's end after all: it is part of the line.
      if (this.lineCr) this.line += '\r';
      this.lineCr = piece[stop - 1] === CR;
      this.line += piece.toString('latin1', pos, this.lineCr ? stop - 1 : stop);
    }
    const limit = this.phase === 'size' ? MAX_SIZE_LINE : MAX_TRAILER_SECTION - this.trailerBytes;
    if (this.line.length > limit) {
      throw malformed(
        this.phase === 'size'
          ? `chunk ${this.index + 1}: size line ${excerpt(this.line)} is longer than ${MAX_SIZE_LINE} bytes without a CRLF`
          : `the trailer section is longer than ${MAX_TRAILER_SECTION} bytes`,
      );
    }
    if (lf < 0) return piece.length;
    if (!this.lineCr) {
      throw malformed(
        this.phase === 'size'
          ? `chunk ${this.index + 1}: size line ${excerpt(this.line)} is not terminated by CRLF`
          : `trailer line ${excerpt(this.line)} is not terminated by CRLF`,
      );
    }
    const line = this.line;
    this.line = '';
    this.lineCr = false;
    if (this.phase === 'size') this.sizeLine(line);
    else this.trailerLine(line);
    return lf + 1;
  }

  private sizeLine(line: string): void {
    this.index++;
    const header = parseChunkHeader(line, this.index);
    const signed = header.signature !== undefined;
    if (this.signed === null) this.signed = signed;
    else if (this.signed !== signed) {
      throw malformed(
        this.signed
          ? `chunk ${this.index} has no chunk-signature although the chunks before it are signed`
          : `chunk ${this.index} has a chunk-signature although the chunks before it are not signed`,
      );
    }
    if (this.decodedContentLength !== null && this.decoded + header.size > this.decodedContentLength) {
      throw malformed(
        `chunk ${this.index} declares ${header.size} bytes, past the ${this.decodedContentLength} of x-amz-decoded-content-length (${this.decoded} decoded before it)`,
      );
    }
    this.size = header.size;
    this.signature = header.signature;
    this.hash = this.observer?.wantsDigest ? createHash('sha256') : null;
    if (header.size === 0) {
      this.completeChunk();
      this.phase = 'trailers';
      return;
    }
    this.remaining = header.size;
    this.phase = 'data';
  }

  private completeChunk(): void {
    this.decoded += this.size;
    this.observer?.chunk(this.size, this.signature, this.hash?.digest('hex'));
    this.hash = null;
  }

  private trailerLine(line: string): void {
    const first = this.trailerBytes === 0 && this.phase === 'trailers';
    this.trailerBytes += line.length + 2;
    if (line === '' && this.phase === 'trailersOrEnd') throw malformed('bytes after the end of the body: "\\r\\n"');
    if (line === '') {
      // After the final chunk, an empty line ends the body — or, in the documentation's layout, is the final
      // chunk's own empty data line with trailer lines still to come.
      this.phase = first ? 'trailersOrEnd' : 'done';
      return;
    }
    const trailer = parseTrailerLine(line);
    if (trailer === null) {
      if (this.phase === 'trailersOrEnd') throw malformed(`bytes after the end of the body: ${excerpt(line)}`);
      throw malformed(`trailer line ${excerpt(line)} is not "name:value"`);
    }
    if (this.trailers.has(trailer.name)) throw malformed(`trailer ${trailer.name} is given twice`);
    this.trailers.set(trailer.name, trailer.value);
    this.phase = 'trailers';
  }
}

export interface DecodedChunked extends DecodedEnd {
  /** The decoded payload: every chunk's data, concatenated. */
  body: Buffer;
  /** The data length of every chunk, the final 0-length one included. */
  chunkLengths: number[];
}

/**
 * Decodes a body that is already whole, with the same decoder (for the requests that are read whole
 * first: UploadPart, lock objects, and tests): `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ...
 * 0\r\n<trailer lines>\r\n\r\n`. Throws as AwsChunkedDecoder does.
 */
export function decodeAwsChunked(raw: Buffer, decodedContentLength: number | null, observer?: ChunkObserver): DecodedChunked {
  const chunkLengths: number[] = [];
  const recording: ChunkObserver = {
    wantsDigest: observer?.wantsDigest ?? false,
    chunk: (size, signature, sha256Hex) => {
      chunkLengths.push(size);
      observer?.chunk(size, signature, sha256Hex);
    },
    end: (trailers) => observer?.end(trailers),
  };
  const decoder = new AwsChunkedDecoder(decodedContentLength, recording);
  const pieces = decoder.push(raw);
  const { trailers, decodedLength } = decoder.end();
  return { body: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), trailers, decodedLength, chunkLengths };
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
