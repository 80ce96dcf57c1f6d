import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { coversPrefix, formatGrant, globMatches, isAllowed, parseGrant, PERMISSIONS, type Grant } from '../../src/auth/permissions.js';
import { decideDoorRelease, type HeldLock } from '../../src/lock/lock-rules.js';
import type { LockDoor } from '../../src/store/store.js';

/** The grant of a text that must parse. */
function grant(text: string): Grant {
  const g = parseGrant(text);
  if ('error' in g) throw new Error(`"${text}" did not parse: ${g.error}`);
  return g;
}

const grants = (...texts: string[]) => texts.map(grant);

describe('parseGrant', () => {
  test('<glob>:<permission,…> with the permissions in order, spaces trimmed, duplicates dropped', () => {
    assert.deepEqual(parseGrant('lesson-17/pr-*:read,write,lock'), { pattern: 'lesson-17/pr-*', permissions: ['read', 'write', 'lock'] });
    assert.deepEqual(parseGrant('*: read , force-unlock ,read'), { pattern: '*', permissions: ['read', 'force-unlock'] });
    assert.deepEqual(parseGrant('*:admin'), { pattern: '*', permissions: ['admin'] });
    assert.deepEqual(parseGrant('a:read,,write,'), { pattern: 'a', permissions: ['read', 'write'] }, 'empty list members are ignored');
  });

  test('every permission parses', () => {
    for (const p of PERMISSIONS) assert.deepEqual(parseGrant(`k:${p}`), { pattern: 'k', permissions: [p] });
  });

  test('the last colon separates: globs may contain colons (env:/*, a:b:c)', () => {
    assert.deepEqual(parseGrant('env:/*:read'), { pattern: 'env:/*', permissions: ['read'] });
    assert.deepEqual(parseGrant('acme/env:/prod/*:read,lock'), { pattern: 'acme/env:/prod/*', permissions: ['read', 'lock'] });
    assert.deepEqual(parseGrant('a:b:c:write'), { pattern: 'a:b:c', permissions: ['write'] });
  });

  test('an unknown permission is refused, naming it and the known ones', () => {
    const g = parseGrant('prod/*:read,reed,Write');
    assert.ok('error' in g);
    assert.match(g.error, /unknown permission "reed", "Write" in "prod\/\*:read,reed,Write"/);
    assert.match(g.error, /read, write, lock, force-unlock, delete, restore, admin/);
    // A glob with a colon whose tail is not a permission list is a grant with an unknown permission.
    assert.ok('error' in parseGrant('env:/*'));
  });

  test('empty, glob-less and permission-less texts are refused with the expected shape', () => {
    for (const text of ['', ':', ':read', 'prod/*', 'prod/*:', 'prod/*: , ,']) {
      const g = parseGrant(text);
      assert.ok('error' in g, `"${text}" should not parse`);
      assert.match(g.error, /<key glob>:<permission,…>|names no permission/, text);
    }
  });

  test('formatGrant writes back what parseGrant reads', () => {
    for (const text of ['lesson-17/pr-*:read,write,lock', 'env:/*:read', '*:admin']) assert.equal(formatGrant(grant(text)), text);
    assert.equal(formatGrant(grant('*: read ,read, lock')), '*:read,lock');
  });
});

