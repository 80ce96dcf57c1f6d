import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { StatelockError } from '../../src/server/errors.js';
import { MAX_DEPTH, ScanFailedError } from '../../src/state/json-stream-scan.js';
import { STATE_SCAN, StateHeaderReader, parseStateHeader, type StateHeader } from '../../src/state/state-file.js';
import { BodyChecks, DIGEST_BLOCK_BYTES } from '../../src/store/content/body-checks.js';
import { BodyWorker } from '../../src/store/content/body-worker.js';
import { rng } from '../support/rng.js';
import { legacyParseStateHeader } from './legacy-state-header.js';

/**
 * A differential fuzz of the streaming state header reader: random valid JSON objects (escapes, surrogate
 * pairs, multi-byte UTF-8, every number form, deep nesting, duplicate and escaped keys) and byte-level
 * mutations of them (flips, inserts, deletions, truncations, invalid UTF-8 sequences) are fed whole, in
 * random pieces and one byte at a time. Every split must give the same outcome; validity must agree with
 * isUtf8 + JSON.parse, serial/lineage/encrypted with JSON.parse; and the refusal reason must be exactly the
 * old whole-body reader's (or, when the body is also invalid UTF-8, an earlier JSON error).
 *
 * Replay: STATELOCK_FUZZ_SEED=<seed> [STATELOCK_FUZZ_COUNT=<n>].
 */

const SEED = process.env['STATELOCK_FUZZ_SEED'] ? Number(process.env['STATELOCK_FUZZ_SEED']) >>> 0 : randomBytes(4).readUInt32LE(0);
const COUNT = process.env['STATELOCK_FUZZ_COUNT'] ? Number(process.env['STATELOCK_FUZZ_COUNT']) : 4000;

type Outcome = StateHeader | { reason: string };

function outcome(pieces: Iterable<Uint8Array>): Outcome {
  const reader = new StateHeaderReader();
  try {
    for (const p of pieces) reader.push(p);
    return reader.end();
  } catch (err) {
    if (err instanceof StatelockError && err.code === 'INVALID_STATE') return { reason: String(err.params['reason']) };
    throw err;
  }
}

/** What a write's checks make of the same bytes when they scan them on the body worker's thread (a body of a block or more). */
async function outcomeOnWorker(pieces: Iterable<Uint8Array>, worker: BodyWorker): Promise<Outcome> {
  const checks = new BodyChecks(STATE_SCAN, worker);
  const refused = (err: unknown): Outcome => {
    if (err instanceof StatelockError && err.code === 'INVALID_STATE') return { reason: String(err.params['reason']) };
    throw err;
  };
  try {
    for (const p of pieces) await checks.update(p);
    const { scan } = await checks.values();
    return StateHeaderReader.fromReport(scan!);
  } catch (err) {
    checks.abandon();
    return refused(err instanceof ScanFailedError ? StateHeaderReader.refusalOf(err.report) : err);
  }
}

function* randomPieces(body: Buffer, r: () => number, maxPiece: number): Generator<Uint8Array> {
  let i = 0;
  while (i < body.length) {
    const n = 1 + Math.floor(r() * maxPiece);
    // Sometimes hand over an empty piece: it must change nothing.
    if (r() < 0.05) yield body.subarray(i, i);
    yield body.subarray(i, i + n);
    i += n;
  }
}

function* bytewise(body: Buffer): Generator<Uint8Array> {
  for (let i = 0; i < body.length; i++) yield body.subarray(i, i + 1);
}

/** What isUtf8 + JSON.parse say: a header, a header-level refusal, or 'syntax' (not one JSON object in UTF-8). */
function oracle(body: Buffer): StateHeader | { reason: string } | 'syntax' {
  if (!isUtf8(body)) return 'syntax';
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return 'syntax';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || tooDeep(doc, 1)) return 'syntax';
  const o = doc as Record<string, unknown>;
  const has = (k: string) => Object.prototype.hasOwnProperty.call(o, k);
  if (typeof o['serial'] !== 'number' || !Number.isSafeInteger(o['serial']) || o['serial'] < 0) return { reason: '"serial" must be a non-negative integer' };
  if (typeof o['lineage'] !== 'string') return { reason: '"lineage" must be a string' };
  return { serial: o['serial'], lineage: o['lineage'], encrypted: has('encrypted_data') && !has('version') };
}

