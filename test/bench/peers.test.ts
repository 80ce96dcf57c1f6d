import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startAwsServer, TEST_KEY, type AwsServer } from '../support/aws.js';
import { AwsClient, createBucket, createLockTable, LOCK_TABLE } from '../../bench/lib/aws-client.js';
import { S3RVER_CREDENTIALS, startDynalite, startS3rver, type DataServer } from '../../bench/lib/processes.js';
import { sha256Hex } from '../../bench/lib/sigv4.js';
import { dynamoLocker } from '../../bench/suites/lock-cycle.js';
import { transport } from '../../bench/suites/transfer.js';

/**
 * The bench's peer harness (bench/lib): its own SigV4 signer, the DynamoDB lock cycle and the S3 object
 * requests it times, and the dynalite / s3rver processes it compares statelock with. Correctness only —
 * speed is measured in `npm run bench`, never here. statelock verifies signatures, so a request it accepts
 * was signed right; the peers must hold what they acknowledged, or the comparison measures nothing.
 */

const LOCK_ID = 'bench/peers/terraform.tfstate';
const lockInfo = (id: string): string => JSON.stringify({ ID: id, Operation: 'OperationTypeApply', Info: '', Who: 'bench@127.0.0.1', Version: '1.15.0', Created: new Date().toISOString(), Path: LOCK_ID });
const state = (serial: number) => Buffer.from(JSON.stringify({ version: 4, terraform_version: '1.15.0', serial, lineage: '6f1c3a52-9b7e-4d0a-8c2f-3e5b7a9d1c40', outputs: {}, resources: [] }, null, 2) + '\n');

describe('bench peers: signed requests against statelock, dynalite and s3rver', () => {
  let statelock: AwsServer;
  let dynalite: DataServer;
  let s3rver: DataServer;

  before(async () => {
    [statelock, dynalite, s3rver] = await Promise.all([startAwsServer(), startDynalite(), startS3rver()]);
  });
  after(async () => {
    await statelock?.stop();
    await dynalite?.stopAndRemove();
    await s3rver?.stopAndRemove();
  });

  for (const target of ['statelock', 'dynalite'] as const) {
    test(`${target}: the bench's DynamoDB lock cycle takes the lock, a second holder is refused, and it releases`, async () => {
      const url = target === 'statelock' ? statelock.url : dynalite.url;
      const c = new AwsClient(url, TEST_KEY, 'dynamodb');
      const holder = dynamoLocker(url, 'bench/peers', 0);
      const rival = dynamoLocker(url, 'bench/peers', 0);
      const Key = { LockID: { S: 'bench/peers/client-0/terraform.tfstate' } };
      const item = async () => JSON.parse((await c.dynamo('GetItem', { TableName: LOCK_TABLE, Key, ConsistentRead: true })).body.toString()) as { Item?: { Info: { S: string } } };
      try {
        await createLockTable(c);
        for (let round = 0; round < 2; round++) {
          await holder.lock();
          const held = await item();
          assert.ok(held.Item, `${target} acknowledged a PutItem it does not hold`);
          await assert.rejects(rival.lock(), /PutItem .*: 400 .*ConditionalCheckFailedException/);
          assert.deepEqual(await item(), held, 'a refused PutItem changed the lock');
          await holder.unlock();
          assert.deepEqual(await item(), {});
        }
      } finally {
        c.close();
        holder.close();
        rival.close();
      }
    });
  }

  for (const target of ['s3', 's3rver'] as const) {
    test(`${target}: the bench's signed PutObject stores the state and GetObject returns it byte for byte`, async () => {
      const url = target === 's3' ? statelock.url : s3rver.url;
      const c = new AwsClient(url, target === 's3' ? TEST_KEY : S3RVER_CREDENTIALS, 's3');
      const t = transport(target, url, 'peers');
      try {
        await createBucket(c, 'bench');
        for (const serial of [1, 2]) {
          const body = state(serial);
          await t.put({ body, md5: '', sha256: sha256Hex(body) });
          const got = await c.s3('GET', '/bench/peers/terraform.tfstate');
          assert.equal(got.status, 200);
          assert.ok(got.body.equals(body), `${target} returned other bytes than it acknowledged`);
          assert.equal(await t.get(), body.length);
        }
      } finally {
        c.close();
        t.close();
      }
    });
  }

  test('statelock refuses what the bench signs with the wrong secret, and a body that does not match its signed hash', async () => {
    const wrong = new AwsClient(statelock.url, { ...TEST_KEY, secretAccessKey: 'not-the-secret' }, 'dynamodb');
    const right = new AwsClient(statelock.url, TEST_KEY, 's3');
    try {
      const refused = await wrong.dynamo('PutItem', { TableName: LOCK_TABLE, Item: { LockID: { S: LOCK_ID }, Info: { S: lockInfo('33333333-3333-4333-8333-333333333333') } } });
      assert.equal(refused.status, 400);
      assert.match(refused.body.toString(), /InvalidSignatureException/);
      const body = state(3);
      const tampered = await right.s3('PUT', '/bench/peers/terraform.tfstate', body, sha256Hex(state(4)), { 'content-type': 'application/json' });
      assert.equal(tampered.status, 400, tampered.body.toString());
      const got = await right.s3('GET', '/bench/peers/terraform.tfstate');
      assert.ok(got.body.equals(state(2)), 'a refused PutObject changed the state');
    } finally {
      wrong.close();
      right.close();
    }
  });
});
