import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { StatelockError } from '../../src/server/errors.js';
import { digest, parseStateHeader } from '../../src/state/state-file.js';
import { MAX_KEY_BYTES, parseKeyFromPath, prefixUpperBound } from '../../src/state/state-key.js';

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
  test('prefixUpperBound bounds exactly the keys with the prefix', () => {
    assert.equal(prefixUpperBound('ab'), 'ac');
    assert.equal(prefixUpperBound('a/'), 'a0');
    assert.equal(prefixUpperBound(''), null);
    const keys = ['a', 'a/', 'a/b', 'a/\u{10ffff}x', 'a0', 'b'];
    const upper = prefixUpperBound('a/')!;
    assert.deepEqual(keys.filter((k) => k >= 'a/' && Buffer.compare(Buffer.from(k), Buffer.from(upper)) < 0), ['a/', 'a/b', 'a/\u{10ffff}x']);
  });
});