/** Whether a value sits inside a container nested deeper than MAX_DEPTH (the top-level object is depth 1). */
function tooDeep(v: unknown, depth: number): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const children = Array.isArray(v) ? v : Object.values(v);
  if (children.length > 0 && depth > MAX_DEPTH) return true;
  return children.some((c) => tooDeep(c, depth + 1));
}

const SYNTAX_REASON = /^the body is (not valid UTF-8|not a JSON object|not valid JSON \(.* at byte (\d+)\))$/;

/* ------------------------------------------------------------------ */
/* Generators                                                          */
/* ------------------------------------------------------------------ */

class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  ws(): string {
    return this.chance(0.5) ? '' : this.pick([' ', '\n', '\n  ', '\t', '\r\n', '    ', ' \n\t ']);
  }

  string(): string {
    let s = '"';
    const n = this.int(8);
    for (let k = 0; k < n; k++) {
      s += this.pick([
        'abc',
        'x',
        ' ',
        'é',
        '€',
        '😀',
        '𐍈',
        '\u{10ffff}',
        '\uffff',
        '\\"',
        '\\\\',
        '\\/',
        '\\b\\f\\n\\r\\t',
        '\\u00e9',
        '\\uD83D\\uDE00',
        '\\ud800',
        '\\u0000',
        '\\uABCD',
        '{[:,]}',
        'serial',
      ]);
    }
    return s + '"';
  }

  number(): string {
    return this.chance(0.5)
      ? String(this.int(100000))
      : this.pick(['0', '-0', '-0.5e+10', '1E-3', '3.14', '1e309', '-1', '12345678901234567890123', '0.0', '2e0', '9007199254740993', '1.5']);
  }

  key(): string {
    return this.chance(0.6)
      ? this.pick(['"serial"', '"lineage"', '"version"', '"encrypted_data"', '"ser\\u0069al"', '"\\u006cineage"', '"resources"', '"é"', '"serial "', '""'])
      : this.string();
  }

  /** Near misses, for a few values: malformed numbers and literals, in any position (followed by ",", "}", "]" or blanks). */
  nearMiss(): string {
    return this.pick(['1.', '-', '1e', '1e+', '.5', '01', '-01', '1.e5', '-.5', '+1', '1e:', '2.:', '3e+:', '0x1', 'Infinity', 'NaN', '-a', '1.5e', '1_0', '1e.5', '1.5.3', '0.1.', '1e5.0', '1e5e5', '1ee5', '--1', '1e+-5', '-0-', 'tru', 'nul', 'falsey', 'True', 'nulL', "'x'", '"\\x"', '"\\u12"', '"\\u12G4"', '"a\\tb\t"']);
  }

  value(depth: number): string {
    if (this.chance(0.01)) return this.nearMiss();
    const k = this.int(depth > 4 ? 6 : 9);
    if (k < 2) return this.string();
    if (k < 4) return this.number();
    if (k < 6) return this.pick(['true', 'false', 'null']);
    if (k < 8) return this.object(depth + 1);
    return this.array(depth + 1);
  }

  object(depth: number): string {
    const n = this.int(5);
    const members = Array.from({ length: n }, () => `${this.ws()}${this.key()}${this.ws()}:${this.ws()}${this.value(depth)}${this.ws()}`);
    return `{${members.join(',') || this.ws()}}`;
  }

  array(depth: number): string {
    const n = this.int(5);
    const items = Array.from({ length: n }, () => `${this.ws()}${this.value(depth)}${this.ws()}`);
    return `[${items.join(',') || this.ws()}]`;
  }

  /** A top-level object, usually with a serial and a lineage among other members. */
  document(): string {
    const members: string[] = [];
    const n = this.int(6);
    for (let k = 0; k < n; k++) members.push(`${this.ws()}${this.key()}${this.ws()}:${this.ws()}${this.value(1)}${this.ws()}`);
    if (this.chance(0.8)) members.splice(this.int(members.length + 1), 0, `"serial":${this.ws()}${this.chance(0.8) ? String(this.int(1000)) : this.value(1)}`);
    if (this.chance(0.8)) members.splice(this.int(members.length + 1), 0, `"lineage":${this.ws()}${this.chance(0.8) ? this.string() : this.value(1)}`);
    if (this.chance(0.1)) {
      // Around the nesting bound: arrays 999 to 1002 deep (the top-level object is depth 1), empty or not.
      const n = MAX_DEPTH - 2 + this.int(4);
      members.push(`"deep":${'['.repeat(n)}${this.chance(0.5) ? '1' : ''}${']'.repeat(n)}`);
    }
    return `${this.ws()}{${members.join(',')}}${this.ws()}`;
  }

  mutate(b: Buffer): Buffer {
    const at = this.int(b.length + 1);
    switch (this.int(7)) {
      case 0: {
        const c = Buffer.from(b);
        if (c.length > 0) c[Math.min(at, c.length - 1)] = this.int(256);
        return c;
      }
      case 1:
        return Buffer.concat([b.subarray(0, at), Buffer.from([this.pick([0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x22, 0x5c, 0x20, 0x30, 0x65, 0x2d, 0x2e, 0x75, 0x01, 0x7f, 0xff, 0xc3, 0x80])]), b.subarray(at)]);
      case 2:
        return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + this.int(3)))]);
      case 3:
        return b.subarray(0, at);
      case 4: {
        // Invalid UTF-8: overlong, surrogate, above U+10FFFF, stray continuation, truncated sequences.
        const bad = this.pick([[0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf0, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0x80], [0xbf], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xfe], [0xff]]);
        return Buffer.concat([b.subarray(0, at), Buffer.from(bad), b.subarray(at)]);
      }
      case 5:
        return Buffer.concat([b.subarray(0, at), b.subarray(this.int(b.length + 1))]);
      default:
        // Valid multi-byte UTF-8 where it may or may not belong.
        return Buffer.concat([b.subarray(0, at), Buffer.from(this.pick(['é', '😀', '€', '\u{10ffff}'])), b.subarray(at)]);
    }
  }
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

