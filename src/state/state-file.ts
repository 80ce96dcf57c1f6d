import { createHash } from 'node:crypto';
import { StatelockError } from '../server/errors.js';
import { isUtf8 } from 'node:buffer';
import { JsonSyntaxError, scanTopLevelObject } from './json-scan.js';

/** What the server may read from a state body: its top-level serial and lineage (the only fields OpenTofu's encrypted envelope keeps in the clear). */
export interface StateHeader {
  serial: number;
  lineage: string;
  /** OpenTofu client-side encrypted envelope (`encrypted_data`, no `version`): stored opaquely. */
  encrypted: boolean;
}

/** Digests of the exact bytes, computed once per body. */
export interface Digests {
  md5: string; // base64, as in Content-MD5
  sha256: string; // hex
  size: number;
}

/**
 * Reads serial and lineage from a state body without judging anything else in it: plaintext v4 states
 * and OpenTofu encrypted envelopes both qualify.
 * @throws StatelockError INVALID_STATE when the body is not a JSON object with an integer serial and a string lineage.
 */
export function parseStateHeader(body: Buffer): StateHeader {
  // Checked in place: decoding a large state into a string and an object graph would cost several copies of it.
  if (!isUtf8(body)) throw invalidState('the body is not valid UTF-8');
  let members: Map<string, { start: number; end: number }>;
  try {
    members = scanTopLevelObject(body).members;
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    throw invalidState(body.length > 0 && body[firstNonSpace(body)] !== 0x7b ? 'the body is not a JSON object' : `the body is not valid JSON (${err.message})`);
  }
  const read = (key: string): unknown => {
    const span = members.get(key);
    return span ? JSON.parse(body.subarray(span.start, span.end).toString('utf8')) : undefined;
  };
  const serial = read('serial');
  const lineage = read('lineage');
  if (typeof serial !== 'number' || !Number.isSafeInteger(serial) || serial < 0) {
    throw invalidState('"serial" must be a non-negative integer');
  }
  if (typeof lineage !== 'string') throw invalidState('"lineage" must be a string');
  const encrypted = members.has('encrypted_data') && !members.has('version');
  return { serial, lineage, encrypted };
}

function firstNonSpace(b: Buffer): number {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i;
}

export function digest(body: Buffer): Digests {
  return {
    md5: createHash('md5').update(body).digest('base64'),
    sha256: createHash('sha256').update(body).digest('hex'),
    size: body.length,
  };
}

function invalidState(reason: string): StatelockError {
  return new StatelockError('INVALID_STATE', { reason });
}
