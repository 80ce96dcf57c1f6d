/**
 * The whole-body state header reader that StateHeaderReader replaced (src/state/json-scan.ts and
 * parseStateHeader as of commit 7f6914e), kept verbatim as a reference: the fuzz test checks the streaming
 * reader gives the same refusal messages, and bench/state-scan-speed.ts measures against its speed.
 * It needs the whole body in memory; nothing in src/ uses it.
 */
import { isUtf8 } from 'node:buffer';

export interface TopLevel {
  /** Byte spans of the top-level members' values, by key (the last occurrence wins, as in JSON.parse). */
  members: Map<string, { start: number; end: number }>;
}

/** Nesting deeper than this is refused (a state nests a few dozen levels at most). */
const MAX_DEPTH = 1000;

export class JsonSyntaxError extends Error {}

/** Scans `b` as one JSON object. @throws JsonSyntaxError with the byte offset of the first error. */
export function scanTopLevelObject(b: Uint8Array): TopLevel {
  const s = new Scanner(b);
  s.ws();
  if (b[s.i] !== 0x7b) s.fail('expected "{"');
  const members = new Map<string, { start: number; end: number }>();
  s.object(1, (key, start, end) => members.set(key, { start, end }));
  s.ws();
  if (s.i !== b.length) s.fail('unexpected data after the object');
  return { members };
}

class Scanner {
  i = 0;
  constructor(private readonly b: Uint8Array) {}

  fail(what: string): never {
    throw new JsonSyntaxError(`${what} at byte ${this.i}`);
  }

  ws(): void {
    const b = this.b;
    while (this.i < b.length) {
      const c = b[this.i]!;
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.i++;
    }
  }

  value(depth: number): void {
    if (depth > MAX_DEPTH) this.fail('nesting too deep');
    const c = this.b[this.i];
    if (c === 0x7b) return this.object(depth + 1);
    if (c === 0x5b) return this.array(depth + 1);
    if (c === 0x22) return void this.string();
    if (c === 0x74) return this.literal('true');
    if (c === 0x66) return this.literal('false');
    if (c === 0x6e) return this.literal('null');
    if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) return this.number();
    this.fail('expected a value');
  }

  /** At "{": members until "}". `onMember` receives top-level keys and value spans. */
  object(depth: number, onMember?: (key: string, start: number, end: number) => void): void {
    this.i++;
    this.ws();
    if (this.b[this.i] === 0x7d) return void this.i++;
    for (;;) {
      this.ws();
      if (this.b[this.i] !== 0x22) this.fail('expected a string key');
      const keyStart = this.i;
      this.string();
      const keyEnd = this.i;
      this.ws();
      if (this.b[this.i] !== 0x3a) this.fail('expected ":"');
      this.i++;
      this.ws();
      const start = this.i;
      this.value(depth);
      if (onMember) onMember(JSON.parse(Buffer.from(this.b.buffer, this.b.byteOffset + keyStart, keyEnd - keyStart).toString('utf8')) as string, start, this.i);
      this.ws();
      const c = this.b[this.i];
      if (c === 0x2c) {
        this.i++;
        continue;
      }
      if (c === 0x7d) return void this.i++;
      this.fail('expected "," or "}"');
    }
  }

  array(depth: number): void {
    this.i++;
    this.ws();
    if (this.b[this.i] === 0x5d) return void this.i++;
    for (;;) {
      this.ws();
      this.value(depth);
      this.ws();
      const c = this.b[this.i];
      if (c === 0x2c) {
        this.i++;
        continue;
      }
      if (c === 0x5d) return void this.i++;
      this.fail('expected "," or "]"');
    }
  }

  string(): void {
    const b = this.b;
    this.i++;
    while (this.i < b.length) {
      const c = b[this.i]!;
      if (c === 0x22) return void this.i++;
      if (c < 0x20) this.fail('control character in a string');
      if (c === 0x5c) {
        const e = b[this.i + 1];
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) if (!isHex(b[this.i + k])) this.fail('bad \\u escape');
          this.i += 6;
          continue;
        }
        if (e === undefined || !ESCAPES.has(e)) this.fail('bad escape');
        this.i += 2;
        continue;
      }
      this.i++;
    }
    this.fail('unterminated string');
  }

  number(): void {
    const b = this.b;
    const digit = () => b[this.i] !== undefined && b[this.i]! >= 0x30 && b[this.i]! <= 0x39;
    if (b[this.i] === 0x2d) this.i++;
    if (b[this.i] === 0x30) this.i++;
    else if (digit()) while (digit()) this.i++;
    else this.fail('bad number');
    if (b[this.i] === 0x2e) {
      this.i++;
      if (!digit()) this.fail('bad number');
      while (digit()) this.i++;
    }
    if (b[this.i] === 0x65 || b[this.i] === 0x45) {
      this.i++;
      if (b[this.i] === 0x2b || b[this.i] === 0x2d) this.i++;
      if (!digit()) this.fail('bad number');
      while (digit()) this.i++;
    }
  }

  literal(word: string): void {
    for (let k = 0; k < word.length; k++) if (this.b[this.i + k] !== word.charCodeAt(k)) this.fail(`expected ${word}`);
    this.i += word.length;
  }
}

const ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]);
const isHex = (c: number | undefined) => c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));

/** The old parseStateHeader: its result, or the INVALID_STATE reason it refused with. */
export function legacyParseStateHeader(body: Buffer): { serial: number; lineage: string; encrypted: boolean } | { reason: string } {
  if (!isUtf8(body)) return { reason: 'the body is not valid UTF-8' };
  let members: Map<string, { start: number; end: number }>;
  try {
    members = scanTopLevelObject(body).members;
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    return { reason: body.length > 0 && body[firstNonSpace(body)] !== 0x7b ? 'the body is not a JSON object' : `the body is not valid JSON (${err.message})` };
  }
  const read = (key: string): unknown => {
    const span = members.get(key);
    return span ? JSON.parse(body.subarray(span.start, span.end).toString('utf8')) : undefined;
  };
  const serial = read('serial');
  const lineage = read('lineage');
  if (typeof serial !== 'number' || !Number.isSafeInteger(serial) || serial < 0) return { reason: '"serial" must be a non-negative integer' };
  if (typeof lineage !== 'string') return { reason: '"lineage" must be a string' };
  return { serial, lineage, encrypted: members.has('encrypted_data') && !members.has('version') };
}

function firstNonSpace(b: Buffer): number {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i;
}
