import { isUtf8 } from 'node:buffer';

/**
 * An incremental JSON syntax check over raw bytes that builds nothing: bytes are pushed in pieces of any
 * size (a piece may end inside a UTF-8 sequence, a string escape, a number or a literal) and checked as
 * they arrive, so a 100 MiB state is validated while it streams in, never held whole, never decoded into a
 * string or an object graph. It keeps only the raw bytes of a few named top-level members' values.
 *
 * The document must be one JSON object (RFC 8259: strict numbers, escapes, literals, no trailing commas,
 * nothing after the object) in valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF: what
 * Buffer's isUtf8 accepts). Memory is O(depth + captured bytes), independent of the body's size.
 *
 * Errors are reported at the first offending byte, whichever comes first: a JSON error
 * ({@link JsonSyntaxError}, with the same messages and byte offsets as the whole-body scanner it replaced)
 * or invalid UTF-8 ({@link InvalidUtf8Error}, at the first byte of the bad sequence). A UTF-8 sequence
 * split across pieces is held back (at most 3 bytes) until it is complete, so the result never depends on
 * how the body was split.
 */

/** Nesting deeper than this is refused (a state nests a few dozen levels at most). */
export const MAX_DEPTH = 1000;
/** Default bound on the raw bytes kept of a captured member's value. */
export const DEFAULT_CAPTURE_LIMIT = 4096;

export class JsonSyntaxError extends Error {
  constructor(
    /** What was expected or wrong, without the offset. */
    readonly what: string,
    /** Byte offset of the error in the whole body. */
    readonly offset: number,
  ) {
    super(`${what} at byte ${offset}`);
  }
}

export class InvalidUtf8Error extends Error {
  constructor(
    /** Byte offset of the first byte of the first invalid sequence. */
    readonly offset: number,
  ) {
    super(`invalid UTF-8 at byte ${offset}`);
  }
}

/** What was seen of a named top-level member (the last occurrence, as JSON.parse keeps). */
export interface MemberValue {
  /** The value's raw JSON bytes; undefined when it was not captured (a presence-only name) or was longer than the capture limit. */
  raw: Uint8Array | undefined;
  /** The value was longer than the capture limit (its first byte is still known). */
  tooLarge: boolean;
  /** The value's first byte: `"`, `{`, `[`, `-`, a digit, `t`, `f` or `n`. */
  firstByte: number;
}

/**
 * What a scan found, as plain data: made by {@link JsonStreamScanner.report} where the bytes were scanned
 * (the body worker's thread, for a large body) and read back with {@link ReportedScan}.
 */
export interface ScanReport {
  bytesPushed: number;
  startedObject: boolean;
  /** The named members seen, with their values. */
  members: Array<[string, MemberValue]>;
  /** The first error: invalid UTF-8 or a JSON error (`what`), at `offset`; `atEnd`: found by end() (the body stopped short), not while pushing. */
  error: { utf8: boolean; what: string; offset: number; atEnd: boolean } | null;
}

/** What a finished scan answers, whether it ran here (JsonStreamScanner) or elsewhere (ReportedScan). */
export interface ScannedJson {
  readonly bytesPushed: number;
  readonly startedObject: boolean;
  memberValue(name: string): MemberValue | undefined;
}

/** A scan known from its report: the same answers, and the same error, as the scanner that made it. */
export class ReportedScan implements ScannedJson {
  private readonly members: Map<string, MemberValue>;
  constructor(private readonly report: ScanReport) {
    this.members = new Map(report.members);
  }

  get bytesPushed(): number {
    return this.report.bytesPushed;
  }

  get startedObject(): boolean {
    return this.report.startedObject;
  }

  memberValue(name: string): MemberValue | undefined {
    return this.members.get(name);
  }

  /** The scanner's error (a JsonSyntaxError or an InvalidUtf8Error), or null when the body was one JSON object. */
  get error(): JsonSyntaxError | InvalidUtf8Error | null {
    const e = this.report.error;
    if (!e) return null;
    return e.utf8 ? new InvalidUtf8Error(e.offset) : new JsonSyntaxError(e.what, e.offset);
  }
}

