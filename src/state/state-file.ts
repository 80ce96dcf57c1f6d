import { createHash } from 'node:crypto';
import { StatelockError } from '../server/errors.js';
import { parseJsonObject } from '../shared/json-object.js';

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
  const { doc } = parseJsonObject(body, invalidState);
  const { serial, lineage } = doc;
  if (typeof serial !== 'number' || !Number.isSafeInteger(serial) || serial < 0) {
    throw invalidState('"serial" must be a non-negative integer');
  }
  if (typeof lineage !== 'string') throw invalidState('"lineage" must be a string');
  const encrypted = 'encrypted_data' in doc && !('version' in doc);
  return { serial, lineage, encrypted };
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
