import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { StatelockError } from '../../src/server/errors.js';
import { HEADER_VALUE_LIMIT, StateHeaderReader, digest, parseStateHeader } from '../../src/state/state-file.js';
import { decodeKeyPath, MAX_KEY_BYTES, parseKeyFromPath, prefixUpperBound } from '../../src/state/state-key.js';

const errCode = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return e instanceof StatelockError ? e.code : String(e);
  }
};

describe('parseStateHeader', () => {
  test('reads serial and lineage of a v4 state', () => {
    assert.deepEqual(parseStateHeader(Buffer.from('{"version":4,"serial":3,"lineage":"L","resources":[]}')), { serial: 3, lineage: 'L', encrypted: false });
  });
  test('recognises OpenTofu’s encrypted envelope', () => {
    const env = '{"serial":7,"lineage":"L","meta":{"key_provider.pbkdf2.main":"e30="},"encrypted_data":"AAAA","encryption_version":"v0"}';
    assert.deepEqual(parseStateHeader(Buffer.from(env)), { serial: 7, lineage: 'L', encrypted: true });
  });
  test('refuses what is not a JSON object with an integer serial and a string lineage', () => {
    for (const bad of ['', '{', '[]', '5', 'null', '{"lineage":"L"}', '{"serial":1}', '{"serial":"1","lineage":"L"}', '{"serial":1.5,"lineage":"L"}', '{"serial":-1,"lineage":"L"}', '{"serial":1,"lineage":5}', '{"serial":1e300,"lineage":"L"}']) {
      assert.equal(errCode(() => parseStateHeader(Buffer.from(bad))), 'INVALID_STATE', bad);
    }
    assert.equal(errCode(() => parseStateHeader(Buffer.from([0x7b, 0xff, 0x7d]))), 'INVALID_STATE', 'invalid UTF-8');
  });
  test('digest gives Content-MD5 style base64 md5 and hex sha256', () => {
    const b = Buffer.from('hello');
    assert.deepEqual(digest(b), { md5: createHash('md5').update(b).digest('base64'), sha256: createHash('sha256').update(b).digest('hex'), size: 5 });
  });
});

/** The refusal reason of a body fed in the given pieces, or the header. */
const read = (...pieces: (string | Buffer)[]) => {
  const reader = new StateHeaderReader();
  try {
    for (const p of pieces) reader.push(typeof p === 'string' ? Buffer.from(p) : p);
    return reader.end();
  } catch (e) {
    if (e instanceof StatelockError && e.code === 'INVALID_STATE') return String(e.params['reason']);
    throw e;
  }
};

describe('StateHeaderReader', () => {
  test('reads the header of a body fed in pieces, whatever the split', () => {
    assert.deepEqual(read('{"version":4,"ser', 'ial":1', '2,"lineage":"L\\u00', 'e9","resources":[]}'), { serial: 12, lineage: 'Lé', encrypted: false });
    const snowman = Buffer.from('{"serial":1,"lineage":"☃"}');
    assert.deepEqual(read(snowman.subarray(0, 24), snowman.subarray(24)), { serial: 1, lineage: '☃', encrypted: false }, 'split inside a 3-byte sequence');
  });
  test('reads top-level members only; the last occurrence wins, as in JSON.parse; keys may be escaped', () => {
    assert.deepEqual(read('{"x":{"serial":9,"lineage":"inner"},"serial":1,"lineage":"L","serial":2}'), { serial: 2, lineage: 'L', encrypted: false });
    assert.deepEqual(read('{"s\\u0065rial":3,"\\u006cineage":"L"}'), { serial: 3, lineage: 'L', encrypted: false });
    const huge = `"${'x'.repeat(HEADER_VALUE_LIMIT)}"`;
    assert.deepEqual(read(`{"serial":${huge},"lineage":${huge},"serial":4,"lineage":"L"}`), { serial: 4, lineage: 'L', encrypted: false }, 'an over-long value, then a valid one');
  });
  test('keeps at most HEADER_VALUE_LIMIT bytes of serial and lineage, and says so', () => {
    const lineage = 'l'.repeat(HEADER_VALUE_LIMIT - 2);
    assert.deepEqual(read(`{"serial":1,"lineage":"${lineage}"}`), { serial: 1, lineage, encrypted: false });
    assert.equal(read(`{"serial":1,"lineage":"${lineage}x"}`), `"lineage" must be at most ${HEADER_VALUE_LIMIT} bytes of JSON`);
    assert.equal(read(`{"serial":1,"lineage":[${'1,'.repeat(HEADER_VALUE_LIMIT)}1]}`), '"lineage" must be a string');
    assert.equal(read(`{"serial":1${'0'.repeat(HEADER_VALUE_LIMIT)},"lineage":"L"}`), '"serial" must be a non-negative integer');
  });
  test('refuses at the first error, JSON or UTF-8, with the old reasons', () => {
    assert.equal(read(''), 'the body is not valid JSON (expected "{" at byte 0)');
    assert.equal(read('  \n'), 'the body is not a JSON object');
    assert.equal(read(' [1]'), 'the body is not a JSON object');
    assert.equal(read('{"serial":1,'), 'the body is not valid JSON (expected a string key at byte 12)');
    assert.equal(read('{"serial":1,}'), 'the body is not valid JSON (expected a string key at byte 12)');
    assert.equal(read('{"a":"\\u12'), 'the body is not valid JSON (bad \\u escape at byte 6)');
    assert.equal(read('{"a":tr', 'ue'), 'the body is not valid JSON (expected "," or "}" at byte 9)');
    assert.equal(read('{"a":tru', 'x'), 'the body is not valid JSON (expected true at byte 5)');
    assert.equal(read('{"a":-', '}'), 'the body is not valid JSON (bad number at byte 6)');
    assert.equal(read('{"a":1}', ' x'), 'the body is not valid JSON (unexpected data after the object at byte 8)');
    assert.equal(read(Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22])), 'the body is not valid UTF-8', 'a surrogate');
    assert.equal(read(Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82])), 'the body is not valid UTF-8', 'a sequence cut off by the end');
    // The old reader checked UTF-8 over the whole body first; a streaming one stops at the first error.
    assert.equal(read('{"a":x', Buffer.from([0xff])), 'the body is not valid JSON (expected a value at byte 5)');
    assert.equal(read(Buffer.from([0x7b, 0xff]), 'x'), 'the body is not valid UTF-8');
    const deep = (n: number, inner: string) => `{"a":${'['.repeat(n)}${inner}${']'.repeat(n)},"serial":1,"lineage":"L"}`;
    assert.deepEqual(read(deep(1000, '')), { serial: 1, lineage: 'L', encrypted: false }, 'a 1001st level may be empty');
    assert.deepEqual(read(deep(999, '1')), { serial: 1, lineage: 'L', encrypted: false });
    assert.equal(read(deep(1000, '1')), 'the body is not valid JSON (nesting too deep at byte 1005)');
  });
  test('after a refusal, every later call gives the same refusal', () => {
    const reader = new StateHeaderReader();
    assert.throws(() => reader.push(Buffer.from('{"serial":x')), /expected a value at byte 10/);
    assert.throws(() => reader.push(Buffer.from('1,"lineage":"L"}')), /expected a value at byte 10/);
    assert.throws(() => reader.end(), /expected a value at byte 10/);
  });
  test('streams a large state in 64 KiB pieces', () => {
    const resource = JSON.stringify({ type: 'aws_instance', instances: [{ attributes: { id: 'i-0123', tags: { Name: 'é😀' }, n: -0.5e10 } }] }, null, 2);
    const body = Buffer.from(`{\n  "version": 4,\n  "serial": 77,\n  "lineage": "L",\n  "resources": [${Array.from({ length: 20_000 }, () => resource).join(',')}]\n}\n`);
    const reader = new StateHeaderReader();
    for (let i = 0; i < body.length; i += 65536) reader.push(body.subarray(i, i + 65536));
    assert.deepEqual(reader.end(), { serial: 77, lineage: 'L', encrypted: false });
  });
});