/** Thrown where a scan that runs elsewhere turned out to fail while the body was still arriving. */
export class ScanFailedError extends Error {
  constructor(readonly report: ScanReport) {
    super(`the body is not one JSON object (${report.error?.utf8 ? 'invalid UTF-8' : report.error?.what} at byte ${report.error?.offset})`);
  }
}

export interface ScanOptions {
  /** Top-level members whose values' raw bytes are kept (up to `captureLimit` bytes each). */
  capture?: readonly string[];
  /** Top-level members whose presence only is recorded. */
  presence?: readonly string[];
  captureLimit?: number;
}

// States. The machine is in one of these between any two bytes.
const S_START = 0; // before the top-level "{"
const S_OBJ_FIRST = 1; // after "{": "}" or a key
const S_KEY = 2; // after "," in an object: a key
const S_COLON = 3; // after a key: ":"
const S_VALUE = 4; // after ":", or after "," in an array: a value
const S_ARR_FIRST = 5; // after "[": "]" or a value
const S_AFTER = 6; // after a value: "," or the closer of the innermost container
const S_STRING = 7; // inside a string (a key when `inKey`)
const S_ESC = 8; // after a backslash in a string
const S_HEX = 9; // inside \uXXXX, `hexLeft` digits to go
const S_N_MINUS = 10; // after "-": a digit
const S_N_ZERO = 11; // after a leading "0": ".", "e" or the end
const S_N_INT = 12; // in integer digits
const S_N_DOT = 13; // after ".": a digit
const S_N_FRAC = 14; // in fraction digits
const S_N_E = 15; // after "e": a sign or a digit
const S_N_ESIGN = 16; // after the exponent's sign: a digit
const S_N_EXP = 17; // in exponent digits
const S_LITERAL = 18; // inside true/false/null
const S_DONE = 19; // after the top-level object: whitespace only

/** 0x80808080 as an int32. */
const HIGH_BITS = 0x80808080 | 0;

const OBJ = 1;
const ARR = 2;

/** Bytes a string may contain as they are: everything but `"`, `\` and control characters. */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c < 256; c++) PLAIN[c] = c === 0x22 || c === 0x5c ? 0 : 1;
const ESCAPE = new Uint8Array(256);
for (const c of [0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]) ESCAPE[c] = 1;
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;
const LITERALS = ['true', 'false', 'null'].map((w) => ({ word: w, bytes: Uint8Array.from(w, (ch) => ch.charCodeAt(0)) }));

export class JsonStreamScanner implements ScannedJson {
  private state = S_START;
  private depth = 0;
  /** Container kind (OBJ/ARR) by depth; depth 1 is the top-level object. */
  private readonly stack = new Uint8Array(MAX_DEPTH + 2);
  private inKey = false;
  /** Offset of the backslash of the escape being read (for errors), and \u digits still expected. */
  private escPos = 0;
  private hexLeft = 0;
  private lit = LITERALS[0]!;
  private litPos = 0;
  private litStart = 0;
  /** Offset in the whole body of the next byte to scan. */
  private pos = 0;
  private error: Error | null = null;
  /** The error was found by end(), not while pushing. */
  private errorAtEnd = false;
  private pushed = 0;
  /** The top-level "{" was seen (a field, not derived from `state`: scan() keeps its state in a local until it returns). */
  private started = false;

  /** An incomplete UTF-8 sequence at the end of the last piece, held back until its end arrives. */
  private readonly carry = new Uint8Array(4);
  private carryLen = 0;

  /** Top-level member names: captured ones first, then presence-only ones. */
  private readonly names: string[];
  private readonly captureCount: number;
  private readonly captureLimit: number;
  private readonly seen: (MemberValue | undefined)[];
  private readonly buffers: Uint8Array[];
  private readonly lengths: number[];
  /** A top-level key longer than this (raw, quotes included) cannot decode to any of the names. */
  private readonly keyLimit: number;
  private readonly keyBuf: Uint8Array;
  private keyLen = 0;
  /** 1 while reading a top-level key, 2 while reading a captured top-level value; from `capStart` in the current piece. */
  private capWhat = 0;
  private capStart = 0;
  /** Index in `names` of the top-level member whose value comes next, or -1. */
  private memberIndex = -1;

