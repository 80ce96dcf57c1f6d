import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import {
  CreateTableCommand,
  DeleteItemCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ListTablesCommand,
  PutItemCommand,
  ScanCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { REGION, startAwsServer, TEST_KEY, type AwsServer } from '../support/aws.js';
import { rawRequest, type RawResponse } from '../support/http.js';
import { decodeLockInfoGo, marshalLockInfo, newLineage, newLockInfo, makeState, type Flavor, type LockInfo } from '../support/terraform-client.js';

/**
 * The DynamoDB door through @aws-sdk/client-dynamodb, replaying the exact calls of Terraform's and
 * OpenTofu's `dynamodb_table` locking (reference s3-dynamodb.md §2.1 and §8) against the real server
 * process, plus the table operations, Scan, the error shapes and bad input. Every answer passes
 * through a recording handler so that its x-amz-crc32 can be checked against the bytes received.
 */

const BUCKET = 'acme-terraform-state-123456789012';
const TABLE = 'terraform-state-lock';

interface Answer {
  target: string;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** The SDK's own HTTP handler, keeping a copy of every answer's exact bytes. */
class RecordingHandler extends NodeHttpHandler {
  readonly answers: Answer[] = [];
  override async handle(request: Parameters<NodeHttpHandler['handle']>[0], options?: Parameters<NodeHttpHandler['handle']>[1]) {
    const out = await super.handle(request, options);
    const chunks: Buffer[] = [];
    for await (const c of out.response.body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c));
    const body = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(out.response.headers)) headers[k.toLowerCase()] = String(v);
    this.answers.push({ target: String(request.headers['x-amz-target'] ?? request.headers['X-Amz-Target'] ?? ''), status: out.response.statusCode, headers, body });
    out.response.body = Readable.from([body]);
    return out;
  }
}

function checkAnswerHeaders(a: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }, what: string): void {
  assert.equal(a.headers['x-amz-crc32'], String(crc32(a.body) >>> 0), `${what}: x-amz-crc32 must be the CRC-32 of the body`);
  assert.equal(a.headers['content-type'], 'application/x-amz-json-1.0', what);
  assert.match(String(a.headers['x-amzn-requestid']), /\S/, `${what}: x-amzn-RequestId`);
}

