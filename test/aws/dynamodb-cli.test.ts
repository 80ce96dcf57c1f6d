import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AWS_CLI_SKIP, awsCli, startAwsServer, TEST_KEY, type AwsServer, type CliResult } from '../support/aws.js';
import { rawRequest } from '../support/http.js';
import { marshalLockInfo, newLockInfo, type LockInfo } from '../support/terraform-client.js';

/**
 * Lesson 17's own commands, typed into the real AWS CLI (/usr/bin/aws, 2.9.19), against statelock:
 * the lock entry it inspects with `aws dynamodb get-item` is the statelock lock, whichever door took it,
 * and `aws dynamodb delete-item` is an audited force-unlock.
 */

const BUCKET = 'acme-terraform-state-123456789012';
const TABLE = 'terraform-state-lock';
const LESSON_KEY = `${BUCKET}/lesson-17/terraform.tfstate`;

interface AuditItem {
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

describe('the lesson’s aws dynamodb commands through the real AWS CLI', { skip: AWS_CLI_SKIP }, () => {
  let server: AwsServer;
  let n = 0;
  before(async () => (server = await startAwsServer()));
  after(async () => void (await server?.stop()));

  const aws = (args: string[], opts: Parameters<typeof awsCli>[2] = {}) => awsCli(server, ['dynamodb', ...args], opts);
  const keyArg = (key: string) => JSON.stringify({ LockID: { S: key } });
  /** Terraform's lock info for `key` (Path = the LockID), taken over the http backend as `terraform apply` would. */
  const lockOverHttp = async (key: string): Promise<{ info: LockInfo; body: string }> => {
    const info = newLockInfo({ operation: 'OperationTypeApply', who: 'engineer@MacBook-Pro.local', version: '1.6.0' });
    info.Path = key;
    const body = marshalLockInfo(info).toString('utf8');
    const r = await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body });
    assert.equal(r.status, 200, r.text);
    return { info, body };
  };
  const lockOf = async (key: string) => {
    const r = await rawRequest(`${server.url}/api/v1/locks/${key}`);
    return r.status === 404 ? null : r.json<{ info: Record<string, unknown> }>();
  };
  const audit = async (key: string, action: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}&action=${action}`)).json<{ items: AuditItem[] }>().items;
  const ok = (r: CliResult) => {
    assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  };

  test('get-item while terraform apply holds the lock prints the lesson’s entry; after the release it prints nothing, exit 0', async () => {
    const { info, body } = await lockOverHttp(LESSON_KEY);
    const held = ok(await aws(['get-item', '--table-name', TABLE, '--key', keyArg(LESSON_KEY)]));
    const doc = JSON.parse(held.stdout) as { Item: { LockID: { S: string }; Info: { S: string } } };
    assert.equal(doc.Item.LockID.S, LESSON_KEY);
    assert.equal(doc.Item.Info.S, body);
    const parsed = JSON.parse(doc.Item.Info.S) as Record<string, string>;
    assert.deepEqual(Object.keys(parsed), ['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path']);
    assert.equal(parsed.ID, info.ID);
    assert.equal(parsed.Operation, 'OperationTypeApply');
    assert.equal(parsed.Path, LESSON_KEY);

    const projected = ok(await aws(['get-item', '--table-name', TABLE, '--key', keyArg(LESSON_KEY), '--consistent-read', '--projection-expression', 'Info']));
    assert.deepEqual(Object.keys((JSON.parse(projected.stdout) as { Item: object }).Item), ['Info']);

    const released = await rawRequest(`${server.url}/state/${LESSON_KEY}`, { method: 'UNLOCK', body });
    assert.equal(released.status, 200, released.text);
    const empty = ok(await aws(['get-item', '--table-name', TABLE, '--key', keyArg(LESSON_KEY)]));
    // CLI 2.9.19 prints nothing for DynamoDB's empty answer `{}` (the lesson shows `{}`).
    assert.equal(empty.stdout.trim(), '');
  });

  test('delete-item is the lesson’s force-unlock: the lock is released and the audit trail says so', async () => {
    const key = `${BUCKET}/lesson-17/crash-${++n}/terraform.tfstate`;
    const { info } = await lockOverHttp(key);
    ok(await aws(['delete-item', '--table-name', TABLE, '--key', keyArg(key)]));
    assert.equal(await lockOf(key), null);
    const forced = await audit(key, 'lock.force-unlock');
    assert.equal(forced.length, 1, JSON.stringify(forced));
    assert.equal(forced[0]!.lockId, info.ID);
    assert.equal(forced[0]!.outcome, 'ok');
    assert.equal(forced[0]!.detail.door, 'dynamodb');
    // Deleting again is harmless.
    ok(await aws(['delete-item', '--table-name', TABLE, '--key', keyArg(key)]));
  });

  test('put-item with attribute_not_exists(LockID) on a held lock exits 254 with ConditionalCheckFailedException', async () => {
    const key = `${BUCKET}/lesson-17/held-${++n}/terraform.tfstate`;
    const { info } = await lockOverHttp(key);
    const other = newLockInfo({ operation: 'OperationTypePlan', who: 'ci@runner', version: '1.6.0' });
    const item = JSON.stringify({ LockID: { S: key }, Info: { S: marshalLockInfo(other).toString('utf8') } });
    const r = await aws(['put-item', '--table-name', TABLE, '--item', item, '--condition-expression', 'attribute_not_exists(LockID)']);
    assert.equal(r.code, 254, r.stderr);
    assert.match(r.stderr, /An error occurred \(ConditionalCheckFailedException\) when calling the PutItem operation: The conditional request failed/);
    assert.equal((await lockOf(key))?.info.ID, info.ID);
    // The same put when the lock is free takes it.
    ok(await aws(['delete-item', '--table-name', TABLE, '--key', keyArg(key)]));
    ok(await aws(['put-item', '--table-name', TABLE, '--item', item, '--condition-expression', 'attribute_not_exists(LockID)']));
    assert.equal((await lockOf(key))?.info.ID, other.ID);
    ok(await aws(['delete-item', '--table-name', TABLE, '--key', keyArg(key)]));
  });

  test('create-table, wait table-exists, describe-table, list-tables, scan', async () => {
    const name = `lesson-locks-${++n}`;
    const created = ok(
      await aws(['create-table', '--table-name', name, '--attribute-definitions', 'AttributeName=LockID,AttributeType=S', '--key-schema', 'AttributeName=LockID,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST']),
    );
    const desc = (JSON.parse(created.stdout) as { TableDescription: Record<string, unknown> }).TableDescription;
    assert.equal(desc.TableName, name);
    assert.equal(desc.TableStatus, 'ACTIVE');
    assert.deepEqual(desc.BillingModeSummary, { BillingMode: 'PAY_PER_REQUEST', LastUpdateToPayPerRequestDateTime: desc.CreationDateTime });
    ok(await aws(['wait', 'table-exists', '--table-name', name]));
    const described = ok(await aws(['describe-table', '--table-name', name]));
    assert.equal((JSON.parse(described.stdout) as { Table: { TableArn: string } }).Table.TableArn, `arn:aws:dynamodb:us-east-1:000000000000:table/${name}`);
    const listed = ok(await aws(['list-tables']));
    assert.ok((JSON.parse(listed.stdout) as { TableNames: string[] }).TableNames.includes(name));
    const again = await aws(['create-table', '--table-name', name, '--attribute-definitions', 'AttributeName=LockID,AttributeType=S', '--key-schema', 'AttributeName=LockID,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST']);
    assert.equal(again.code, 254);
    assert.match(again.stderr, /ResourceInUseException/);
    const missing = await aws(['describe-table', '--table-name', 'no-such-table']);
    assert.equal(missing.code, 254);
    assert.match(missing.stderr, /ResourceNotFoundException/);

    const key = `${BUCKET}/lesson-17/scan-${n}/terraform.tfstate`;
    const { body } = await lockOverHttp(key);
    const scanned = ok(await aws(['scan', '--table-name', name]));
    const items = (JSON.parse(scanned.stdout) as { Items: Array<{ LockID: { S: string }; Info?: { S: string } }>; Count: number }).Items;
    assert.deepEqual(items.find((i) => i.LockID.S === key), { LockID: { S: key }, Info: { S: body } });
    // The CLI paginates on LastEvaluatedKey by itself: a page size of 1 still returns every item.
    const paged = ok(await aws(['scan', '--table-name', name, '--page-size', '1']));
    assert.deepEqual((JSON.parse(paged.stdout) as { Items: unknown[] }).Items, items);
    ok(await aws(['delete-table', '--table-name', name]));
    assert.ok(await lockOf(key), 'delete-table released nothing');
    ok(await aws(['delete-item', '--table-name', name, '--key', keyArg(key)]));
  });

  test('a wrong secret key: exit 254 with InvalidSignatureException, and nothing changed', async () => {
    const key = `${BUCKET}/lesson-17/badkey-${++n}/terraform.tfstate`;
    const { info } = await lockOverHttp(key);
    const r = await aws(['delete-item', '--table-name', TABLE, '--key', keyArg(key)], { credentials: { accessKeyId: TEST_KEY.accessKeyId, secretAccessKey: 'not-the-secret' } });
    assert.equal(r.code, 254, r.stderr);
    assert.match(r.stderr, /InvalidSignatureException/);
    assert.equal((await lockOf(key))?.info.ID, info.ID);
    assert.deepEqual(await audit(key, 'lock.force-unlock'), []);
  });
});
