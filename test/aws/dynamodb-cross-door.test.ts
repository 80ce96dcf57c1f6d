import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { dynamoClient, s3Client, startAwsServer, type AwsServer } from '../support/aws.js';
import { lockBody, rawRequest } from '../support/http.js';
import { HttpBackendClient, marshalLockInfo, newLockId, newLockInfo } from '../support/terraform-client.js';

/**
 * One lock, several doors: a lock taken through DynamoDB is the lock the http backend sees and the
 * other way round; DeleteItem of a lock held elsewhere is a force-unlock (audited, refused while the
 * holder is alive); double locking with one lock ID releases door by door.
 */

const BUCKET = 'acme-terraform-state-123456789012';
const TABLE = 'terraform-state-lock';

interface LockJson {
  info: Record<string, unknown>;
  verdict: string;
  acquiredAt: string;
}
interface AuditItem {
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

describe('DynamoDB door and the other doors: one lock', () => {
  let server: AwsServer;
  let db: DynamoDBClient;
  let s3: S3Client;
  const clients: HttpBackendClient[] = [];
  let n = 0;
  before(async () => {
    server = await startAwsServer();
    db = dynamoClient(server);
    s3 = s3Client(server);
  });
  after(async () => {
    for (const c of clients) c.close();
    db?.destroy();
    s3?.destroy();
    await server?.stop();
  });

  const newKey = (what: string) => `${BUCKET}/cross/${what}-${++n}/terraform.tfstate`;
  const httpClient = (key: string, lockQuery = '') => {
    const address = `${server.url}/state/${key}`;
    const c = new HttpBackendClient({ address, lockAddress: address + lockQuery, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 50 }, { flavor: 'terraform', who: 'alice@build-07' });
    clients.push(c);
    return c;
  };
  const lockOf = async (key: string): Promise<LockJson | null> => {
    const r = await rawRequest(`${server.url}/api/v1/locks/${key}`);
    if (r.status === 404) return null;
    assert.equal(r.status, 200, r.text);
    return r.json<LockJson>();
  };
  const audit = async (key: string, action: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}&action=${action}`)).json<{ items: AuditItem[] }>().items;
  const getItem = async (key: string) => (await db.send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: key } }, ConsistentRead: true, ProjectionExpression: 'LockID, Info' }))).Item;
  const deleteItem = (key: string, info?: string) =>
    db.send(new DeleteItemCommand({ TableName: TABLE, Key: { LockID: { S: key } }, ...(info !== undefined ? { ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: info } } } : {}) }));
  const dynamoLock = (key: string, id = newLockId()) => {
    const info = newLockInfo({ operation: 'OperationTypeApply', who: 'bob@laptop', version: '1.15.0', id });
    info.Path = key;
    const body = marshalLockInfo(info).toString('utf8');
    return { id, body, put: () => db.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: body } }, ConditionExpression: 'attribute_not_exists(LockID)' })) };
  };
  const httpLockAs = (key: string, id: string) => rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody(id) });
  const failsCondition = async (call: Promise<unknown>, message = /^The conditional request failed$/) => {
    await assert.rejects(call, (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(err.name, 'ConditionalCheckFailedException', err.message);
      assert.equal(err.$metadata?.httpStatusCode, 400);
      assert.match(err.message, message);
      return true;
    });
  };

  test('a lock taken through DynamoDB: the http backend’s LOCK answers 423 with the holder’s Info', async () => {
    const key = newKey('dynamo-first');
    const lock = dynamoLock(key);
    await lock.put();
    const r = await httpLockAs(key, newLockId());
    assert.equal(r.status, 423);
    assert.equal(r.text, lock.body, 'the 423 body is the holder’s lock info verbatim');
    await deleteItem(key);
    assert.equal(await lockOf(key), null);
  });

  test('a lock taken over http is the DynamoDB item: Info byte-equal to the LOCK body; a PutItem by another ID fails the condition; unlock over http → {}', async () => {
    const key = newKey('http-first');
    const client = httpClient(key);
    await client.lock('OperationTypeApply');
    const item = await getItem(key);
    assert.deepEqual(item, { LockID: { S: key }, Info: { S: client.lockBody!.toString('utf8') } });
    await failsCondition(dynamoLock(key).put());
    assert.equal((await lockOf(key))?.info.ID, client.lockId);
    await client.unlock();
    assert.equal(await getItem(key), undefined);
    const raw = await db.send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: key } } }));
    assert.equal(raw.Item, undefined);
  });

  test('DeleteItem of a lock held over http is a force-unlock: released and audited as lock.force-unlock', async () => {
    const key = newKey('force');
    const client = httpClient(key);
    const id = await client.lock('OperationTypeApply');
    await deleteItem(key);
    assert.equal(await lockOf(key), null);
    const forced = await audit(key, 'lock.force-unlock');
    assert.equal(forced.length, 1, JSON.stringify(forced));
    assert.equal(forced[0]!.outcome, 'ok');
    assert.equal(forced[0]!.lockId, id);
    assert.equal(forced[0]!.detail.door, 'dynamodb');
    assert.match(String(forced[0]!.detail.how), /DynamoDB DeleteItem/);
  });

  test('DeleteItem of a lock whose holder is alive (bound to a live session) is refused with ConditionalCheckFailedException and the HOLDER_ALIVE reason', async () => {
    const key = newKey('alive');
    const created = await rawRequest(`${server.url}/api/v1/sessions`, { method: 'POST', body: JSON.stringify({ key, ttlSeconds: 300 }), headers: { 'Content-Type': 'application/json' } });
    assert.equal(created.status, 201, created.text);
    const session = created.json<{ id: string }>().id;
    const client = httpClient(key, `?session=${session}`);
    const id = await client.lock('OperationTypeApply');
    assert.equal((await lockOf(key))?.verdict, 'alive');
    await failsCondition(deleteItem(key), /refusing to force-unlock .*its holder is alive/);
    assert.equal((await lockOf(key))?.info.ID, id, 'the live holder keeps its lock');
    const refusedAudit = await audit(key, 'lock.force-unlock');
    assert.equal(refusedAudit.length, 1);
    assert.equal(refusedAudit[0]!.outcome, 'refused');
    await client.unlock();
    assert.equal(await lockOf(key), null);
  });

  test('double locking with one ID through DynamoDB and http: releasing the DynamoDB hold keeps the lock; the http UNLOCK frees it', async () => {
    const key = newKey('double');
    const client = httpClient(key);
    const id = await client.lock('OperationTypeApply');
    await dynamoLock(key, id).put(); // the same lock ID through the second door succeeds
    await deleteItem(key);
    const stillHeld = await getItem(key);
    assert.equal(stillHeld?.Info?.S, client.lockBody!.toString('utf8'), 'GetItem still shows the lock');
    assert.equal((await httpLockAs(key, newLockId())).status, 423);
    assert.deepEqual(await audit(key, 'lock.release'), [], 'dropping one hold is not a release');
    await client.unlock();
    assert.equal(await lockOf(key), null);
    assert.equal(await getItem(key), undefined);
  });

  test('double locking through S3 .tflock and DynamoDB (use_lockfile + dynamodb_table): each door’s release drops its own hold', async (t) => {
    const key = newKey('tflock');
    const objectKey = key.slice(BUCKET.length + 1);
    try {
      await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    } catch (err) {
      const name = (err as Error).name;
      // The S3 door is built separately: until it is wired in, the entry point answers 501.
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 501) return t.skip('the S3 door is not wired into this build');
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
    }
    const lock = dynamoLock(key);
    // Terraform: the .tflock object first, then the DynamoDB item.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${objectKey}.tflock`, Body: lock.body, IfNoneMatch: '*', ContentType: 'application/json' }));
    await lock.put();
    // Unlock: the .tflock object first — the DynamoDB item must still show the lock.
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${objectKey}.tflock` }));
    assert.equal((await getItem(key))?.Info?.S, lock.body);
    assert.equal((await httpLockAs(key, newLockId())).status, 423);
    await deleteItem(key);
    assert.equal(await lockOf(key), null);
  });

  test('OpenTofu’s DeleteItem with Info = :info releases a lock taken over http when the Info matches', async () => {
    const key = newKey('tofu-http');
    const client = httpClient(key);
    await client.lock('OperationTypeApply');
    await failsCondition(deleteItem(key, client.lockBody!.toString('utf8').replace('OperationTypeApply', 'OperationTypePlan')));
    assert.ok(await lockOf(key), 'a stale Info releases nothing');
    await deleteItem(key, client.lockBody!.toString('utf8'));
    assert.equal(await lockOf(key), null);
  });

  test('releasing an already-free lock through DeleteItem answers 200, with and without Info = :info', async () => {
    const key = newKey('free');
    const lock = dynamoLock(key);
    await lock.put();
    await deleteItem(key, lock.body);
    assert.equal(await lockOf(key), null);
    const again = await deleteItem(key, lock.body);
    assert.equal(again.$metadata.httpStatusCode, 200);
    const plain = await deleteItem(key);
    assert.equal(plain.$metadata.httpStatusCode, 200);
    assert.equal(await lockOf(key), null);
  });
});