/** A DynamoDB JSON request signed by hand (SigV4), for what the SDK cannot send: bad JSON, odd targets. */
async function signedDynamo(server: AwsServer, target: string | null, body: string): Promise<RawResponse> {
  const host = new URL(server.url).host;
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const date = amzDate.slice(0, 8);
  const headers: Record<string, string> = { 'content-type': 'application/x-amz-json-1.0', host, 'x-amz-date': amzDate, ...(target !== null ? { 'x-amz-target': target } : {}) };
  const names = Object.keys(headers).sort();
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const canonical = ['POST', '/', '', names.map((n) => `${n}:${headers[n]}\n`).join(''), names.join(';'), sha(body)].join('\n');
  const scope = `${date}/${REGION}/dynamodb/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha(canonical)].join('\n');
  let key: Buffer = Buffer.from(`AWS4${TEST_KEY.secretAccessKey}`);
  for (const part of [date, REGION, 'dynamodb', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  const authorization = `AWS4-HMAC-SHA256 Credential=${TEST_KEY.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  const res = await rawRequest(`${server.url}/`, { method: 'POST', headers: { ...headers, Host: host, Authorization: authorization }, body });
  checkAnswerHeaders(res, `raw ${target}`);
  return res;
}

/** Resolves with the SDK error a call rejects with, after checking its name (the __type after '#'). */
async function refused(call: Promise<unknown>, name: string, message?: RegExp): Promise<Error & { $metadata?: { httpStatusCode?: number }; Item?: Record<string, AttributeValue> }> {
  try {
    await call;
  } catch (err) {
    const e = err as Error & { $metadata?: { httpStatusCode?: number } };
    assert.equal(e.name, name, `${e.name}: ${e.message}`);
    assert.equal(e.$metadata?.httpStatusCode, 400);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${name}, the call succeeded`);
}

/**
 * What Terraform's (client.go lockWithDynamoDB / getLockInfoWithDynamoDB / unlockWithDynamoDB / getMD5 /
 * putMD5 / deleteMD5) and OpenTofu's s3 backend send to DynamoDB, call for call.
 */
class DynamoLocker {
  constructor(
    private readonly db: DynamoDBClient,
    readonly flavor: Flavor,
    readonly lockId: string,
    private readonly table = TABLE,
  ) {}

  info(operation = 'OperationTypeApply', id?: string): LockInfo {
    const info = newLockInfo({ operation, who: 'engineer@build-07', version: this.flavor === 'terraform' ? '1.15.0' : '1.10.3', ...(id ? { id } : {}) });
    info.Path = this.lockId;
    return info;
  }

  /** Lock: PutItem with attribute_not_exists(LockID); on any error, the GetItem read-back of the holder. */
  async lock(info: LockInfo): Promise<{ ok: true } | { ok: false; error: Error; holder: LockInfo | null }> {
    try {
      await this.db.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { LockID: { S: this.lockId }, Info: { S: marshalLockInfo(info).toString('utf8') } },
          ConditionExpression: 'attribute_not_exists(LockID)',
        }),
      );
      return { ok: true };
    } catch (error) {
      return { ok: false, error: error as Error, holder: await this.readLockInfo() };
    }
  }

  /** GetItem with ConsistentRead and ProjectionExpression "LockID, Info"; the Info JSON decoded as Go does. */
  async readLockInfo(): Promise<LockInfo | null> {
    const out = await this.db.send(new GetItemCommand({ TableName: this.table, Key: { LockID: { S: this.lockId } }, ConsistentRead: true, ProjectionExpression: 'LockID, Info' }));
    const raw = out.Item?.Info?.S;
    return raw === undefined ? null : decodeLockInfoGo(Buffer.from(raw));
  }

  /** Unlock: read the holder, compare IDs, then DeleteItem (OpenTofu: conditioned on Info = :info). */
  async unlock(id: string): Promise<void> {
    const holder = await this.readLockInfo();
    if (!holder) throw new Error(`no lock info found for: "${this.lockId}" within the DynamoDB table: ${this.table}`);
    if (holder.ID !== id) throw new Error(`lock ID "${id}" does not match existing lock ID "${holder.ID}"`);
    const Key = { LockID: { S: this.lockId } };
    if (this.flavor === 'terraform') {
      await this.db.send(new DeleteItemCommand({ TableName: this.table, Key }));
    } else {
      const info = marshalLockInfo(holder).toString('utf8');
      await this.db.send(new DeleteItemCommand({ TableName: this.table, Key, ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: info } } }));
    }
  }

  async putMD5(body: Buffer): Promise<void> {
    const digest = createHash('md5').update(body).digest('hex');
    await this.db.send(new PutItemCommand({ TableName: this.table, Item: { LockID: { S: `${this.lockId}-md5` }, Digest: { S: digest } } }));
  }

  /** GetItem "LockID, Digest": the hex digest, or null (Terraform's "invalid md5", only logged). */
  async getMD5(): Promise<string | null> {
    const out = await this.db.send(new GetItemCommand({ TableName: this.table, Key: { LockID: { S: `${this.lockId}-md5` } }, ConsistentRead: true, ProjectionExpression: 'LockID, Digest' }));
    const digest = out.Item?.Digest?.S;
    return digest !== undefined && /^[0-9a-f]{32}$/.test(digest) ? digest : null;
  }

  async deleteMD5(): Promise<void> {
    await this.db.send(new DeleteItemCommand({ TableName: this.table, Key: { LockID: { S: `${this.lockId}-md5` } } }));
  }
}

interface LockJson {
  key: string;
  info: Record<string, unknown>;
  acquiredAt: string;
  lastActivityAt: string;
}
interface AuditItem {
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

describe('DynamoDB door through @aws-sdk/client-dynamodb', () => {
  let server: AwsServer;
  let db: DynamoDBClient;
  let handler: RecordingHandler;
  let n = 0;
  before(async () => {
    server = await startAwsServer();
    handler = new RecordingHandler();
    db = new DynamoDBClient({ endpoint: server.url, region: REGION, credentials: TEST_KEY, maxAttempts: 1, requestHandler: handler });
  });
  after(async () => {
    db?.destroy();
    await server?.stop();
  });

  const newKey = (what: string) => `${BUCKET}/sdk/${what}-${++n}/terraform.tfstate`;
  const lockOf = async (key: string): Promise<LockJson | null> => {
    const r = await rawRequest(`${server.url}/api/v1/locks/${key}`);
    if (r.status === 404) return null;
    assert.equal(r.status, 200, r.text);
    return r.json<LockJson>();
  };
  const audit = async (key: string, action?: string) =>
    (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}${action ? `&action=${action}` : ''}`)).json<{ items: AuditItem[] }>().items;
  const writeState = async (key: string, body: Buffer, lockId?: string) => {
    const r = await rawRequest(`${server.url}/state/${key}${lockId ? `?ID=${lockId}` : ''}`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200, r.text);
  };
  const getItem = (lockId: string, extra: Record<string, unknown> = {}) => db.send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: lockId } }, ...extra }));

  for (const flavor of ['terraform', 'opentofu'] as const) {
    describe(`${flavor}'s dynamodb_table calls`, () => {
      test('lock: PutItem attribute_not_exists(LockID) answers {} and takes statelock’s lock, Info stored verbatim', async () => {
        const key = newKey(`${flavor}-lock`);
        const locker = new DynamoLocker(db, flavor, key);
        const info = locker.info();
        assert.deepEqual(await locker.lock(info), { ok: true });
        const held = await lockOf(key);
        assert.ok(held, 'the lock is held in statelock');
        assert.equal(held.info.ID, info.ID);
        const item = await getItem(key);
        assert.deepEqual(item.Item, { LockID: { S: key }, Info: { S: marshalLockInfo(info).toString('utf8') } });
        const acquired = await audit(key, 'lock.acquire');
        assert.equal(acquired.length, 1);
        assert.equal(acquired[0]!.detail.door, 'dynamodb');
      });

      test('a held lock: PutItem fails with ConditionalCheckFailedException, and the read-back returns the holder whose ID parses (so -lock-timeout retries)', async () => {
        const key = newKey(`${flavor}-held`);
        const first = new DynamoLocker(db, flavor, key);
        const holderInfo = first.info('OperationTypeApply');
        assert.equal((await first.lock(holderInfo)).ok, true);
        const second = new DynamoLocker(db, flavor, key);
        const attempt = await second.lock(second.info('OperationTypePlan'));
        assert.equal(attempt.ok, false);
        if (attempt.ok) return;
        assert.equal(attempt.error.name, 'ConditionalCheckFailedException');
        assert.equal(attempt.error.message, 'The conditional request failed');
        assert.deepEqual(attempt.holder, holderInfo);
        assert.equal((await lockOf(key))?.info.ID, holderInfo.ID, 'the holder keeps the lock');
      });

      test('unlock: GetItem then DeleteItem releases the lock (audited as a release through dynamodb)', async () => {
        const key = newKey(`${flavor}-unlock`);
        const locker = new DynamoLocker(db, flavor, key);
        const info = locker.info();
        assert.equal((await locker.lock(info)).ok, true);
        await locker.unlock(info.ID);
        assert.equal(await lockOf(key), null);
        assert.deepEqual((await getItem(key, { ConsistentRead: true, ProjectionExpression: 'LockID, Info' })).Item, undefined);
        const released = await audit(key, 'lock.release');
        assert.equal(released.length, 1);
        assert.equal(released[0]!.lockId, info.ID);
        assert.equal(released[0]!.detail.door, 'dynamodb');
        // Retried unlock of a free lock: the read-back finds nothing, which the tool reports; DeleteItem itself is harmless.
        await assert.rejects(locker.unlock(info.ID), /no lock info found/);
      });

      test('the holder re-sending its PutItem (a retry whose answer was lost) succeeds and keeps one lock', async () => {
        const key = newKey(`${flavor}-retry`);
        const locker = new DynamoLocker(db, flavor, key);
        const info = locker.info();
        assert.equal((await locker.lock(info)).ok, true);
        assert.equal((await locker.lock(info)).ok, true);
        assert.equal((await audit(key, 'lock.acquire')).length, 1);
        await locker.unlock(info.ID);
        assert.equal(await lockOf(key), null);
      });

      test('apply: digest PutItem/GetItem around state writes over the http door; the digest is the stored state’s MD5', async () => {
        const key = newKey(`${flavor}-digest`);
        const locker = new DynamoLocker(db, flavor, key);
        assert.equal(await locker.getMD5(), null, 'no state yet: no digest (Terraform only logs it)');
        const info = locker.info();
        assert.equal((await locker.lock(info)).ok, true);
        const lineage = newLineage();
        let last: Buffer = Buffer.alloc(0);
        for (const serial of [1, 2]) {
          last = makeState({ serial, lineage, flavor });
          await writeState(key, last, info.ID);
          await locker.putMD5(last);
          assert.equal(await locker.getMD5(), createHash('md5').update(last).digest('hex'));
        }
        // A stale digest written by someone else changes nothing: the digest always follows the stored state.
        await db.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: `${key}-md5` }, Digest: { S: '0'.repeat(32) } } }));
        assert.equal(await locker.getMD5(), createHash('md5').update(last).digest('hex'));
        const full = await getItem(`${key}-md5`);
        assert.deepEqual(Object.keys(full.Item ?? {}).sort(), ['Digest', 'LockID']);
        await locker.unlock(info.ID);
        // workspace delete: DeleteObject (here the http DELETE), then the digest DeleteItem.
        const del = await rawRequest(`${server.url}/state/${key}`, { method: 'DELETE' });
        assert.equal(del.status, 200, del.text);
        await locker.deleteMD5();
        assert.equal(await locker.getMD5(), null);
        assert.equal((await getItem(`${key}-md5`)).Item, undefined);
      });

      test('workspaces: env:/dev/... keys are their own locks beside the default workspace', async () => {
        const base = `sdk/${flavor}-ws-${++n}/terraform.tfstate`;
        const def = new DynamoLocker(db, flavor, `${BUCKET}/${base}`);
        const dev = new DynamoLocker(db, flavor, `${BUCKET}/env:/dev/${base}`);
        const defInfo = def.info();
        const devInfo = dev.info('init');
        assert.equal((await def.lock(defInfo)).ok, true);
        assert.equal((await dev.lock(devInfo)).ok, true);
        assert.equal((await lockOf(`${BUCKET}/env:/dev/${base}`))?.info.Operation, 'init');
        await writeState(`${BUCKET}/env:/dev/${base}`, makeState({ serial: 1, lineage: newLineage(), flavor }), devInfo.ID);
        assert.match((await dev.getMD5()) ?? '', /^[0-9a-f]{32}$/);
        assert.equal(await def.getMD5(), null);
        await dev.unlock(devInfo.ID);
        assert.equal(await lockOf(`${BUCKET}/env:/dev/${base}`), null);
        assert.equal((await lockOf(`${BUCKET}/${base}`))?.info.ID, defInfo.ID);
        await def.unlock(defInfo.ID);
      });
    });
  }

  test('OpenTofu’s Info = :info with stale lock info fails the condition and leaves the lock held', async () => {
    const key = newKey('tofu-stale');
    const locker = new DynamoLocker(db, 'opentofu', key);
    const info = locker.info();
    assert.equal((await locker.lock(info)).ok, true);
    const stale = marshalLockInfo({ ...info, Operation: 'OperationTypePlan' }).toString('utf8');
    const err = await refused(
      db.send(new DeleteItemCommand({ TableName: TABLE, Key: { LockID: { S: key } }, ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: stale } }, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })),
      'ConditionalCheckFailedException',
      /^The conditional request failed$/,
    );
    assert.deepEqual(err.Item, { LockID: { S: key }, Info: { S: marshalLockInfo(info).toString('utf8') } }, 'ALL_OLD on failure returns the holder item');
    assert.equal((await lockOf(key))?.info.ID, info.ID);
    await locker.unlock(info.ID);
  });

  test('ReturnValues ALL_OLD on DeleteItem returns the released item; GetItem honours #name projections', async () => {
    const key = newKey('all-old');
    const locker = new DynamoLocker(db, 'terraform', key);
    const info = locker.info();
    assert.equal((await locker.lock(info)).ok, true);
    const projected = await getItem(key, { ProjectionExpression: '#i', ExpressionAttributeNames: { '#i': 'Info' } });
    assert.deepEqual(projected.Item, { Info: { S: marshalLockInfo(info).toString('utf8') } });
    const out = await db.send(new DeleteItemCommand({ TableName: TABLE, Key: { LockID: { S: key } }, ReturnValues: 'ALL_OLD' }));
    assert.deepEqual(out.Attributes, { LockID: { S: key }, Info: { S: marshalLockInfo(info).toString('utf8') } });
    assert.equal(await lockOf(key), null);
  });

  test('an unconditional PutItem takes a free lock and is refused (ValidationException) over another holder', async () => {
    const key = newKey('unconditional');
    const a = new DynamoLocker(db, 'terraform', key);
    const infoA = a.info();
    await db.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: marshalLockInfo(infoA).toString('utf8') } } }));
    assert.equal((await lockOf(key))?.info.ID, infoA.ID);
    const infoB = a.info();
    await refused(
      db.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: marshalLockInfo(infoB).toString('utf8') } } })),
      'ValidationException',
      new RegExp(`statelock refuses an unconditional PutItem over the lock on .* held by ID "${infoA.ID}"`),
    );
    assert.equal((await lockOf(key))?.info.ID, infoA.ID, 'the holder keeps its lock');
    // The holder's own unconditional put succeeds.
    await db.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: marshalLockInfo(infoA).toString('utf8') } } }));
    await a.unlock(infoA.ID);
  });

  test('tables: CreateTable/DescribeTable/ListTables/DeleteTable; DeleteTable never releases a lock; item operations work on any name', async () => {
    const name = `locks-${++n}`;
    const created = await db.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    const t = created.TableDescription!;
    assert.equal(t.TableName, name);
    assert.equal(t.TableStatus, 'ACTIVE');
    assert.deepEqual(t.KeySchema, [{ AttributeName: 'LockID', KeyType: 'HASH' }]);
    assert.deepEqual(t.AttributeDefinitions, [{ AttributeName: 'LockID', AttributeType: 'S' }]);
    assert.equal(t.TableArn, `arn:aws:dynamodb:${REGION}:000000000000:table/${name}`);
    assert.equal(t.BillingModeSummary?.BillingMode, 'PAY_PER_REQUEST');
    assert.ok(t.CreationDateTime instanceof Date && Math.abs(t.CreationDateTime.getTime() - Date.now()) < 600_000, String(t.CreationDateTime));
    assert.equal(typeof t.ItemCount, 'number');
    assert.equal(typeof t.TableSizeBytes, 'number');

    await refused(db.send(new CreateTableCommand({ TableName: name, AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], BillingMode: 'PAY_PER_REQUEST' })), 'ResourceInUseException');
    await refused(
      db.send(new CreateTableCommand({ TableName: `${name}-x`, AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }], BillingMode: 'PAY_PER_REQUEST' })),
      'ValidationException',
      /statelock lock tables are keyed by LockID \(S\)/,
    );
    await refused(
      db.send(new CreateTableCommand({ TableName: `${name}-p`, AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }] })),
      'ValidationException',
      /ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED/,
    );
    const provisioned = await db.send(
      new CreateTableCommand({ TableName: `${name}-p`, AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], ProvisionedThroughput: { ReadCapacityUnits: 5, WriteCapacityUnits: 5 } }),
    );
    assert.equal(provisioned.TableDescription?.ProvisionedThroughput?.ReadCapacityUnits, 5);
    assert.equal(provisioned.TableDescription?.BillingModeSummary?.BillingMode, 'PROVISIONED');

    const described = await db.send(new DescribeTableCommand({ TableName: name }));
    assert.equal(described.Table?.TableStatus, 'ACTIVE');
    const listed = await db.send(new ListTablesCommand({}));
    assert.ok(listed.TableNames?.includes(name) && listed.TableNames.includes(`${name}-p`), JSON.stringify(listed.TableNames));
    const firstPage = await db.send(new ListTablesCommand({ Limit: 1 }));
    assert.equal(firstPage.TableNames?.length, 1);
    assert.equal(firstPage.LastEvaluatedTableName, firstPage.TableNames?.[0]);

    // A lock taken through the recorded table is the same lock seen through any other name.
    const key = newKey('tables');
    const locker = new DynamoLocker(db, 'terraform', key, name);
    const info = locker.info();
    assert.equal((await locker.lock(info)).ok, true);
    assert.equal((await new DynamoLocker(db, 'terraform', key, 'never-created').readLockInfo())?.ID, info.ID);
    const deleted = await db.send(new DeleteTableCommand({ TableName: name }));
    assert.equal(deleted.TableDescription?.TableStatus, 'DELETING');
    assert.equal((await lockOf(key))?.info.ID, info.ID, 'DeleteTable never releases locks');
    await refused(db.send(new DescribeTableCommand({ TableName: name })), 'ResourceNotFoundException', /Requested resource not found/);
    await refused(db.send(new DeleteTableCommand({ TableName: name })), 'ResourceNotFoundException');
    await refused(db.send(new DescribeTableCommand({ TableName: 'never-created' })), 'ResourceNotFoundException');
    assert.equal((await locker.readLockInfo())?.ID, info.ID, 'item operations still work on the deleted name');
    await locker.unlock(info.ID);
  });

  test('errors carry DynamoDB’s __type: Serialization, UnknownOperation, Validation, ResourceNotFound, ConditionalCheckFailed', async () => {
    const key = newKey('errors');
    const cases: Array<[string | null, string, string]> = [
      ['DynamoDB_20120810.GetItem', '{"TableName": "t", ', 'SerializationException'],
      ['DynamoDB_20120810.GetItem', '[1, 2]', 'SerializationException'],
      ['DynamoDB_20120810.UpdateItem', '{}', 'UnknownOperationException'],
      ['DynamoDB_20111205.GetItem', '{}', 'UnknownOperationException'],
      [null, '{}', 'UnknownOperationException'],
      ['DynamoDB_20120810.GetItem', JSON.stringify({ TableName: TABLE, Key: { LockID: { N: '1' } } }), 'ValidationException'],
      ['DynamoDB_20120810.DescribeTable', JSON.stringify({ TableName: 'no-such-table' }), 'ResourceNotFoundException'],
    ];
    for (const [target, body, type] of cases) {
      const r = await signedDynamo(server, target, body);
      assert.equal(r.status, 400, `${target} ${body}: ${r.text}`);
      const doc = r.json<{ __type: string; message: string }>();
      assert.equal(doc.__type, `com.amazonaws.dynamodb.v20120810#${type}`, `${target} ${body}`);
      assert.equal(r.headers['x-amzn-errortype'], type);
      assert.match(doc.message, /\S/);
    }
    const ok = await signedDynamo(server, 'DynamoDB_20120810.GetItem', JSON.stringify({ TableName: TABLE, Key: { LockID: { S: key } } }));
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '{}', 'a missing item is exactly {}');
  });

  test('bad input is refused with the DynamoDB error and leaves the lock exactly as it was', async () => {
    const key = newKey('bad-input');
    const locker = new DynamoLocker(db, 'terraform', key);
    const info = locker.info();
    assert.equal((await locker.lock(info)).ok, true);
    const before = await lockOf(key);
    const other = marshalLockInfo(locker.info()).toString('utf8');
    const Key = { LockID: { S: key } };
    const attempts: Array<[string, Record<string, unknown>, string, RegExp]> = [
      ['PutItem', { TableName: TABLE, Item: { LockID: { N: '1' }, Info: { S: other } }, ConditionExpression: 'attribute_not_exists(LockID)' }, 'ValidationException', /Type mismatch for key LockID expected: S actual: N/],
      ['PutItem', { TableName: TABLE, Item: { LockID: { S: key }, Info: { S: other }, Who: { S: 'x' } }, ConditionExpression: 'attribute_not_exists(LockID)' }, 'ValidationException', /statelock lock tables hold lock items/],
      ['PutItem', { TableName: TABLE, Item: { LockID: { S: key }, Info: { S: 'not json' } }, ConditionExpression: 'attribute_not_exists(LockID)' }, 'ValidationException', /invalid lock info/],
      ['PutItem', { TableName: TABLE, Item: { LockID: { S: key }, Info: { S: other } }, ConditionExpression: 'attribute_exists(LockID)' }, 'ValidationException', /statelock supports only attribute_not_exists\(LockID\)/],
      ['PutItem', { TableName: TABLE, Item: { LockID: { S: key }, Info: { S: other } }, Expected: { LockID: { Exists: false } } }, 'ValidationException', /legacy Expected/],
      ['PutItem', { TableName: TABLE, Item: { LockID: { S: key }, Info: { S: other } }, ConditionExpression: 'attribute_not_exists(LockID)', ExpressionAttributeValues: { ':x': { S: 'y' } } }, 'ValidationException', /unused in expressions: keys: \{:x\}/],
      ['DeleteItem', { TableName: TABLE }, 'ValidationException', /Value null at 'key'/],
      ['DeleteItem', { TableName: TABLE, Key: { LockID: { N: '1' } } }, 'ValidationException', /does not match the schema/],
      ['DeleteItem', { TableName: TABLE, Key: { LockID: { S: key }, Info: { S: 'x' } } }, 'ValidationException', /does not match the schema/],
      ['DeleteItem', { TableName: TABLE, Key, ConditionExpression: 'begins_with(Info, :p)', ExpressionAttributeValues: { ':p': { S: '{' } } }, 'ValidationException', /statelock supports .* only; the function begins_with is not supported/],
      ['DeleteItem', { TableName: TABLE, Key, ConditionExpression: 'Info = :info' }, 'ValidationException', /attribute value used in expression is not defined; attribute value: :info/],
      ['DeleteItem', { TableName: TABLE, Key, ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: other } } }, 'ConditionalCheckFailedException', /^The conditional request failed$/],
      ['DeleteItem', { TableName: 'x', Key }, 'ValidationException', /Member must have length greater than or equal to 3/],
      ['GetItem', { TableName: TABLE, Key, ProjectionExpression: 'Info.ID' }, 'ValidationException', /nested document path/],
      ['Scan', { TableName: TABLE, FilterExpression: 'attribute_exists(Info)' }, 'ValidationException', /Scan does not support FilterExpression/],
      ['Scan', { TableName: TABLE, Limit: 0 }, 'ValidationException', /greater than or equal to 1/],
    ];
    for (const [op, body, type, message] of attempts) {
      const r = await signedDynamo(server, `DynamoDB_20120810.${op}`, JSON.stringify(body));
      assert.equal(r.status, 400, `${op} ${JSON.stringify(body)}: ${r.text}`);
      const doc = r.json<{ __type: string; message: string }>();
      assert.equal(doc.__type, `com.amazonaws.dynamodb.v20120810#${type}`, `${op} ${JSON.stringify(body)}: ${doc.message}`);
      assert.match(doc.message, message, `${op} ${JSON.stringify(body)}`);
      const now = await lockOf(key);
      assert.deepEqual({ info: now?.info, acquiredAt: now?.acquiredAt, lastActivityAt: now?.lastActivityAt }, { info: before?.info, acquiredAt: before?.acquiredAt, lastActivityAt: before?.lastActivityAt }, `${op} changed the lock`);
    }
    assert.deepEqual((await audit(key)).filter((a) => a.outcome === 'ok').map((a) => a.action), ['lock.acquire'], 'nothing but the acquire took effect');
    await locker.unlock(info.ID);
  });

  test('every answer carried x-amz-crc32 = CRC-32 of its exact bytes, the JSON 1.0 content type and a request ID', () => {
    assert.ok(handler.answers.length >= 40, `only ${handler.answers.length} answers recorded`);
    for (const a of handler.answers) checkAnswerHeaders(a, `${a.target} → ${a.status}`);
    assert.ok(handler.answers.some((a) => a.status === 400), 'errors were checked too');
  });
});

