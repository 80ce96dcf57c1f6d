import { createHash } from 'node:crypto';
import { StatelockError } from '../server/errors.js';
import { InvalidUtf8Error, JsonStreamScanner, JsonSyntaxError, ReportedScan, type ScanOptions, type ScanReport, type ScannedJson } from './json-stream-scan.js';

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

/** Bound on the raw JSON bytes kept of `serial` and `lineage` (a lineage is a UUID; a serial a few digits). */
export const HEADER_VALUE_LIMIT = 4096;

/** What the header reader scans a body for: the header's values, and the members that tell an encrypted envelope. */
export const STATE_SCAN: ScanOptions = { capture: ['serial', 'lineage'], presence: ['version', 'encrypted_data'], captureLimit: HEADER_VALUE_LIMIT };

/**
 * Reads serial/lineage/encrypted from a state body fed in pieces; the same checks and the same INVALID_STATE
 * reasons as parseStateHeader. The body is checked as it arrives (valid UTF-8, exactly one JSON object) and
 * never held: memory stays a few KiB whatever the state's size, so a 100 MiB write costs no 100 MiB copy.
 * Only a `serial` or `lineage` whose JSON is over {@link HEADER_VALUE_LIMIT} bytes is refused for its size.
 *
 * A large write's body is scanned on the body worker's thread instead (STATE_SCAN, body-checks.ts); its
 * report gets the same answer here: {@link StateHeaderReader.fromReport}.
 */
export class StateHeaderReader {
  private readonly scanner = new JsonStreamScanner(STATE_SCAN);

  /** Feeds the next bytes (any split: inside a UTF-8 sequence, a string escape, a number, a literal). @throws StatelockError INVALID_STATE at the first error. */
  push(bytes: Uint8Array): void {
    try {
      this.scanner.push(bytes);
    } catch (err) {
      throw refusal(err, this.scanner);
    }
  }

  /** The body is complete. @throws StatelockError INVALID_STATE when it is not one JSON object with an integer serial and a string lineage. */
  end(): StateHeader {
    try {
      this.scanner.end();
    } catch (err) {
      throw refusal(err, this.scanner);
    }
    return headerOf(this.scanner);
  }

  /**
   * The header of a body scanned elsewhere with STATE_SCAN: what push() and end() over the same bytes give.
   * @throws StatelockError INVALID_STATE, with the same reason.
   */
  static fromReport(report: ScanReport): StateHeader {
    const scanned = new ReportedScan(report);
    const err = scanned.error;
    if (err) throw refusal(err, scanned);
    return headerOf(scanned);
  }

  /** The INVALID_STATE refusal of a scan that failed (a ScanFailedError's report). */
  static refusalOf(report: ScanReport): unknown {
    const scanned = new ReportedScan(report);
    return refusal(scanned.error ?? new JsonSyntaxError('a failed scan without its error', report.bytesPushed), scanned);
  }
}

/** serial, lineage and encrypted from a body that was one JSON object. */
function headerOf(scanned: ScannedJson): StateHeader {
  const serialValue = scanned.memberValue('serial');
  const lineageValue = scanned.memberValue('lineage');
  // A value over the bound is a serial of more than 4096 characters (never a safe integer in practice) or a
  // lineage no client makes: refused rather than kept, so memory stays bounded.
  const serial = serialValue?.raw ? (JSON.parse(utf8(serialValue.raw)) as unknown) : undefined;
  if (typeof serial !== 'number' || !Number.isSafeInteger(serial) || serial < 0) {
    throw invalidState('"serial" must be a non-negative integer');
  }
  if (lineageValue?.tooLarge && lineageValue.firstByte === 0x22) throw invalidState(`"lineage" must be at most ${HEADER_VALUE_LIMIT} bytes of JSON`);
  const lineage = lineageValue?.raw ? (JSON.parse(utf8(lineageValue.raw)) as unknown) : undefined;
  if (typeof lineage !== 'string') throw invalidState('"lineage" must be a string');
  const encrypted = scanned.memberValue('encrypted_data') !== undefined && scanned.memberValue('version') === undefined;
  return { serial, lineage, encrypted };
}

/** A scanner's error as the INVALID_STATE refusal; anything else passes through. */
function refusal(err: unknown, scanned: ScannedJson): unknown {
  if (err instanceof InvalidUtf8Error) return invalidState('the body is not valid UTF-8');
  if (!(err instanceof JsonSyntaxError)) return err;
  // As before: a body whose first non-blank byte is not "{" (or that is blank but not empty) is "not a JSON object".
  const notAnObject = scanned.bytesPushed > 0 && !scanned.startedObject;
  return invalidState(notAnObject ? 'the body is not a JSON object' : `the body is not valid JSON (${err.message})`);
}

/**
 * Reads serial and lineage from a state body without judging anything else in it: plaintext v4 states
 * and OpenTofu encrypted envelopes both qualify.
 * @throws StatelockError INVALID_STATE when the body is not a JSON object with an integer serial and a string lineage.
 */
export function parseStateHeader(body: Buffer): StateHeader {
  const reader = new StateHeaderReader();
  reader.push(body);
  return reader.end();
}

const utf8 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');

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
