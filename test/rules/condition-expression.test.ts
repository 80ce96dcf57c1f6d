import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { itemSizeBytes, parseAttributeValue, tableNameOf, type AttributeValue, type Item } from '../../src/protocols/aws/dynamodb/attribute-values.js';
import { evaluateCondition, ExpressionContext, parseCondition, parseProjection, project } from '../../src/protocols/aws/dynamodb/condition-expression.js';
import { lockDeleteCondition, lockPutCondition, md5Hex, parsePutItem, refFromKey } from '../../src/protocols/aws/dynamodb/lock-items.js';
import { StatelockError } from '../../src/server/errors.js';

const LOCK: Item = { LockID: { S: 'b/app/terraform.tfstate' }, Info: { S: '{"ID":"A"}' } };

/** Parses and evaluates `expr` against `item` with the given placeholders. */
function holds(expr: string, item: Item | null, values: Record<string, AttributeValue> = {}, names?: Record<string, string>): boolean {
  const ctx = new ExpressionContext(names, values);
  return evaluateCondition(parseCondition(expr, ctx), item, ctx);
}

/** The ValidationException reason a call throws ('' when it does not throw). */
function refusal(fn: () => unknown): string {
  try {
    fn();
    return '';
  } catch (err) {
    assert.ok(err instanceof StatelockError, String(err));
    assert.equal(err.code, 'DYNAMODB_VALIDATION');
    return err.message;
  }
}

describe('condition expressions: evaluation', () => {
  test('attribute_not_exists(LockID): true without an item, false with one (the lock PutItem)', () => {
    assert.equal(holds('attribute_not_exists(LockID)', null), true);
    assert.equal(holds('attribute_not_exists(LockID)', LOCK), false);
  });

  test('attribute_exists is the opposite, also through #name placeholders', () => {
    assert.equal(holds('attribute_exists(LockID)', LOCK), true);
    assert.equal(holds('attribute_exists(#k)', null, {}, { '#k': 'LockID' }), false);
    assert.equal(holds('attribute_exists(Digest)', LOCK), false);
  });

  test('Info = :info compares strings byte for byte (OpenTofu’s DeleteItem)', () => {
    assert.equal(holds('Info = :info', LOCK, { ':info': { S: '{"ID":"A"}' } }), true);
    assert.equal(holds('Info = :info', LOCK, { ':info': { S: '{"ID": "A"}' } }), false);
    assert.equal(holds(':info = Info', LOCK, { ':info': { S: '{"ID":"A"}' } }), true);
    assert.equal(holds('Info = :info', null, { ':info': { S: '{"ID":"A"}' } }), false, 'a missing item never equals');
  });

  test('= needs the same type; numbers compare numerically', () => {
    assert.equal(holds('Info = :v', LOCK, { ':v': { N: '1' } }), false);
    assert.equal(holds('n = :v', { n: { N: '1.0' } }, { ':v': { N: '1' } }), true);
  });

  test('<> is the negation of =, so it holds when the attribute is missing', () => {
    assert.equal(holds('Info <> :v', LOCK, { ':v': { S: 'x' } }), true);
    assert.equal(holds('Info <> :v', LOCK, { ':v': { S: '{"ID":"A"}' } }), false);
    assert.equal(holds('Digest <> :v', LOCK, { ':v': { S: 'x' } }), true);
  });

  test('NOT binds tighter than AND, AND tighter than OR; parentheses override', () => {
    // false OR (true AND true) = true
    assert.equal(holds('attribute_exists(Digest) OR attribute_exists(LockID) AND attribute_exists(Info)', LOCK), true);
    // (false OR true) AND false = false
    assert.equal(holds('(attribute_exists(Digest) OR attribute_exists(LockID)) AND attribute_exists(Nope)', LOCK), false);
    assert.equal(holds('NOT attribute_exists(Digest) AND attribute_exists(Info)', LOCK), true);
    assert.equal(holds('NOT (attribute_exists(Digest) OR attribute_exists(Info))', LOCK), false);
    assert.equal(holds('not not attribute_exists(LockID)', LOCK), true, 'keywords are case-insensitive');
  });
});