  constructor(options: ScanOptions = {}) {
    const capture = options.capture ?? [];
    this.names = [...capture, ...(options.presence ?? [])];
    this.captureCount = capture.length;
    this.captureLimit = options.captureLimit ?? DEFAULT_CAPTURE_LIMIT;
    this.seen = this.names.map(() => undefined);
    this.buffers = capture.map(() => new Uint8Array(this.captureLimit));
    this.lengths = capture.map(() => 0);
    // Every UTF-16 unit of a key takes at most 6 raw bytes (\uXXXX).
    this.keyLimit = 6 * Math.max(0, ...this.names.map((n) => n.length)) + 2;
    this.keyBuf = new Uint8Array(this.keyLimit);
  }

  /** Bytes pushed so far. */
  get bytesPushed(): number {
    return this.pushed;
  }

  /** Whether the top-level "{" has been seen. */
  get startedObject(): boolean {
    return this.started;
  }

  /** The named member's value (after {@link end}: its last occurrence), or undefined when absent. */
  memberValue(name: string): MemberValue | undefined {
    const k = this.names.indexOf(name);
    return k < 0 ? undefined : this.seen[k];
  }

  /** What the scan found so far (after end(): all of it), as plain data that can cross threads. */
  report(): ScanReport {
    const members: Array<[string, MemberValue]> = [];
    this.names.forEach((name, k) => {
      const seen = this.seen[k];
      if (seen) members.push([name, { ...seen }]);
    });
    const err = this.error;
    const error =
      err instanceof InvalidUtf8Error
        ? { utf8: true, what: '', offset: err.offset, atEnd: this.errorAtEnd }
        : err instanceof JsonSyntaxError
          ? { utf8: false, what: err.what, offset: err.offset, atEnd: this.errorAtEnd }
          : null;
    return { bytesPushed: this.pushed, startedObject: this.started, members, error };
  }

  /** Scans the next piece. @throws JsonSyntaxError | InvalidUtf8Error at the first error (and again on every later call). */
  push(bytes: Uint8Array): void {
    if (this.error) throw this.error;
    this.pushed += bytes.length;
    try {
      this.pushUtf8(plainView(bytes));
    } catch (err) {
      this.error = err as Error;
      throw err;
    }
  }

  /** The body is complete. @throws JsonSyntaxError | InvalidUtf8Error unless it was exactly one JSON object. */
  end(): void {
    if (this.error) throw this.error;
    try {
      if (this.carryLen > 0) throw new InvalidUtf8Error(this.pos);
      this.endJson();
    } catch (err) {
      this.error = err as Error;
      this.errorAtEnd = true;
      throw err;
    }
  }

  /* ---------------------------------------------------------------- */
  /* UTF-8: checked natively (isUtf8) on each piece's complete sequences */
  /* ---------------------------------------------------------------- */

  private pushUtf8(b: Uint8Array): void {
    const n = b.length;
    let from = 0;
    if (this.carryLen > 0) {
      // Complete the sequence held back from the last piece, byte by byte.
      const carry = this.carry;
      while (from < n) {
        carry[this.carryLen++] = b[from++]!;
        const r = sequenceAt(carry, 0, this.carryLen);
        if (r < 0) throw new InvalidUtf8Error(this.pos);
        if (r > 0) break;
      }
      if (sequenceAt(carry, 0, this.carryLen) === 0) return; // still incomplete: the piece was that small
      const len = this.carryLen;
      this.carryLen = 0;
      this.scan(carry, 0, len);
    }
    // Hold back an incomplete sequence at the end: its lead byte is among the last three.
    let tail = n;
    for (let j = n - 1; j >= from && j >= n - 3; j--) {
      const c = b[j]!;
      if (c < 0x80) break;
      if (c >= 0xc0) {
        if (j + (c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2) > n) tail = j;
        break;
      }
    }
    if (isUtf8(b.subarray(from, tail))) {
      this.scan(b, from, tail);
    } else {
      // Rare: find where, and report a JSON error before that point first.
      const bad = firstInvalidUtf8(b, from, tail);
      this.scan(b, from, bad);
      throw new InvalidUtf8Error(this.pos);
    }
    if (tail < n) {
      this.carry.set(b.subarray(tail, n));
      this.carryLen = n - tail;
      if (sequenceAt(this.carry, 0, this.carryLen) < 0) throw new InvalidUtf8Error(this.pos);
    }
  }