function check(body: Buffer, r: () => number, label: string): void {
  const whole = outcome([body]);
  const ctx = () => `${label} (seed ${SEED}): ${JSON.stringify(body.toString('latin1'))}`;
  // The same outcome whatever the split.
  assert.deepEqual(outcome(randomPieces(body, r, 1 + Math.floor(r() * 16))), whole, ctx());
  assert.deepEqual(outcome(randomPieces(body, r, 1 + Math.floor(r() * body.length))), whole, ctx());
  if (body.length < 4000) assert.deepEqual(outcome(bytewise(body)), whole, ctx());
  // Validity and the header agree with isUtf8 + JSON.parse.
  const expected = oracle(body);
  if (expected === 'syntax') {
    assert.ok('reason' in whole && SYNTAX_REASON.test(whole.reason), `${ctx()}: expected a syntax refusal, got ${JSON.stringify(whole)}`);
  } else {
    assert.deepEqual(whole, expected, ctx());
  }
  // The same reason as the old whole-body reader, except that a JSON error before invalid UTF-8 now comes first.
  const legacy = legacyParseStateHeader(body);
  if ('reason' in legacy && legacy.reason === 'the body is not valid UTF-8' && 'reason' in whole && whole.reason !== legacy.reason) {
    const at = /at byte (\d+)\)$/.exec(whole.reason);
    const firstError = at ? Number(at[1]) : 0; // "not a JSON object": at the first non-blank byte
    assert.ok(isUtf8(body.subarray(0, firstError)), `${ctx()}: ${whole.reason} comes after the invalid UTF-8`);
  } else {
    assert.deepEqual(whole, legacy, ctx());
  }
}