describe('condition expressions: what is refused, with DynamoDB’s wording', () => {
  const ctx = (values: Record<string, AttributeValue> = {}, names?: Record<string, string>) => new ExpressionContext(names, values);

  test('syntax errors name the token', () => {
    assert.match(refusal(() => parseCondition('attribute_not_exists(LockID', ctx())), /Invalid ConditionExpression: Syntax error; token: "<EOF>"/);
    assert.match(refusal(() => parseCondition('Info = = :v', ctx({ ':v': { S: 'x' } }))), /Syntax error; token: "="/);
    assert.match(refusal(() => parseCondition('Info $ :v', ctx())), /Syntax error; token: "\$"/);
    assert.match(refusal(() => parseCondition('attribute_exists(LockID) attribute_exists(Info)', ctx())), /Syntax error/);
  });

  test('an empty expression is refused', () => {
    assert.match(refusal(() => parseCondition('   ', ctx())), /The expression can not be empty/);
  });

  test('undefined placeholders are refused', () => {
    assert.match(refusal(() => parseCondition('Info = :info', ctx())), /attribute value used in expression is not defined; attribute value: :info/);
    assert.match(refusal(() => parseCondition('attribute_exists(#n)', ctx())), /attribute name used in the document path is not defined; attribute name: #n/);
  });

  test('unused placeholders are refused once every expression was parsed', () => {
    const c = ctx({ ':info': { S: 'x' }, ':extra': { S: 'y' } }, { '#n': 'Info' });
    parseCondition('#n = :info', c);
    assert.match(refusal(() => c.assertAllUsed()), /ExpressionAttributeValues unused in expressions: keys: \{:extra\}/);
    const d = ctx({}, { '#n': 'Info', '#m': 'LockID' });
    parseCondition('attribute_exists(#n)', d);
    assert.match(refusal(() => d.assertAllUsed()), /ExpressionAttributeNames unused in expressions: keys: \{#m\}/);
  });

  test('the rest of DynamoDB’s grammar is refused with what statelock supports', () => {
    const v = { ':v': { N: '1' }, ':w': { N: '2' } };
    for (const expr of ['n < :v', 'n >= :v', 'n BETWEEN :v AND :w', 'n IN (:v, :w)', 'begins_with(Info, :v)', 'size(Info) = :v', 'a.b = :v', 'a[0] = :v']) {
      const reason = refusal(() => parseCondition(expr, ctx(v)));
      assert.match(reason, /statelock supports attribute_exists\(path\), attribute_not_exists\(path\), path = :value, path <> :value, AND, OR, NOT and parentheses/, expr);
    }
    assert.match(refusal(() => parseCondition('no_such_function(Info)', ctx())), /Invalid function name; function: no_such_function/);
  });

  test('keywords cannot be attribute names without a placeholder', () => {
    assert.match(refusal(() => parseCondition('attribute_exists(AND)', ctx())), /Syntax error; token: "AND"/);
    assert.equal(holds('attribute_exists(#and)', { AND: { S: 'x' } }, {}, { '#and': 'AND' }), true);
  });
});

describe('projection expressions', () => {
  test('"LockID, Info" and "LockID, Digest" (Terraform’s) keep those attributes only', () => {
    const ctx = new ExpressionContext(undefined, undefined);
    assert.deepEqual(parseProjection('LockID, Info', ctx), ['LockID', 'Info']);
    assert.deepEqual(project(LOCK, parseProjection('Info', ctx)), { Info: LOCK.Info });
    assert.deepEqual(project(LOCK, parseProjection('LockID, Digest', ctx)), { LockID: LOCK.LockID });
    assert.deepEqual(project(LOCK, null), LOCK);
  });

  test('#name placeholders are resolved; duplicates, nesting and junk are refused', () => {
    const ctx = new ExpressionContext({ '#i': 'Info' }, undefined);
    assert.deepEqual(parseProjection('LockID,#i', ctx), ['LockID', 'Info']);
    ctx.assertAllUsed();
    assert.match(refusal(() => parseProjection('Info, Info', new ExpressionContext(undefined, undefined))), /Two document paths overlap/);
    assert.match(refusal(() => parseProjection('Info.ID', new ExpressionContext(undefined, undefined))), /Invalid ProjectionExpression: statelock supports a comma-separated list of top-level attribute names/);
    assert.match(refusal(() => parseProjection('LockID,', new ExpressionContext(undefined, undefined))), /Invalid ProjectionExpression: Syntax error/);
  });
});

describe('attribute values', () => {
  test('exactly one known type descriptor with a value of the right JSON type', () => {
    assert.deepEqual(parseAttributeValue({ S: 'x' }, 'Key.LockID'), { S: 'x' });
    assert.match(refusal(() => parseAttributeValue({}, 'Key.LockID')), /Supplied AttributeValue Key.LockID is empty/);
    assert.match(refusal(() => parseAttributeValue({ S: 'x', N: '1' }, 'Key.LockID')), /more than one datatypes/);
    assert.match(refusal(() => parseAttributeValue({ S: 5 }, 'Key.LockID')), /the S value must be a string/);
    assert.match(refusal(() => parseAttributeValue({ N: 'one' }, 'x')), /cannot be converted to a numeric value/);
    assert.match(refusal(() => parseAttributeValue({ Q: 'x' }, 'x')), /unknown datatype "Q"/);
    assert.match(refusal(() => parseAttributeValue('x', 'x')), /must be an object/);
  });
});

describe('table names', () => {
  test('3–255 characters of [a-zA-Z0-9_.-], or a table ARN whose name is used', () => {
    assert.equal(tableNameOf({ TableName: 'terraform-state-lock' }), 'terraform-state-lock');
    assert.equal(tableNameOf({ TableName: 'arn:aws:dynamodb:us-east-1:123456789012:table/terraform-state-lock' }), 'terraform-state-lock');
    assert.match(refusal(() => tableNameOf({})), /Value null at 'tableName'/);
    assert.match(refusal(() => tableNameOf({ TableName: 'ab' })), /length greater than or equal to 3/);
    assert.match(refusal(() => tableNameOf({ TableName: 'a b c' })), /regular expression pattern/);
    assert.match(refusal(() => tableNameOf({ TableName: 7 })), /Member must be a string/);
  });

  test('item sizes count UTF-8 bytes of names and string values', () => {
    assert.equal(itemSizeBytes({ LockID: { S: 'b/k' }, Info: { S: 'é' } }), 6 + 3 + 4 + 2);
  });
});

describe('the lock-table model', () => {
  test('Key must be exactly {LockID: S}; a -md5 suffix names the digest item', () => {
    assert.deepEqual(refFromKey({ LockID: { S: 'b/app/terraform.tfstate' } }, 'Key'), { kind: 'lock', lockId: 'b/app/terraform.tfstate', key: 'b/app/terraform.tfstate' });
    assert.deepEqual(refFromKey({ LockID: { S: 'b/env:/dev/app/terraform.tfstate-md5' } }, 'Key'), { kind: 'digest', lockId: 'b/env:/dev/app/terraform.tfstate-md5', key: 'b/env:/dev/app/terraform.tfstate' });
    assert.match(refusal(() => refFromKey({ LockID: { N: '1' } }, 'Key')), /The provided key element does not match the schema/);
    assert.match(refusal(() => refFromKey({ LockID: { S: 'x' }, Info: { S: 'y' } }, 'Key')), /does not match the schema/);
    assert.match(refusal(() => refFromKey({ ID: { S: 'x' } }, 'Key')), /does not match the schema/);
    assert.match(refusal(() => refFromKey(undefined, 'Key')), /Value null at 'key'/);
    assert.match(refusal(() => refFromKey({ LockID: { S: '' } }, 'Key')), /cannot contain an empty string value/);
    assert.match(refusal(() => refFromKey({ LockID: { S: 'b//x' } }, 'Key')), /does not name a statelock state.*empty segment/);
  });

  test('PutItem items: {LockID, Info} or {LockID -md5, Digest hex}; anything else says what the table holds', () => {
    assert.deepEqual(parsePutItem({ LockID: { S: 'b/k' }, Info: { S: '{}' } }), { kind: 'lock', ref: { kind: 'lock', lockId: 'b/k', key: 'b/k' }, info: '{}' });
    const digest = 'D41D8CD98F00B204E9800998ECF8427E';
    assert.equal((parsePutItem({ LockID: { S: 'b/k-md5' }, Digest: { S: digest } }) as { digest: string }).digest, digest.toLowerCase());
    assert.match(refusal(() => parsePutItem({ LockID: { S: 'b/k' }, Info: { S: '{}' }, Extra: { S: 'x' } })), /statelock lock tables hold lock items .* this one has LockID \(S\), Info \(S\), Extra \(S\)/);
    assert.match(refusal(() => parsePutItem({ LockID: { S: 'b/k' }, Info: { N: '1' } })), /a lock item must hold exactly LockID \(S\) and Info \(S\)/);
    assert.match(refusal(() => parsePutItem({ LockID: { N: '1' }, Info: { S: '{}' } })), /Type mismatch for key LockID expected: S actual: N/);
    assert.match(refusal(() => parsePutItem({ Info: { S: '{}' } })), /Missing the key LockID in the item/);
    assert.match(refusal(() => parsePutItem({ LockID: { S: 'b/k-md5' }, Digest: { S: 'abc' } })), /Digest must be the 32-character hex MD5/);
    assert.match(refusal(() => parsePutItem({ LockID: { S: 'b/k-md5' }, Digest: { S: digest }, Info: { S: '{}' } })), /a digest item must hold exactly LockID \(S\) and Digest \(S\)/);
  });

  test('the stored base64 MD5 is shown as lowercase hex', () => {
    assert.equal(md5Hex('1B2M2Y8AsgTpgAmY7PhCfg=='), 'd41d8cd98f00b204e9800998ecf8427e');
  });

  test('lock PutItem conditions: none, or attribute_not_exists(LockID) (also via #name or NOT attribute_exists)', () => {
    const ctx = () => new ExpressionContext({ '#l': 'LockID' }, undefined);
    assert.equal(lockPutCondition(null), 'unconditional');
    assert.equal(lockPutCondition(parseCondition('attribute_not_exists(LockID)', ctx())), 'if-free');
    assert.equal(lockPutCondition(parseCondition('attribute_not_exists(#l)', ctx())), 'if-free');
    assert.equal(lockPutCondition(parseCondition('NOT attribute_exists(LockID)', ctx())), 'if-free');
    assert.match(refusal(() => lockPutCondition(parseCondition('attribute_exists(LockID)', ctx()))), /statelock supports only attribute_not_exists\(LockID\)/);
    assert.match(refusal(() => lockPutCondition(parseCondition('attribute_not_exists(LockID) OR attribute_exists(LockID)', ctx()))), /supports only/);
  });

  test('lock DeleteItem conditions: none, Info = :info, attribute_exists(LockID), or both', () => {
    const values = { ':info': { S: '{"ID":"A"}' } } as Record<string, AttributeValue>;
    const cond = (expr: string, v = values) => {
      const ctx = new ExpressionContext(undefined, v);
      return lockDeleteCondition(parseCondition(expr, ctx), ctx);
    };
    assert.deepEqual(lockDeleteCondition(null, new ExpressionContext(undefined, undefined)), { mustBeHeld: false });
    assert.deepEqual(cond('Info = :info'), { mustBeHeld: false, expectedInfo: '{"ID":"A"}' });
    assert.deepEqual(cond(':info = Info'), { mustBeHeld: false, expectedInfo: '{"ID":"A"}' });
    assert.deepEqual(cond('attribute_exists(LockID) AND Info = :info'), { mustBeHeld: true, expectedInfo: '{"ID":"A"}' });
    assert.match(refusal(() => cond('Info <> :info')), /statelock supports only Info = :info/);
    assert.match(refusal(() => cond('LockID = :info')), /statelock supports only Info = :info/);
    assert.match(refusal(() => cond('attribute_not_exists(LockID)', {})), /statelock supports only Info = :info/);
    assert.match(refusal(() => cond('Info = :info', { ':info': { N: '1' } })), /could never match/);
  });
});