  /* ---------------------------------------------------------------- */
  /* JSON                                                              */
  /* ---------------------------------------------------------------- */

  private fail(what: string, offset: number): never {
    throw new JsonSyntaxError(what, offset);
  }

  /**
   * Scans b[from, to). Hot loop: state lives in locals, runs of plain string bytes, whitespace and digits
   * are skipped by tight inner loops, and whole escapes and literals are taken at once when the piece holds them.
   */
  private scan(b: Uint8Array, from: number, to: number): void {
    const base = this.pos - from; // offset in the body = base + index in b
    const stack = this.stack;
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let i = from;
    let state = this.state;
    let depth = this.depth;
    let inKey = this.inKey;
    if (this.capWhat !== 0) this.capStart = from;

    outer: while (i < to) {
      // Strings first, outside the switch: they hold most of a state's bytes, and most tokens are strings.
      if (state === S_STRING) {
        for (;;) {
          // Four bytes at a time while none of them is `"`, `\` or a control character (SWAR: a byte's
          // subtraction borrows into its top bit; `& ~v` leaves bytes >= 0x80 out, which are plain here).
          while (i + 4 <= to) {
            const v = dv.getInt32(i, true);
            if (((((v - 0x20202020) | 0) | (((v ^ 0x22222222) - 0x01010101) | 0) | (((v ^ 0x5c5c5c5c) - 0x01010101) | 0)) & ~v & HIGH_BITS) !== 0) break;
            i += 4;
          }
          while (i < to && PLAIN[b[i]!] === 1) i++;
          if (i === to) break outer;
          const c = b[i]!;
          if (c === 0x22) {
            i++;
            if (!inKey) {
              state = S_AFTER;
              if (depth === 1) this.endValue(b, i);
              continue outer;
            }
            if (depth === 1) this.endKey(b, i);
            // `"key": value`: take the colon here rather than through S_COLON.
            i = skipBlanks(b, dv, i, to);
            if (i === to) {
              state = S_COLON;
              break outer;
            }
            if (b[i] !== 0x3a) this.fail('expected ":"', base + i);
            i++;
            state = S_VALUE;
            continue outer;
          }
          if (c === 0x5c) {
            if (i + 1 < to) {
              const e = b[i + 1]!;
              if (ESCAPE[e] === 1) {
                i += 2;
                continue;
              }
              if (e === 0x75 && i + 5 < to) {
                if (HEX[b[i + 2]!]! & HEX[b[i + 3]!]! & HEX[b[i + 4]!]! & HEX[b[i + 5]!]!) {
                  i += 6;
                  continue;
                }
                this.fail('bad \\u escape', base + i);
              }
              if (e !== 0x75) this.fail('bad escape', base + i);
            }
            // The escape runs past this piece: finish it byte by byte.
            this.escPos = base + i;
            i++;
            state = S_ESC;
            continue outer;
          }
          this.fail('control character in a string', base + i);
        }
      }
      switch (state) {
        case S_ESC: {
          const e = b[i]!;
          if (e === 0x75) {
            this.hexLeft = 4;
            state = S_HEX;
          } else if (ESCAPE[e] === 1) state = S_STRING;
          else this.fail('bad escape', this.escPos);
          i++;
          continue;
        }
        case S_HEX: {
          while (i < to && this.hexLeft > 0) {
            if (HEX[b[i]!] !== 1) this.fail('bad \\u escape', this.escPos);
            i++;
            this.hexLeft--;
          }
          if (this.hexLeft === 0) state = S_STRING;
          continue;
        }
        case S_VALUE:
        case S_ARR_FIRST: {
          i = skipBlanks(b, dv, i, to);
          if (i === to) break outer;
          const c = b[i]!;
          if (c === 0x5d && state === S_ARR_FIRST) {
            i++;
            depth--;
            state = S_AFTER;
            if (depth === 1) this.endValue(b, i);
            continue;
          }
          if (depth > MAX_DEPTH) this.fail('nesting too deep', base + i);
          if (depth === 1) this.beginValue(i, c);
          if (c === 0x22) {
            inKey = false;
            state = S_STRING;
            i++;
          } else if (c === 0x7b) {
            stack[++depth] = OBJ;
            state = S_OBJ_FIRST;
            i++;
          } else if (c === 0x5b) {
            stack[++depth] = ARR;
            state = S_ARR_FIRST;
            i++;
          } else if (c >= 0x31 && c <= 0x39) {
            i++;
            state = S_N_INT;
          } else if (c === 0x30) {
            i++;
            state = S_N_ZERO;
          } else if (c === 0x2d) {
            i++;
            state = S_N_MINUS;
          } else {
            const lit = c === 0x74 ? LITERALS[0]! : c === 0x66 ? LITERALS[1]! : c === 0x6e ? LITERALS[2]! : null;
            if (lit === null) this.fail('expected a value', base + i);
            const w = lit.bytes;
            if (i + w.length <= to) {
              for (let k = 1; k < w.length; k++) if (b[i + k] !== w[k]) this.fail(`expected ${lit.word}`, base + i);
              i += w.length;
              state = S_AFTER;
              if (depth === 1) this.endValue(b, i);
            } else {
              this.lit = lit;
              this.litStart = base + i;
              this.litPos = 1;
              i++;
              state = S_LITERAL;
            }
          }
          continue;
        }
        case S_AFTER: {
          i = skipBlanks(b, dv, i, to);
          if (i === to) break outer;
          const c = b[i]!;
          const kind = stack[depth];
          if (c === 0x2c) {
            i++;
            state = kind === OBJ ? S_KEY : S_VALUE;
            if (kind === OBJ && depth > 1) {
              // `, "key"`: start the key here rather than through S_KEY (top-level keys go through S_KEY, which captures them).
              i = skipBlanks(b, dv, i, to);
              if (i < to && b[i] === 0x22) {
                i++;
                inKey = true;
                state = S_STRING;
              }
            }
          } else if (kind === OBJ ? c === 0x7d : c === 0x5d) {
            i++;
            depth--;
            if (depth === 0) state = S_DONE;
            else {
              state = S_AFTER;
              if (depth === 1) this.endValue(b, i);
            }
          } else this.fail(kind === OBJ ? 'expected "," or "}"' : 'expected "," or "]"', base + i);
          continue;
        }
        case S_KEY:
        case S_OBJ_FIRST: {
          i = skipBlanks(b, dv, i, to);
          if (i === to) break outer;
          const c = b[i]!;
          if (c === 0x22) {
            if (depth === 1) this.beginKey(i);
            inKey = true;
            state = S_STRING;
            i++;
          } else if (c === 0x7d && state === S_OBJ_FIRST) {
            i++;
            depth--;
            if (depth === 0) state = S_DONE;
            else {
              state = S_AFTER;
              if (depth === 1) this.endValue(b, i);
            }
          } else this.fail('expected a string key', base + i);
          continue;
        }
        case S_COLON: {
          i = skipBlanks(b, dv, i, to);
          if (i === to) break outer;
          const c = b[i]!;
          if (c !== 0x3a) this.fail('expected ":"', base + i);
          i++;
          state = S_VALUE;
          continue;
        }
        case S_N_INT:
        case S_N_FRAC:
        case S_N_EXP:
        case S_N_ZERO: {
          let c = b[i]!;
          if (state !== S_N_ZERO) {
            while (c >= 0x30 && c <= 0x39) {
              if (++i === to) break outer;
              c = b[i]!;
            }
          }
          if (c === 0x2e && state !== S_N_FRAC && state !== S_N_EXP) {
            i++;
            state = S_N_DOT;
          } else if ((c === 0x65 || c === 0x45) && state !== S_N_EXP) {
            i++;
            state = S_N_E;
          } else {
            // The number ended; this byte belongs to what follows it.
            state = S_AFTER;
            if (depth === 1) this.endValue(b, i);
          }
          continue;
        }
        case S_N_MINUS: {
          const c = b[i]!;
          if (c === 0x30) state = S_N_ZERO;
          else if (c >= 0x31 && c <= 0x39) state = S_N_INT;
          else this.fail('bad number', base + i);
          i++;
          continue;
        }
        case S_N_DOT:
        case S_N_ESIGN: {
          const c = b[i]!;
          if (c < 0x30 || c > 0x39) this.fail('bad number', base + i);
          i++;
          state = state === S_N_DOT ? S_N_FRAC : S_N_EXP;
          continue;
        }
        case S_N_E: {
          const c = b[i]!;
          if (c === 0x2b || c === 0x2d) state = S_N_ESIGN;
          else if (c >= 0x30 && c <= 0x39) state = S_N_EXP;
          else this.fail('bad number', base + i);
          i++;
          continue;
        }
        case S_LITERAL: {
          const w = this.lit.bytes;
          while (i < to && this.litPos < w.length) {
            if (b[i] !== w[this.litPos]) this.fail(`expected ${this.lit.word}`, this.litStart);
            i++;
            this.litPos++;
          }
          if (this.litPos === w.length) {
            state = S_AFTER;
            if (depth === 1) this.endValue(b, i);
          }
          continue;
        }
        case S_START:
        case S_DONE: {
          i = skipBlanks(b, dv, i, to);
          if (i === to) break outer;
          const c = b[i]!;
          if (state === S_DONE) this.fail('unexpected data after the object', base + i);
          if (c !== 0x7b) this.fail('expected "{"', base + i);
          i++;
          this.started = true;
          depth = 1;
          stack[1] = OBJ;
          state = S_OBJ_FIRST;
          continue;
        }
      }
    }

    // A key or captured value continues into the next piece: keep what this one held of it.
    if (this.capWhat !== 0) this.keep(b, this.capStart, to);
    this.state = state;
    this.depth = depth;
    this.inKey = inKey;
    this.pos = base + to;
  }

