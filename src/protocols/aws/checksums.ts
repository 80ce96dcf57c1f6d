import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import zlib from 'node:zlib';
import { StatelockError } from '../../server/errors.js';

/**
 * The checksums S3 clients attach to an upload (`x-amz-checksum-<alg>` headers or aws-chunked trailers,
 * and `Content-MD5`), computed and verified against the received body. Pure functions: no I/O.
 *
 * Every value travels as base64 of the checksum's big-endian bytes (reference §3.3 point 7).
 */

export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'crc64nvme' | 'sha1' | 'sha256';

/** Every algorithm S3 accepts in an `x-amz-checksum-<alg>` header, in a stable order. */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'];

/** Length in bytes of each algorithm's digest, which fixes the length of a valid base64 value. */
const DIGEST_BYTES: Record<ChecksumAlgorithm | 'md5', number> = {
  crc32: 4,
  crc32c: 4,
  crc64nvme: 8,
  sha1: 20,
  sha256: 32,
  md5: 16,
};

/** Builds the 256-entry lookup table of a reflected (LSB-first) 32-bit CRC. */
function crc32Table(reflectedPoly: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ reflectedPoly : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
}

const CRC32_IEEE_TABLE = crc32Table(0xedb88320);
const CRC32C_TABLE = crc32Table(0x82f63b78);

/** A reflected 32-bit CRC with init and final xor 0xFFFFFFFF (CRC-32 and CRC-32C); `previous` continues one. */
function reflectedCrc32(table: Uint32Array, data: Uint8Array, previous = 0): number {
  let crc = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = (crc >>> 8) ^ table[(crc ^ data[i]!) & 0xff]!;
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC-32 (IEEE 802.3) by table: the fallback when node lacks zlib.crc32 (added in node 20.15). */
export function crc32Js(data: Uint8Array, previous = 0): number {
  return reflectedCrc32(CRC32_IEEE_TABLE, data, previous);
}

/** CRC-32 (IEEE 802.3, as zlib and S3 `crc32`): node's native zlib.crc32 where present, else the table. */
export function crc32(data: Uint8Array, previous = 0): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data, previous) >>> 0;
  return crc32Js(data, previous);
}

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), S3 `crc32c`. */
export function crc32c(data: Uint8Array, previous = 0): number {
  return reflectedCrc32(CRC32C_TABLE, data, previous);
}

/**
 * The CRC-64/NVME polynomial in reflected form. Its normal (MSB-first) form is 0xad93d23594c93659, the value
 * Go's crc64.MakeTable is given; bit-reversing that gives this constant (test/aws/checksums.test.ts checks it).
 */
export const CRC64_NVME_REFLECTED_POLY = 0x9a6c9329ac4bc9b5n;

/** The CRC-64/NVME table split into high and low 32-bit halves, so the per-byte loop avoids BigInt. */
const CRC64_NVME_TABLE = ((): { hi: Uint32Array; lo: Uint32Array } => {
  const hi = new Uint32Array(256);
  const lo = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = BigInt(i);
    for (let bit = 0; bit < 8; bit++) c = c & 1n ? (c >> 1n) ^ CRC64_NVME_REFLECTED_POLY : c >> 1n;
    hi[i] = Number(c >> 32n);
    lo[i] = Number(c & 0xffffffffn);
  }
  return { hi, lo };
})();

/** CRC-64/NVME (reflected, init and final xor all ones), S3 `crc64nvme`, as 8 big-endian bytes; `previous` continues one. */
export function crc64nvme(data: Uint8Array, previous?: Buffer): Buffer {
  const { hi: tableHi, lo: tableLo } = CRC64_NVME_TABLE;
  let hi = previous ? (previous.readUInt32BE(0) ^ 0xffffffff) >>> 0 : 0xffffffff;
  let lo = previous ? (previous.readUInt32BE(4) ^ 0xffffffff) >>> 0 : 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    const index = (lo ^ data[i]!) & 0xff;
    lo = ((lo >>> 8) | ((hi & 0xff) << 24)) ^ tableLo[index]!;
    hi = (hi >>> 8) ^ tableHi[index]!;
  }
  const out = Buffer.alloc(8);
  out.writeUInt32BE((hi ^ 0xffffffff) >>> 0, 0);
  out.writeUInt32BE((lo ^ 0xffffffff) >>> 0, 4);
  return out;
}

/** A checksum computed over a body that arrives in pieces. */
export interface RunningChecksum {
  update(data: Uint8Array): void;
  /** base64 of the big-endian digest, as the header carries it. */
  digest(): string;
}

