import { StatelockError } from '../server/errors.js';

/** Longest key accepted, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Segments of printable ASCII without `%` (which decode to themselves), each with a character other than `.`
 * (so none is empty, `.` or `..`): such a path is a valid key, itself, once it is at most MAX_KEY_BYTES long.
 */
const PLAIN_KEY = /^\.*[\x20-\x24\x26-\x2d\x30-\x7e][\x20-\x24\x26-\x2e\x30-\x7e]*(?:\/\.*[\x20-\x24\x26-\x2d\x30-\x7e][\x20-\x24\x26-\x2e\x30-\x7e]*)*$/;

/**
 * Turns the raw (still percent-encoded) path tail of a request into a state key.
 * A key is a `/`-separated path of segments: valid UTF-8, no empty, `.` or `..` segment, no control
 * characters, no encoded `/` inside a segment, at most {@link MAX_KEY_BYTES} bytes.
 * @throws StatelockError INVALID_KEY with the reason.
 */
export function parseKeyFromPath(rawTail: string): string {
  // The common case at once (every LOCK and UNLOCK parses its key): a path of plain segments is its own key.
  if (rawTail.length <= MAX_KEY_BYTES && PLAIN_KEY.test(rawTail)) return rawTail;
  return decodeKeyPath(rawTail);
}

/** The general way of {@link parseKeyFromPath}: every segment decoded, then the key validated. */
export function decodeKeyPath(rawTail: string): string {
  if (rawTail === '') throw invalid('the key is empty');
  const segments = rawTail.split('/').map(decodeSegment);
  return validateKey(segments.join('/'), segments);
}

/** Validates an already-decoded key (from a query parameter or the CLI). */
export function validateKey(key: string, segments: string[] = key.split('/')): string {
  if (key === '') throw invalid('the key is empty');
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw invalid(`the key is ${bytes} bytes long; the limit is ${MAX_KEY_BYTES}`);
  for (const segment of segments) {
    if (segment === '') throw invalid('the key has an empty segment (a leading, trailing or doubled "/")');
    if (segment === '.' || segment === '..') throw invalid(`the key has a "${segment}" segment`);
    if (/[\u0000-\u001f\u007f]/.test(segment)) throw invalid('the key contains a control character');
    if (/[\ud800-\udfff]/.test(segment) && !isWellFormed(segment)) throw invalid('the key is not valid UTF-8');
  }
  return key;
}

/** Printable ASCII without `%`: such a segment decodes to itself (the common case, and the cheap one). */
const PLAIN_SEGMENT = /^[\x20-\x24\x26-\x7e]*$/;

function decodeSegment(raw: string): string {
  if (PLAIN_SEGMENT.test(raw)) return raw;
  let bytes: Buffer;
  try {
    bytes = percentDecodeToBytes(raw);
  } catch {
    throw invalid('the key has a malformed percent-escape');
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw invalid('the key is not valid UTF-8');
  }
  if (text.includes('/')) throw invalid('the key has an encoded "/" (%2F) inside a segment');
  return text;
}

function percentDecodeToBytes(raw: string): Buffer {
  const out: number[] = [];
  const src = Buffer.from(raw, 'utf8');
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if (b !== 0x25) {
      out.push(b);
      continue;
    }
    const hex = src.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error('bad escape');
    out.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(out);
}

function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

function invalid(reason: string): StatelockError {
  return new StatelockError('INVALID_KEY', { reason });
}

/**
 * The smallest string greater than every key that starts with `prefix`, for index range scans
 * (`key >= prefix AND key < upper`). UTF-8 byte order equals code point order, so bumping the last
 * code point is exact. Returns null when no upper bound exists (scan to the end).
 */
export function prefixUpperBound(prefix: string): string | null {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return points.join('') + String.fromCodePoint(next);
    }
  }
  return null;
}