  /** What the old whole-body scanner reported when the body ended here. */
  private endJson(): void {
    const at = this.pos;
    switch (this.state) {
      case S_DONE:
        return;
      case S_START:
        this.fail('expected "{"', at);
      case S_OBJ_FIRST:
      case S_KEY:
        this.fail('expected a string key', at);
      case S_COLON:
        this.fail('expected ":"', at);
      case S_VALUE:
      case S_ARR_FIRST:
        this.fail(this.depth > MAX_DEPTH ? 'nesting too deep' : 'expected a value', at);
      case S_AFTER:
      case S_N_ZERO:
      case S_N_INT:
      case S_N_FRAC:
      case S_N_EXP:
        this.fail(this.stack[this.depth] === OBJ ? 'expected "," or "}"' : 'expected "," or "]"', at);
      case S_N_MINUS:
      case S_N_DOT:
      case S_N_E:
      case S_N_ESIGN:
        this.fail('bad number', at);
      case S_STRING:
        this.fail('unterminated string', at);
      case S_ESC:
        this.fail('bad escape', this.escPos);
      case S_HEX:
        this.fail('bad \\u escape', this.escPos);
      case S_LITERAL:
        this.fail(`expected ${this.lit.word}`, this.litStart);
    }
  }

  /* ---------------------------------------------------------------- */
  /* Top-level members (depth 1 only: off the hot path)                */
  /* ---------------------------------------------------------------- */