/** The running form of `alg`, for bodies that are verified while they stream (see verifyChecksumsStreaming). */
export function runningChecksum(alg: ChecksumAlgorithm | 'md5'): RunningChecksum {
  switch (alg) {
    case 'crc32':
    case 'crc32c': {
      const step = alg === 'crc32' ? crc32 : crc32c;
      let value = 0;
      return { update: (d) => void (value = step(d, value)), digest: () => uint32Bytes(value).toString('base64') };
    }
    case 'crc64nvme': {
      let value: Buffer | undefined;
      return { update: (d) => void (value = crc64nvme(d, value)), digest: () => (value ?? crc64nvme(new Uint8Array(0))).toString('base64') };
    }
    default: {
      const hash = createHash(alg);
      return { update: (d) => void hash.update(d), digest: () => hash.digest('base64') };
    }
  }
}

/** A 32-bit value as 4 big-endian bytes. */
function uint32Bytes(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

/** The raw digest bytes of `alg` over `body`. */
function digestBytes(alg: ChecksumAlgorithm | 'md5', body: Uint8Array): Buffer {
  switch (alg) {
    case 'crc32':
      return uint32Bytes(crc32(body));
    case 'crc32c':
      return uint32Bytes(crc32c(body));
    case 'crc64nvme':
      return crc64nvme(body);
    case 'sha1':
    case 'sha256':
    case 'md5':
      return createHash(alg).update(body).digest();
  }
}

/** base64 of the big-endian checksum bytes, as the x-amz-checksum-<alg> header carries it */
export function computeChecksum(alg: ChecksumAlgorithm, body: Buffer): string {
  return digestBytes(alg, body).toString('base64');
}

/** base64 of the MD5 of `body`, as `Content-MD5` carries it (RFC 1864). */
export function computeContentMd5(body: Buffer): string {
  return digestBytes('md5', body).toString('base64');
}

/**
 * Checks that `value` is canonical base64 of exactly `bytes` bytes (padding included, no stray bits), so a
 * value that could never match is reported as InvalidDigest rather than BadDigest.
 */
function checkDigestFormat(header: string, value: string, bytes: number): void {
  const expectedLength = 4 * Math.ceil(bytes / 3);
  if (value.length !== expectedLength || !/^[A-Za-z0-9+/]+={0,2}$/.test(value)) {
    throw new StatelockError('AWS_INVALID_DIGEST', {
      header,
      reason: `expected the base64 encoding of ${bytes} bytes (${expectedLength} characters), got ${JSON.stringify(value)}`,
    });
  }
  const decoded = Buffer.from(value, 'base64');
  if (decoded.length !== bytes || decoded.toString('base64') !== value) {
    throw new StatelockError('AWS_INVALID_DIGEST', {
      header,
      reason: `${JSON.stringify(value)} is not canonical base64 of ${bytes} bytes`,
    });
  }
}

/** One header value as a string; a repeated header (node gives an array, or joins with ", ") stays visible as such. */
function headerText(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Validates one given value and compares it with the body's digest. */
function verifyOne(header: string, given: string, alg: ChecksumAlgorithm | 'md5', body: Buffer): string {
  const value = given.trim();
  checkDigestFormat(header, value, DIGEST_BYTES[alg]);
  const actual = digestBytes(alg, body).toString('base64');
  if (actual !== value) throw new StatelockError('AWS_BAD_DIGEST', { header, given: value, actual });
  return actual;
}

/**
 * Finds every x-amz-checksum-<alg> in headers (and in trailers when given) and Content-MD5 (base64), verifies
 * each against body: throws AWS_INVALID_DIGEST when a value is not valid base64 of the right length,
 * AWS_BAD_DIGEST on a mismatch (header name in {header}). Returns the verified checksums (lowercase alg →
 * base64; Content-MD5 under `md5`).
 *
 * Only the five algorithm names are looked at: `x-amz-checksum-mode`, `-algorithm`, `-type` and algorithms
 * this server does not compute are ignored (and so absent from the result). Call it only where the checksum
 * describes the request body (PutObject, UploadPart), not on CompleteMultipartUpload, whose checksum headers
 * describe the assembled object.
 */
export function verifyChecksums(
  headers: IncomingHttpHeaders,
  trailers: Record<string, string> | null,
  body: Buffer,
): Record<string, string> {
  const verified: Record<string, string> = {};
  for (const alg of CHECKSUM_ALGORITHMS) {
    const name = `x-amz-checksum-${alg}`;
    const fromHeader = headerText(headers[name]);
    if (fromHeader !== undefined) verified[alg] = verifyOne(name, fromHeader, alg, body);
    const fromTrailer = trailers?.[name];
    if (fromTrailer !== undefined) verified[alg] = verifyOne(`${name} trailer`, fromTrailer, alg, body);
  }
  const md5 = headerText(headers['content-md5']);
  if (md5 !== undefined) verified['md5'] = verifyOne('Content-MD5', md5, 'md5', body);
  return verified;
}

/**
 * The x-amz-checksum-<alg> trailers a request announces in `x-amz-trailer` (the SDKs announce every trailer
 * they send), lowercase, in a stable order.
 */
export function announcedChecksumTrailers(headers: IncomingHttpHeaders): ChecksumAlgorithm[] {
  const names = (headerText(headers['x-amz-trailer']) ?? '').split(',').map((name) => name.trim().toLowerCase());
  return CHECKSUM_ALGORITHMS.filter((alg) => names.includes(`x-amz-checksum-${alg}`));
}

/**
 * An aws-chunked body's checksum trailers must be the ones `x-amz-trailer` announced: an announced one that
 * is missing would leave the body unchecked, and an unannounced one is not computed while the body streams.
 * @throws StatelockError AWS_CHUNKED_MALFORMED
 */
export function checkAnnouncedTrailers(headers: IncomingHttpHeaders, trailers: Record<string, string>): void {
  const announced = announcedChecksumTrailers(headers);
  for (const alg of announced) {
    const name = `x-amz-checksum-${alg}`;
    if (trailers[name] === undefined) throw new StatelockError('AWS_CHUNKED_MALFORMED', { reason: `x-amz-trailer announces ${name}, but the body ends without that trailer` });
  }
  for (const alg of CHECKSUM_ALGORITHMS) {
    const name = `x-amz-checksum-${alg}`;
    if (trailers[name] !== undefined && !announced.includes(alg)) {
      throw new StatelockError('AWS_CHUNKED_MALFORMED', { reason: `the trailer ${name} was not announced in x-amz-trailer` });
    }
  }
}

/**
 * verifyChecksums for a body that streams. Every header value's format is checked at once
 * (AWS_INVALID_DIGEST before a byte is read); `update` sees the body's pieces (the decoded data of an
 * aws-chunked body) for the CRCs and SHA-1 of the headers and of the trailers `x-amz-trailer` announces;
 * `finish` takes the MD5 and SHA-256 the ingest computed anyway (rather than computing them a second time)
 * and, for an aws-chunked body, its trailers; it checks the trailers against the announcement
 * (checkAnnouncedTrailers), compares everything (AWS_BAD_DIGEST) and returns what verifyChecksums would have.
 */
export function verifyChecksumsStreaming(
  headers: IncomingHttpHeaders,
  options: { trailers?: boolean } = {},
): { update(data: Uint8Array): void; finish(digests: { md5: string; sha256: string }, trailers?: Record<string, string>): Record<string, string> } {
  const given: Array<{ key: ChecksumAlgorithm | 'md5'; header: string; value: string }> = [];
  for (const alg of CHECKSUM_ALGORITHMS) {
    const name = `x-amz-checksum-${alg}`;
    const value = headerText(headers[name]);
    if (value !== undefined) given.push({ key: alg, header: name, value: value.trim() });
  }
  const md5 = headerText(headers['content-md5']);
  if (md5 !== undefined) given.push({ key: 'md5', header: 'Content-MD5', value: md5.trim() });
  for (const g of given) checkDigestFormat(g.header, g.value, DIGEST_BYTES[g.key]);
  const computed = new Set<ChecksumAlgorithm>(given.flatMap((g) => (g.key === 'md5' ? [] : [g.key])));
  if (options.trailers) for (const alg of announcedChecksumTrailers(headers)) computed.add(alg);
  // MD5 and SHA-256 come from the ingest's digests: only the others run here.
  const running = new Map([...computed].filter((alg) => alg !== 'sha256').map((alg) => [alg, runningChecksum(alg)]));
  return {
    update: (data) => running.forEach((r) => r.update(data)),
    finish: (digests, trailers) => {
      const actualOf = (key: ChecksumAlgorithm | 'md5'): string =>
        key === 'md5' ? digests.md5 : key === 'sha256' ? Buffer.from(digests.sha256, 'hex').toString('base64') : running.get(key)!.digest();
      const verified: Record<string, string> = {};
      for (const g of given) {
        const actual = actualOf(g.key);
        if (actual !== g.value) throw new StatelockError('AWS_BAD_DIGEST', { header: g.header, given: g.value, actual });
        verified[g.key] = actual;
      }
      if (options.trailers && trailers) {
        checkAnnouncedTrailers(headers, trailers);
        for (const alg of CHECKSUM_ALGORITHMS) {
          const name = `x-amz-checksum-${alg}`;
          const value = trailers[name];
          if (value === undefined) continue;
          checkDigestFormat(`${name} trailer`, value, DIGEST_BYTES[alg]);
          const actual = actualOf(alg);
          if (actual !== value) throw new StatelockError('AWS_BAD_DIGEST', { header: `${name} trailer`, given: value, actual });
          verified[alg] = actual;
        }
      }
      return verified;
    },
  };
}