describe('globMatches', () => {
  const cases: Array<[pattern: string, key: string, matches: boolean]> = [
    ['*', '', true],
    ['*', 'a/b/c', true],
    ['prod', 'prod', true],
    ['prod', 'prod/x', false],
    ['prod', 'pro', false],
    ['', '', true],
    ['', 'a', false],
    ['prod/*', 'prod/', true],
    ['prod/*', 'prod/a/b/terraform.tfstate', true], // `*` crosses `/`
    ['prod/*', 'prod', false],
    ['prod/*', 'production/x', false],
    ['lesson-17/pr-*', 'lesson-17/pr-1/terraform.tfstate', true],
    ['lesson-17/pr-*', 'lesson-17/prod/terraform.tfstate', false],
    ['lesson-17/pr-*', 'lesson-17/pr-', true],
    ['*.tfstate', 'a/b.tfstate', true],
    ['*.tfstate', 'a/b.tfstatex', false],
    ['*.tfstate', 'a/bxtfstate', false], // `.` is literal
    ['a*a', 'a', false], // prefix and suffix may not overlap
    ['a*a', 'aa', true],
    ['ab*ba', 'aba', false],
    ['ab*ba', 'abba', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'acb', false],
    ['a*b*c', 'abcb', false],
    ['a*b*b', 'ab', false],
    ['a*b*b', 'abb', true],
    ['**', 'anything/at/all', true],
    ['a**', 'a', true],
    ['*/prod/*', 'acme/prod/x', true],
    ['*/prod/*', 'acme/staging/x', false],
    ['env:/*', 'env:/dev/terraform.tfstate', true],
    ['env:/*', 'env/dev', false],
    ['a+b?[c]', 'a+b?[c]', true], // regex specials are literal
    ['a+b?[c]', 'aab[c]', false],
    ['ü/*', 'ü/x', true],
    ['PROD/*', 'prod/x', false], // case-sensitive
  ];
  for (const [pattern, key, matches] of cases) {
    test(`"${pattern}" ${matches ? 'matches' : 'does not match'} "${key}"`, () => assert.equal(globMatches(pattern, key), matches));
  }
});

describe('isAllowed', () => {
  test('a grant allows its permissions on the keys its glob matches, nothing else', () => {
    const g = grants('lesson-17/pr-*:read,write,lock');
    assert.equal(isAllowed(g, 'read', 'lesson-17/pr-3/terraform.tfstate'), true);
    assert.equal(isAllowed(g, 'write', 'lesson-17/pr-3/terraform.tfstate'), true);
    assert.equal(isAllowed(g, 'lock', 'lesson-17/pr-3/terraform.tfstate'), true);
    for (const p of ['force-unlock', 'delete', 'restore', 'admin'] as const) assert.equal(isAllowed(g, p, 'lesson-17/pr-3/terraform.tfstate'), false, p);
    assert.equal(isAllowed(g, 'read', 'lesson-17/prod/terraform.tfstate'), false);
  });

  test('admin implies every permission, on the keys its glob matches', () => {
    const g = grants('prod/*:admin');
    for (const p of PERMISSIONS) assert.equal(isAllowed(g, p, 'prod/x'), true, p);
    for (const p of PERMISSIONS) assert.equal(isAllowed(g, p, 'dev/x'), false, p);
  });

  test('no permission implies another (write does not imply read, lock does not imply force-unlock)', () => {
    assert.equal(isAllowed(grants('*:write'), 'read', 'k'), false);
    assert.equal(isAllowed(grants('*:lock'), 'force-unlock', 'k'), false);
    assert.equal(isAllowed(grants('*:force-unlock'), 'lock', 'k'), false);
    assert.equal(isAllowed(grants('*:delete,restore'), 'write', 'k'), false);
  });

  test('grants add up: each permission may come from another grant', () => {
    const g = grants('*:read', 'prod/*:lock', 'prod/app/*:force-unlock');
    assert.equal(isAllowed(g, 'read', 'dev/x'), true);
    assert.equal(isAllowed(g, 'lock', 'prod/x'), true);
    assert.equal(isAllowed(g, 'lock', 'dev/x'), false);
    assert.equal(isAllowed(g, 'force-unlock', 'prod/app/x'), true);
    assert.equal(isAllowed(g, 'force-unlock', 'prod/db/x'), false);
  });

  test('a null key (server-wide: tokens, buckets, tables, the whole audit trail) needs the permission on exactly "*"', () => {
    assert.equal(isAllowed(grants('*:admin'), 'admin', null), true);
    assert.equal(isAllowed(grants('*:read'), 'read', null), true);
    assert.equal(isAllowed(grants('*:read'), 'admin', null), false);
    assert.equal(isAllowed(grants('prod/*:admin'), 'admin', null), false);
    assert.equal(isAllowed(grants('**:admin'), 'admin', null), false, 'only the plain "*" glob is server-wide');
    assert.equal(isAllowed(grants('prod/*:admin', '*:read'), 'admin', null), false);
  });

  test('no grants allow nothing', () => {
    for (const p of PERMISSIONS) {
      assert.equal(isAllowed([], p, 'k'), false);
      assert.equal(isAllowed([], p, null), false);
    }
  });
});