describe('StateHeaderReader (differential fuzz)', () => {
  test(`random and mutated documents, whole and in random pieces, agree with JSON.parse and the old reader (seed ${SEED}, ${COUNT} documents)`, () => {
    const r = rng(SEED);
    const g = new Gen(r);
    let valid = 0;
    let refused = 0;
    for (let n = 0; n < COUNT; n++) {
      let body: Buffer = Buffer.from(g.document());
      const mutations = g.chance(0.4) ? 0 : 1 + g.int(3);
      for (let m = 0; m < mutations; m++) body = g.mutate(body);
      check(body, r, `document ${n}`);
      if ('reason' in outcome([body])) refused++;
      else valid++;
    }
    // The generator must exercise both sides.
    assert.ok(valid > COUNT / 10 && refused > COUNT / 10, `valid ${valid}, refused ${refused}`);
  });

  test('splits at every position of a tricky document give the same result as one push', () => {
    const docs = [
      '{ "version" : 4, "serial": 12, "lineage":"li\\u006eeage-\\uD83D\\uDE00-é€😀", "x": [-0.5e+10, 0, -0, 1E-3, 2.5, true, false, null, {}, [], "\\"\\\\\\/\\b\\f\\n\\r\\t"], "ser\\u0069al": 13 }\n',
      '{"serial":1,"lineage":"a\\u00e9\\ud800","encrypted_data":"AAAA","k":{"serial":99,"lineage":7}}',
      // Refused ones: the same refusal whatever the split.
      '{"serial":1,"lineage":"x","y":"\\uD83G"}',
      '{"serial":1,"lineage":"x","y":-0.e5}',
      '{"serial":1,"lineage":"x","y":tru}',
      '{"serial":1,"lineage":"x","y":"é\u00ff',
      '{"serial":-0.5e+10,"lineage":"x"}',
    ].map((s) => Buffer.from(s));
    docs.push(Buffer.concat([Buffer.from('{"serial":1,"lineage":"€'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')])); // truncated sequence inside a string
    docs.push(Buffer.concat([Buffer.from('{"serial":1,"lineage":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])); // a surrogate
    for (const body of docs) {
      const whole = outcome([body]);
      for (let p = 0; p <= body.length; p++) {
        assert.deepEqual(outcome([body.subarray(0, p), body.subarray(p)]), whole, `split at ${p} of ${body.toString('latin1')}`);
        for (let q = p; q <= body.length; q += 3) {
          assert.deepEqual(outcome([body.subarray(0, p), body.subarray(p, q), body.subarray(q)]), whole, `splits at ${p}, ${q}`);
        }
      }
      assert.deepEqual(outcome(bytewise(body)), whole);
    }
    assert.deepEqual(outcome([docs[0]!]), { serial: 13, lineage: 'lineage-😀-é€😀', encrypted: false });
    assert.deepEqual(outcome([docs[1]!]), { serial: 1, lineage: 'a\u00e9\ud800', encrypted: true });
  });

  test(`scanned on the body worker, the same documents get the same outcome (seed ${SEED})`, async () => {
    const worker = new BodyWorker();
    after(() => worker.close());
    const r = rng(SEED ^ 0x5ca9);
    const g = new Gen(r);
    let onWorker = 0;
    for (let n = 0; n < Math.min(COUNT, 400); n++) {
      let doc: Buffer = Buffer.from(g.document());
      const mutations = g.chance(0.4) ? 0 : 1 + g.int(3);
      for (let m = 0; m < mutations; m++) doc = g.mutate(doc);
      // Blanks before it (allowed before the object) put the document across the first block boundary, so
      // the body is a block or more and the worker scans it, its two parts in two messages.
      const body = Buffer.concat([Buffer.alloc(DIGEST_BLOCK_BYTES - Math.floor(r() * (doc.length + 1)), 0x20), doc]);
      const here = outcome([body]);
      assert.deepEqual(await outcomeOnWorker(randomPieces(body, r, 96 * 1024), worker), here, `document ${n} (seed ${SEED}): ${doc.toString('latin1').slice(0, 200)}`);
      onWorker++;
    }
    assert.ok(onWorker > 0);
  });

  test('parseStateHeader is one push and end', () => {
    const body = Buffer.from('{"serial":5,"lineage":"L"}');
    assert.deepEqual(parseStateHeader(body), outcome([body]));
  });
});