  private beginKey(i: number): void {
    this.capWhat = 1;
    this.capStart = i;
    this.keyLen = 0;
  }

  /** A top-level key ended at i (after its closing quote): which member's value comes next? */
  private endKey(b: Uint8Array, i: number): void {
    this.keep(b, this.capStart, i);
    this.capWhat = 0;
    this.memberIndex = -1;
    if (this.keyLen > this.keyLimit) return;
    const key = JSON.parse(Buffer.from(this.keyBuf.buffer, this.keyBuf.byteOffset, this.keyLen).toString('utf8')) as string;
    this.memberIndex = this.names.indexOf(key);
  }

  private beginValue(i: number, firstByte: number): void {
    const k = this.memberIndex;
    if (k < 0) return;
    this.seen[k] = { raw: undefined, tooLarge: false, firstByte };
    if (k < this.captureCount) {
      this.capWhat = 2;
      this.capStart = i;
      this.lengths[k] = 0;
    }
  }

  /** A top-level value ended at i. */
  private endValue(b: Uint8Array, i: number): void {
    const k = this.memberIndex;
    if (this.capWhat === 2) {
      this.keep(b, this.capStart, i);
      this.capWhat = 0;
      const seen = this.seen[k]!;
      const len = this.lengths[k]!;
      if (len > this.captureLimit) seen.tooLarge = true;
      else seen.raw = this.buffers[k]!.slice(0, len);
    }
    this.memberIndex = -1;
  }