describe('decideDoorRelease with the force-unlock permission', () => {
  const held = (holds: LockDoor[]): HeldLock & { holds: LockDoor[] } => ({ id: 'A', operation: 'OperationTypeApply', who: 'a@h', created: null, raw: '{"ID":"A"}', holds });
  const may = (allowed: boolean) => ({ allowed, principal: 'ci' });

  test('an unconditional delete of a lock held through another door is a force-unlock: FORBIDDEN without the permission', () => {
    const d = decideDoorRelease('acme/k', held(['http']), { door: 's3', id: null, mayForceUnlock: may(false) });
    assert.equal(d.kind, 'refuse');
    if (d.kind !== 'refuse') return;
    assert.equal(d.error.code, 'FORBIDDEN');
    assert.equal(d.error.status, 403);
    assert.match(d.error.message, /principal "ci" lacks the force-unlock permission on acme\/k \(the lock is held through http, not through s3/);
    assert.deepEqual(decideDoorRelease('acme/k', held(['s3']), { door: 'dynamodb', id: null, mayForceUnlock: may(false) }).kind, 'refuse');
  });

  test('with the permission the same delete force-unlocks', () => {
    assert.deepEqual(decideDoorRelease('acme/k', held(['http']), { door: 's3', id: null, mayForceUnlock: may(true) }), { kind: 'release', forced: true });
  });

  test("the door's own hold, a free lock and a release naming the holder need no force-unlock", () => {
    assert.deepEqual(decideDoorRelease('acme/k', held(['s3']), { door: 's3', id: null, mayForceUnlock: may(false) }), { kind: 'release', forced: false });
    assert.deepEqual(decideDoorRelease('acme/k', held(['s3', 'dynamodb']), { door: 's3', id: null, mayForceUnlock: may(false) }), { kind: 'drop-hold', holds: ['dynamodb'] });
    assert.deepEqual(decideDoorRelease('acme/k', null, { door: 's3', id: null, mayForceUnlock: may(false) }), { kind: 'already-free' });
    assert.deepEqual(decideDoorRelease('acme/k', held(['http']), { door: 'dynamodb', id: 'A', expectedInfo: '{"ID":"A"}', mayForceUnlock: may(false) }), { kind: 'release', forced: false });
  });

  test('a condition that does not hold is refused for what it is, before the permission is considered', () => {
    const d = decideDoorRelease('acme/k', held(['http']), { door: 'dynamodb', id: 'B', mayForceUnlock: may(false) });
    assert.equal(d.kind === 'refuse' && d.error.code, 'LOCK_ID_MISMATCH');
  });

  test('without the flag (internal callers, older rules tests) nothing is checked', () => {
    assert.deepEqual(decideDoorRelease('acme/k', held(['http']), { door: 's3', id: null }), { kind: 'release', forced: true });
  });
});

describe('coversPrefix', () => {
  const g = (text: string) => parseGrant(text) as Grant;
  test('a trailing-star glob covers every prefix that begins with its head', () => {
    assert.equal(coversPrefix([g('team/*:read')], 'read', 'team/other/'), true);
    assert.equal(coversPrefix([g('team/*:read')], 'read', 'team/'), true);
    assert.equal(coversPrefix([g('team/*:read')], 'read', 'tea'), false, 'tea… also matches keys outside team/');
    assert.equal(coversPrefix([g('team/*:write')], 'read', 'team/x'), false);
    assert.equal(coversPrefix([g('team/*:admin')], 'read', 'team/x'), true);
    assert.equal(coversPrefix([g('team/*/prod:read')], 'read', 'team/'), false, 'a star in the middle covers only some keys');
    assert.equal(coversPrefix([g('*:read')], 'read', ''), true);
  });
});