describe('state keys', () => {
  test('decodes percent-escapes per segment', () => {
    assert.equal(parseKeyFromPath('acme/lesson-17/pr-42/terraform.tfstate'), 'acme/lesson-17/pr-42/terraform.tfstate');
    assert.equal(parseKeyFromPath('caf%C3%A9/env%3Aprod'), 'café/env:prod');
    assert.equal(parseKeyFromPath('env:/dev/x'), 'env:/dev/x');
  });
  test('refuses empty, dot and dot-dot segments, control characters, bad UTF-8, encoded slashes and long keys', () => {
    for (const bad of ['', 'a//b', '/a', 'a/', '.', 'a/./b', 'a/../b', '%2e%2e/x', 'a%00b', 'a%0Ab', 'a%FFb', 'a%2Fb', 'a%zzb', 'a%2']) {
      assert.equal(errCode(() => parseKeyFromPath(bad)), 'INVALID_KEY', bad);
    }
    assert.equal(errCode(() => parseKeyFromPath('a'.repeat(MAX_KEY_BYTES))), 'ok');
    assert.equal(errCode(() => parseKeyFromPath('a'.repeat(MAX_KEY_BYTES + 1))), 'INVALID_KEY');
    assert.equal(errCode(() => parseKeyFromPath('%C3%A9'.repeat(513))), 'INVALID_KEY', '1026 bytes of é');
  });
  test('the plain-path shortcut answers as the full decoding does, for any path', () => {
    // Paths built from the characters that matter: dots, slashes, escapes, spaces, controls, non-ASCII.
    const alphabet = ['a', 'Z', '.', '.', '/', '/', '%', '2', 'e', 'F', ' ', '~', '\x7f', '\x1f', 'é', ':'];
    let seed = 17;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    const outcome = (f: () => string) => {
      try {
        return f();
      } catch (err) {
        return `error ${(err as { code?: string }).code}: ${(err as Error).message}`;
      }
    };
    const paths = ['a'.repeat(MAX_KEY_BYTES), 'a'.repeat(MAX_KEY_BYTES + 1), `${'a/'.repeat(511)}ab`, '...', '.a/..b/c..', '. /x'];
    for (let i = 0; i < 20_000; i++) paths.push(Array.from({ length: next() % 12 }, () => alphabet[next() % alphabet.length]).join(''));
    for (const path of paths) assert.equal(outcome(() => parseKeyFromPath(path)), outcome(() => decodeKeyPath(path)), JSON.stringify(path));
  });
  test('prefixUpperBound bounds exactly the keys with the prefix', () => {
    assert.equal(prefixUpperBound('ab'), 'ac');
    assert.equal(prefixUpperBound('a/'), 'a0');
    assert.equal(prefixUpperBound(''), null);
    const keys = ['a', 'a/', 'a/b', 'a/\u{10ffff}x', 'a0', 'b'];
    const upper = prefixUpperBound('a/')!;
    assert.deepEqual(keys.filter((k) => k >= 'a/' && Buffer.compare(Buffer.from(k), Buffer.from(upper)) < 0), ['a/', 'a/b', 'a/\u{10ffff}x']);
  });
});