describe('Scan over a fresh server: every lock and digest item, ordered by LockID, paginated', () => {
  let server: AwsServer;
  let db: DynamoDBClient;
  before(async () => {
    server = await startAwsServer();
    db = new DynamoDBClient({ endpoint: server.url, region: REGION, credentials: TEST_KEY, maxAttempts: 1 });
  });
  after(async () => {
    db?.destroy();
    await server?.stop();
  });

  test('lock items and the digest items of live states, one sequence; Limit/ExclusiveStartKey; LastEvaluatedKey only when truncated', async () => {
    const keys = ['a/one/terraform.tfstate', 'a/two/terraform.tfstate', 'b/env:/dev/terraform.tfstate'].map((k) => `${BUCKET}-${k}`);
    const infos: Record<string, string> = {};
    for (const key of keys.slice(0, 2)) {
      const locker = new DynamoLocker(db, 'terraform', key);
      const info = locker.info();
      infos[key] = marshalLockInfo(info).toString('utf8');
      assert.equal((await locker.lock(info)).ok, true);
    }
    const states: Record<string, Buffer> = {};
    for (const key of [keys[1]!, keys[2]!]) {
      states[key] = makeState({ serial: 1, lineage: newLineage() });
      const lockId = key === keys[1] ? (JSON.parse(infos[key]!) as { ID: string }).ID : undefined;
      const r = await rawRequest(`${server.url}/state/${key}${lockId ? `?ID=${lockId}` : ''}`, { method: 'POST', body: states[key] });
      assert.equal(r.status, 200, r.text);
    }
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
    const expected = [
      { LockID: { S: keys[0]! }, Info: { S: infos[keys[0]!]! } },
      { LockID: { S: keys[1]! }, Info: { S: infos[keys[1]!]! } },
      { LockID: { S: `${keys[1]!}-md5` }, Digest: { S: md5(states[keys[1]!]!) } },
      { LockID: { S: `${keys[2]!}-md5` }, Digest: { S: md5(states[keys[2]!]!) } },
    ];

    const all = await db.send(new ScanCommand({ TableName: TABLE }));
    assert.deepEqual(all.Items, expected);
    assert.equal(all.Count, 4);
    assert.equal(all.ScannedCount, 4);
    assert.equal(all.LastEvaluatedKey, undefined, 'no LastEvaluatedKey when nothing is left');

    const pages: Array<Record<string, AttributeValue>[]> = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await db.send(new ScanCommand({ TableName: TABLE, Limit: 3, ...(start ? { ExclusiveStartKey: start } : {}) }));
      pages.push(page.Items ?? []);
      start = page.LastEvaluatedKey;
      if (start) assert.deepEqual(start, { LockID: (page.Items ?? [])[(page.Items ?? []).length - 1]!.LockID });
    } while (start);
    assert.deepEqual(pages.map((p) => p.length), [3, 1]);
    assert.deepEqual(pages.flat(), expected);

    const exact = await db.send(new ScanCommand({ TableName: TABLE, Limit: 4 }));
    assert.equal(exact.LastEvaluatedKey, undefined, 'a page that ends exactly at the end is not truncated');

    const projected = await db.send(new ScanCommand({ TableName: 'any-name-at-all', ProjectionExpression: 'LockID' }));
    assert.deepEqual(projected.Items, expected.map((i) => ({ LockID: i.LockID })));
    const counted = await db.send(new ScanCommand({ TableName: TABLE, Select: 'COUNT' }));
    assert.equal(counted.Count, 4);
    assert.equal(counted.Items, undefined);

    const described = await db.send(new CreateTableCommand({ TableName: TABLE, AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], BillingMode: 'PAY_PER_REQUEST' }));
    assert.equal(described.TableDescription?.ItemCount, 4, 'ItemCount counts lock and digest items');
    assert.ok((described.TableDescription?.TableSizeBytes ?? 0) > 0);
  });
});