  /** Appends b[start, end) to the key or value being captured; past its bound only the length grows. */
  private keep(b: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (this.capWhat === 1) {
      if (this.keyLen + n <= this.keyLimit) this.keyBuf.set(b.subarray(start, end), this.keyLen);
      this.keyLen += n;
    } else {
      const k = this.memberIndex;
      const len = this.lengths[k]!;
      if (len + n <= this.captureLimit) this.buffers[k]!.set(b.subarray(start, end), len);
      this.lengths[k] = len + n;
    }
  }
}

/** Skips blanks from b[i]; after a newline, indentation four spaces at a time. Returns where they end (at most `to`). */
function skipBlanks(b: Uint8Array, dv: DataView, i: number, to: number): number {
  while (i < to) {
    const c = b[i]!;
    if (c === 0x20 || c === 0x0d || c === 0x09) i++;
    else if (c === 0x0a) {
      i++;
      while (i + 4 <= to && dv.getInt32(i, true) === 0x20202020) i += 4;
    } else break;
  }
  return i;
}

/**
 * The UTF-8 sequence starting at b[i], of which b[i, end) is available: its length when complete and
 * valid, 0 when valid so far but incomplete, -1 when invalid. Refuses what isUtf8 refuses: overlongs
 * (C0, C1, E0 80–9F, F0 80–8F), surrogates (ED A0–BF), above U+10FFFF (F4 90+, F5–FF), stray continuations.
 */
function sequenceAt(b: Uint8Array, i: number, end: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  let len: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c === 0xe0) lo = 0xa0;
    else if (c === 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c === 0xf0) lo = 0x90;
    else if (c === 0xf4) hi = 0x8f;
  } else return -1;
  if (i + 1 < end) {
    const c1 = b[i + 1]!;
    if (c1 < lo || c1 > hi) return -1;
  }
  for (let k = 2; k < len && i + k < end; k++) if ((b[i + k]! & 0xc0) !== 0x80) return -1;
  return i + len <= end ? len : 0;
}

/** Offset of the first invalid (or truncated) sequence in b[from, to), or `to` when there is none. */
function firstInvalidUtf8(b: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to) {
    if (b[i]! < 0x80) {
      i++;
      continue;
    }
    const r = sequenceAt(b, i, to);
    if (r <= 0) return i;
    i += r;
  }
  return to;
}

/**
 * The same bytes as a plain Uint8Array. Request bodies arrive as Buffers made by Node's C++ side (the http
 * parser), whose hidden class differs from Buffers made in JS (slices, Buffer.from) and from Uint8Array:
 * fed a mix, the hot loops were optimized for one class and thrown away at the next (three deoptimizations
 * of scan() per 10 MiB write, each followed by a ~40 ms recompile, measured with --trace-deopt). One view
 * per piece keeps them on one class.
 */
export function plainView(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
