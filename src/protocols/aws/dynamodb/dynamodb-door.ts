import type { ServerResponse } from 'node:http';
import { crc32 } from 'node:zlib';
import { awsErrorName, StatelockError, type ErrorCode, type ErrorParams } from '../../../server/errors.js';
import type { LockTableRecord } from '../../../store/store.js';
import type { AwsDoorDeps, AwsRequest } from '../aws-request.js';
import {
  isPlainObject,
  itemSizeBytes,
  optionalBoolean,
  optionalEnum,
  optionalInteger,
  optionalString,
  parseNames,
  parseValues,
  tableNameOf,
  validation,
  type Item,
} from './attribute-values.js';
import { evaluateCondition, ExpressionContext, parseCondition, parseProjection, project, type Condition } from './condition-expression.js';
import {
  compareLockIds,
  digestItem,
  lockDeleteCondition,
  lockIdOf,
  lockItem,
  lockPutCondition,
  parsePutItem,
  refFromKey,
  refOf,
  type LockItemRef,
} from './lock-items.js';
import { parseLockInfo } from '../../../lock/lock-info.js';
import { STATELOCK_ACCOUNT_ID } from '../sts/sts-door.js';
import { isAllowed } from '../../../auth/permissions.js';

const TARGET_PREFIX = 'DynamoDB_20120810.';
const ERROR_NS = 'com.amazonaws.dynamodb.v20120810#';
/** DynamoDB's cap on the data one Scan page returns. */
const SCAN_PAGE_BYTES = 1024 * 1024;
const STORE_PAGE = 1000;

/**
 * A DynamoDB refusal that carries the item a `ReturnValuesOnConditionCheckFailure: ALL_OLD` asked for
 * (rendered as the error body's `Item`).
 */
export class DynamoDbRefusal extends StatelockError {
  constructor(
    code: ErrorCode,
    params: ErrorParams,
    holderBody: string | undefined,
    readonly item: Item | undefined,
  ) {
    super(code, params, holderBody);
  }
}

type Request = Record<string, unknown>;
type Answer = Record<string, unknown>;

/**
 * The DynamoDB door (AWS JSON 1.0): the lock-table operations Terraform's and OpenTofu's `dynamodb_table`
 * locking make, and what an operator types with `aws dynamodb`. Every table name is a view of the same
 * locks (see lock-items.ts); tables made with CreateTable are only recorded, for DescribeTable/ListTables.
 */
export class DynamoDbDoor {
  private readonly ops: Record<string, (req: Request, r: AwsRequest) => Promise<Answer>> = {
    GetItem: (req, r) => this.getItem(req, r),
    PutItem: (req, r) => this.putItem(req, r),
    DeleteItem: (req, r) => this.deleteItem(req, r),
    Scan: (req, r) => this.scan(req, r),
    CreateTable: (req, r) => this.createTable(req, r),
    DescribeTable: (req, r) => this.describeTable(req, r),
    ListTables: (req) => this.listTables(req),
    DeleteTable: (req, r) => this.deleteTable(req, r),
  };

  constructor(private readonly deps: AwsDoorDeps) {}

  async handle(r: AwsRequest): Promise<void> {
    const header = r.ctx.req.headers['x-amz-target'];
    const target = (Array.isArray(header) ? header.join(',') : header) ?? '';
    const op = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
    const handler = Object.hasOwn(this.ops, op) ? this.ops[op] : undefined;
    if (!handler) throw new StatelockError('DYNAMODB_UNKNOWN_OPERATION', { target: target || '(no X-Amz-Target header)' });
    let answer: Answer;
    try {
      answer = await handler(parseRequestBody(r.body), r);
    } catch (err) {
      // Absurdly nested input (expressions, L/M values) must be a refusal, never a stack overflow's 500.
      if (err instanceof RangeError) throw new StatelockError('DYNAMODB_VALIDATION', { reason: 'the request nests too deeply (expressions and attribute values are limited to 32 levels)' });
      throw err;
    }
    send(r.ctx.res, 200, answer, r.requestId);
  }

  /**
   * Renders a refusal as DynamoDB does: 400 for every client error (the code's own status otherwise),
   * `{"__type":"com.amazonaws.dynamodb.v20120810#<Name>","message":"…"}`, X-Amzn-ErrorType.
   */
  static sendError(res: ServerResponse, err: StatelockError, requestId: string): void {
    const name = awsErrorName(err.code, 'dynamodb') ?? err.code;
    const status = err.status >= 400 && err.status < 500 ? 400 : err.status;
    const body: Answer = { __type: ERROR_NS + name, message: err.message };
    if (err instanceof DynamoDbRefusal && err.item) body.Item = err.item;
    send(res, status, body, requestId, { 'X-Amzn-ErrorType': name });
  }

  /* ------------------------------------------------------------------ items */

  private async getItem(req: Request, r: AwsRequest): Promise<Answer> {
    tableNameOf(req);
    const ref = refFromKey(req.Key, 'Key');
    r.ctx.authorize('read', ref.key);
    optionalBoolean(req, 'ConsistentRead');
    optionalEnum(req, 'ReturnConsumedCapacity', ['INDEXES', 'TOTAL', 'NONE']);
    const ctx = expressionContext(req, 'GetItem', { projection: true, condition: false });
    const projection = projectionOf(req, ctx);
    ctx.assertAllUsed();
    const item = await this.readItem(ref);
    return item ? { Item: project(item, projection) } : {};
  }

  private async putItem(req: Request, r: AwsRequest): Promise<Answer> {
    tableNameOf(req);
    refuseLegacyConditions(req);
    const value = parsePutItem(req.Item);
    authorizeItemChange(r, value.ref);
    const returnValues = returnValuesOf(req);
    const onFailure = optionalEnum(req, 'ReturnValuesOnConditionCheckFailure', ['ALL_OLD', 'NONE']) === 'ALL_OLD';
    acceptReportingMembers(req);
    const ctx = expressionContext(req, 'PutItem', { projection: false, condition: true });
    const cond = conditionOf(req, ctx);
    ctx.assertAllUsed();

    if (value.kind === 'digest') {
      // The digest is always computed from the stored state: a put is checked, then changes nothing.
      const current = await this.readItem(value.ref);
      if (cond && !evaluateCondition(cond, current, ctx)) throw conditionFailed(onFailure ? current : null);
      return returnValues && current ? { Attributes: current } : {};
    }

    const mode = lockPutCondition(cond);
    const { key } = value.ref;
    try {
      const result = await this.deps.locks.lock(key, Buffer.from(value.info, 'utf8'), r.ctx.client, { door: 'dynamodb' });
      return returnValues && result.outcome === 'reacquired' ? { Attributes: lockItem(result.lock) } : {};
    } catch (err) {
      if (!(err instanceof StatelockError && err.code === 'STATE_LOCKED')) throw err;
      if (mode === 'if-free') throw conditionFailed(onFailure && err.holderBody !== undefined ? { LockID: { S: key }, Info: { S: err.holderBody } } : null);
      const p = err.params;
      throw validation(
        `statelock refuses an unconditional PutItem over the lock on ${key}: it is held by ID "${p.holder}" (${p.operation}, ${p.who}, since ${p.created}), and overwriting another holder's lock would let two runs write the state at once. ` +
          'Release it first (DeleteItem, or terraform force-unlock), or put with ConditionExpression attribute_not_exists(LockID). A put when the lock is free, or by its own holder\'s ID, succeeds.',
      );
    }
  }

  private async deleteItem(req: Request, r: AwsRequest): Promise<Answer> {
    tableNameOf(req);
    refuseLegacyConditions(req);
    const ref = refFromKey(req.Key, 'Key');
    authorizeItemChange(r, ref);
    const returnValues = returnValuesOf(req);
    const onFailure = optionalEnum(req, 'ReturnValuesOnConditionCheckFailure', ['ALL_OLD', 'NONE']) === 'ALL_OLD';
    acceptReportingMembers(req);
    const ctx = expressionContext(req, 'DeleteItem', { projection: false, condition: true });
    const cond = conditionOf(req, ctx);
    ctx.assertAllUsed();

    if (ref.kind === 'digest') {
      // Deleting the digest changes nothing: it reappears from the state for as long as the state lives.
      const current = await this.readItem(ref);
      if (cond && !evaluateCondition(cond, current, ctx)) throw conditionFailed(onFailure ? current : null);
      return returnValues && current ? { Attributes: current } : {};
    }

    const { expectedInfo, mustBeHeld } = lockDeleteCondition(cond, ctx);
    const how = expectedInfo !== undefined ? 'DynamoDB DeleteItem with ConditionExpression Info = :info' : 'DynamoDB DeleteItem';
    const id = expectedInfo !== undefined ? idOf(expectedInfo) : null;
    let result;
    try {
      const mayForceUnlock = { allowed: isAllowed(r.ctx.principal.grants, 'force-unlock', ref.key), principal: r.ctx.principal.name };
      result = await this.deps.locks.releaseThroughDoor(ref.key, { door: 'dynamodb', id, mayForceUnlock, ...(expectedInfo !== undefined ? { expectedInfo } : {}) }, r.ctx.client, how);
    } catch (err) {
      if (!(err instanceof StatelockError)) throw err;
      const holder = onFailure && err.holderBody !== undefined ? { LockID: { S: ref.key }, Info: { S: err.holderBody } } : null;
      if (err.code === 'HOLDER_ALIVE') throw new DynamoDbRefusal('HOLDER_ALIVE', err.params, err.holderBody, holder ?? undefined);
      if (err.code === 'LOCK_ID_MISMATCH' || err.code === 'DYNAMODB_CONDITION_FAILED') throw conditionFailed(holder);
      throw err;
    }
    if (result.outcome === 'already-free') {
      if (mustBeHeld) throw conditionFailed(null);
      return {};
    }
    return returnValues && result.previous ? { Attributes: lockItem(result.previous) } : {};
  }

  private async scan(req: Request, r: AwsRequest): Promise<Answer> {
    tableNameOf(req);
    for (const member of ['FilterExpression', 'ScanFilter', 'ConditionalOperator', 'IndexName', 'Segment', 'TotalSegments']) {
      if (req[member] !== undefined && req[member] !== null) {
        throw validation(`statelock's Scan does not support ${member}: it returns every lock item and every digest item (filter on the client, e.g. with the CLI's --query)`);
      }
    }
    optionalBoolean(req, 'ConsistentRead');
    optionalEnum(req, 'ReturnConsumedCapacity', ['INDEXES', 'TOTAL', 'NONE']);
    const limit = optionalInteger(req, 'Limit', 1);
    const select = optionalEnum(req, 'Select', ['ALL_ATTRIBUTES', 'ALL_PROJECTED_ATTRIBUTES', 'SPECIFIC_ATTRIBUTES', 'COUNT']) ?? 'ALL_ATTRIBUTES';
    const ctx = expressionContext(req, 'Scan', { projection: true, condition: false });
    const projection = projectionOf(req, ctx);
    ctx.assertAllUsed();
    if (select === 'ALL_PROJECTED_ATTRIBUTES') throw validation('ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName; statelock lock tables have no indexes');
    if (select === 'SPECIFIC_ATTRIBUTES' && projection === null) throw validation('SPECIFIC_ATTRIBUTES needs a ProjectionExpression (or AttributesToGet)');
    if (select !== 'SPECIFIC_ATTRIBUTES' && select !== 'ALL_ATTRIBUTES' && projection !== null) {
      throw validation(`Cannot specify the ProjectionExpression or AttributesToGet when choosing to get ${select}`);
    }
    const start = req.ExclusiveStartKey === undefined || req.ExclusiveStartKey === null ? null : refFromKey(req.ExclusiveStartKey, 'ExclusiveStartKey').lockId;

    const all = await this.readableItems(r);
    let i = start === null ? 0 : firstAfter(all, start);
    const page: Item[] = [];
    let bytes = 0;
    while (i < all.length && (limit === undefined || page.length < limit)) {
      const size = itemSizeBytes(all[i]!);
      if (page.length > 0 && bytes + size > SCAN_PAGE_BYTES) break;
      bytes += size;
      page.push(all[i]!);
      i++;
    }
    const answer: Answer = {};
    if (select !== 'COUNT') answer.Items = page.map((item) => project(item, projection));
    answer.Count = page.length;
    answer.ScannedCount = page.length;
    if (i < all.length && page.length > 0) answer.LastEvaluatedKey = { LockID: { S: lockIdOf(page[page.length - 1]!) } };
    return answer;
  }

  /** The item a LockID names as it is now: the held lock, or the live state's digest; null when none. */
  private async readItem(ref: LockItemRef): Promise<Item | null> {
    if (ref.kind === 'lock') {
      const lock = await this.deps.store.getLock(ref.key);
      return lock ? lockItem(lock) : null;
    }
    const current = await this.deps.store.readCurrent(ref.key);
    return current ? digestItem(ref.key, current.meta.md5) : null;
  }

  /** The items the principal may read (read on the item's state key): what Scan and DescribeTable's ItemCount see. */
  private async readableItems(r: AwsRequest): Promise<Item[]> {
    const all = await this.allItems();
    const grants = r.ctx.principal.grants;
    if (isAllowed(grants, 'read', null)) return all;
    return all.filter((item) => isAllowed(grants, 'read', refOf(lockIdOf(item)).key));
  }

  /** Every item of a lock table — each held lock, each live state's digest — ordered by LockID. */
  private async allItems(): Promise<Item[]> {
    const items: Item[] = [];
    let after: string | null = null;
    do {
      const page = await this.deps.store.listLocks({ limit: STORE_PAGE, ...(after !== null ? { after } : {}) });
      // A key ending in -md5 is shadowed by the digest item of the key without it (see lock-items.ts).
      for (const lock of page.items) if (!lock.key.endsWith('-md5')) items.push(lockItem(lock));
      after = page.next;
    } while (after !== null);
    do {
      const page = await this.deps.store.listStates({ limit: STORE_PAGE, ...(after !== null ? { after } : {}) });
      for (const s of page.items) items.push(digestItem(s.key, s.current.md5));
      after = page.next;
    } while (after !== null);
    return items.sort((a, b) => compareLockIds(lockIdOf(a), lockIdOf(b)));
  }

  /* ----------------------------------------------------------------- tables */

  private async createTable(req: Request, r: AwsRequest): Promise<Answer> {
    r.ctx.authorize('admin', null);
    const name = tableNameOf(req);
    for (const member of ['GlobalSecondaryIndexes', 'LocalSecondaryIndexes']) {
      if (req[member] !== undefined && req[member] !== null) throw validation(`statelock lock tables have no indexes: ${member} is not supported (they are keyed by LockID (S) alone)`);
    }
    const stream = req.StreamSpecification;
    if (isPlainObject(stream) && stream.StreamEnabled === true) throw validation('statelock lock tables have no streams: StreamSpecification.StreamEnabled must be false (the audit trail, GET /api/v1/audit, records every lock change)');
    checkKeySchema(req.KeySchema, req.AttributeDefinitions);
    const billing = optionalEnum(req, 'BillingMode', ['PROVISIONED', 'PAY_PER_REQUEST']) ?? 'PROVISIONED';
    const throughput = req.ProvisionedThroughput;
    let provisioned: { ReadCapacityUnits: number; WriteCapacityUnits: number } | undefined;
    if (billing === 'PAY_PER_REQUEST') {
      if (throughput !== undefined && throughput !== null) throw validation('One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST');
    } else {
      if (!isPlainObject(throughput)) throw validation('One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED');
      const read = optionalInteger(throughput, 'ReadCapacityUnits', 1);
      const write = optionalInteger(throughput, 'WriteCapacityUnits', 1);
      if (read === undefined || write === undefined) throw validation('One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED');
      provisioned = { ReadCapacityUnits: read, WriteCapacityUnits: write };
    }
    const record: LockTableRecord = {
      name,
      definition: { KeySchema: CANONICAL_KEY_SCHEMA, AttributeDefinitions: CANONICAL_ATTRIBUTES, BillingMode: billing, ...(provisioned ? { ProvisionedThroughput: provisioned } : {}) },
      createdAt: new Date().toISOString(),
    };
    if (!(await this.deps.store.createLockTable(record))) throw new StatelockError('DYNAMODB_TABLE_EXISTS', { table: name });
    return { TableDescription: await this.describe(record, 'ACTIVE', r) };
  }

  private async describeTable(req: Request, r: AwsRequest): Promise<Answer> {
    const name = tableNameOf(req);
    const record = await this.deps.store.getLockTable(name);
    if (!record) throw new StatelockError('DYNAMODB_TABLE_NOT_FOUND', { table: name });
    return { Table: await this.describe(record, 'ACTIVE', r) };
  }

  private async listTables(req: Request): Promise<Answer> {
    const limit = optionalInteger(req, 'Limit', 1) ?? 100;
    if (limit > 100) throw validation(`1 validation error detected: Value '${limit}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 100`);
    const start = optionalString(req, 'ExclusiveStartTableName');
    const names = (await this.deps.store.listLockTables()).map((t) => t.name).sort(compareLockIds);
    const rest = start === undefined ? names : names.filter((n) => compareLockIds(n, start) > 0);
    const page = rest.slice(0, limit);
    return { TableNames: page, ...(rest.length > page.length ? { LastEvaluatedTableName: page[page.length - 1] } : {}) };
  }

  /** Removes the table's record only: the locks it showed are statelock's and stay held. */
  private async deleteTable(req: Request, r: AwsRequest): Promise<Answer> {
    r.ctx.authorize('admin', null);
    const name = tableNameOf(req);
    const record = await this.deps.store.getLockTable(name);
    if (!record || !(await this.deps.store.deleteLockTable(name))) throw new StatelockError('DYNAMODB_TABLE_NOT_FOUND', { table: name });
    return { TableDescription: await this.describe(record, 'DELETING', r) };
  }

  /** ItemCount and TableSizeBytes count what the principal may read (as Scan shows it). */
  private async describe(record: LockTableRecord, status: 'ACTIVE' | 'DELETING', r: AwsRequest): Promise<Answer> {
    const { region } = r;
    const items = await this.readableItems(r);
    const def = record.definition;
    const billing = def.BillingMode === 'PAY_PER_REQUEST' ? 'PAY_PER_REQUEST' : 'PROVISIONED';
    const created = Date.parse(record.createdAt) / 1000;
    const provisioned = isPlainObject(def.ProvisionedThroughput) ? def.ProvisionedThroughput : { ReadCapacityUnits: 0, WriteCapacityUnits: 0 };
    return {
      TableName: record.name,
      TableStatus: status,
      KeySchema: Array.isArray(def.KeySchema) ? def.KeySchema : CANONICAL_KEY_SCHEMA,
      AttributeDefinitions: Array.isArray(def.AttributeDefinitions) ? def.AttributeDefinitions : CANONICAL_ATTRIBUTES,
      CreationDateTime: created,
      ItemCount: items.length,
      TableSizeBytes: items.reduce((n, item) => n + itemSizeBytes(item), 0),
      TableArn: `arn:aws:dynamodb:${region}:${STATELOCK_ACCOUNT_ID}:table/${record.name}`,
      ProvisionedThroughput: { NumberOfDecreasesToday: 0, ...provisioned },
      BillingModeSummary: { BillingMode: billing, ...(billing === 'PAY_PER_REQUEST' ? { LastUpdateToPayPerRequestDateTime: created } : {}) },
      DeletionProtectionEnabled: false,
    };
  }
}

const CANONICAL_KEY_SCHEMA = [{ AttributeName: 'LockID', KeyType: 'HASH' }];
const CANONICAL_ATTRIBUTES = [{ AttributeName: 'LockID', AttributeType: 'S' }];

/** CreateTable: statelock lock tables are keyed by LockID (S), nothing else. */
function checkKeySchema(keySchema: unknown, attributes: unknown): void {
  const ok =
    Array.isArray(keySchema) &&
    keySchema.length === 1 &&
    isPlainObject(keySchema[0]) &&
    keySchema[0].AttributeName === 'LockID' &&
    keySchema[0].KeyType === 'HASH' &&
    Array.isArray(attributes) &&
    attributes.length === 1 &&
    isPlainObject(attributes[0]) &&
    attributes[0].AttributeName === 'LockID' &&
    attributes[0].AttributeType === 'S';
  if (!ok) {
    throw validation(
      `statelock lock tables are keyed by LockID (S): KeySchema must be exactly one HASH key named LockID and AttributeDefinitions exactly LockID of type S ` +
        `(aws dynamodb create-table --attribute-definitions AttributeName=LockID,AttributeType=S --key-schema AttributeName=LockID,KeyType=HASH --billing-mode PAY_PER_REQUEST); ` +
        `got KeySchema ${JSON.stringify(keySchema ?? null)} and AttributeDefinitions ${JSON.stringify(attributes ?? null)}`,
    );
  }
}

/* ------------------------------------------------------------------ request members */

function parseRequestBody(body: Buffer): Request {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new StatelockError('DYNAMODB_SERIALIZATION', { reason: 'it is not valid UTF-8' });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new StatelockError('DYNAMODB_SERIALIZATION', { reason: text.trim() === '' ? 'the body is empty' : (err as Error).message });
  }
  if (!isPlainObject(doc)) throw new StatelockError('DYNAMODB_SERIALIZATION', { reason: `it is ${Array.isArray(doc) ? 'an array' : doc === null ? 'null' : `a ${typeof doc}`}, not an object` });
  return doc;
}

function refuseLegacyConditions(req: Request): void {
  for (const member of ['Expected', 'ConditionalOperator']) {
    if (req[member] !== undefined && req[member] !== null) throw validation(`statelock supports ConditionExpression, not the legacy ${member} parameter`);
  }
}

/** ReturnConsumedCapacity and ReturnItemCollectionMetrics: accepted, nothing to report. */
function acceptReportingMembers(req: Request): void {
  optionalEnum(req, 'ReturnConsumedCapacity', ['INDEXES', 'TOTAL', 'NONE']);
  optionalEnum(req, 'ReturnItemCollectionMetrics', ['SIZE', 'NONE']);
}

/** PutItem's and DeleteItem's ReturnValues: NONE or ALL_OLD. true for ALL_OLD. */
function returnValuesOf(req: Request): boolean {
  const v = optionalEnum(req, 'ReturnValues', ['NONE', 'ALL_OLD', 'UPDATED_OLD', 'ALL_NEW', 'UPDATED_NEW']);
  if (v !== undefined && v !== 'NONE' && v !== 'ALL_OLD') throw validation('Return values set to invalid value: only NONE and ALL_OLD apply to this operation');
  return v === 'ALL_OLD';
}

function expressionContext(req: Request, op: string, allowed: { projection: boolean; condition: boolean }): ExpressionContext {
  const names = parseNames(req);
  const values = parseValues(req);
  const hasProjection = allowed.projection && req.ProjectionExpression !== undefined && req.ProjectionExpression !== null;
  const hasCondition = allowed.condition && req.ConditionExpression !== undefined && req.ConditionExpression !== null;
  if (names !== undefined && !hasProjection && !hasCondition) throw validation('ExpressionAttributeNames can only be specified when using expressions');
  if (values !== undefined && !hasCondition) {
    throw validation(`ExpressionAttributeValues can only be specified when using expressions: ${allowed.condition ? 'ConditionExpression is null' : `${op} takes no expression with values`}`);
  }
  return new ExpressionContext(names, values);
}

function conditionOf(req: Request, ctx: ExpressionContext): Condition | null {
  const text = optionalString(req, 'ConditionExpression');
  return text === undefined ? null : parseCondition(text, ctx);
}

/** ProjectionExpression (or the legacy AttributesToGet): the attributes to return, null for all. */
function projectionOf(req: Request, ctx: ExpressionContext): string[] | null {
  const text = optionalString(req, 'ProjectionExpression');
  const legacy = req.AttributesToGet;
  if (text !== undefined && legacy !== undefined && legacy !== null) {
    throw validation('Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}');
  }
  if (text !== undefined) return parseProjection(text, ctx);
  if (legacy === undefined || legacy === null) return null;
  if (!Array.isArray(legacy) || legacy.length === 0 || !legacy.every((x) => typeof x === 'string')) {
    throw validation("1 validation error detected: Value at 'attributesToGet' failed to satisfy constraint: Member must be a non-empty list of attribute names");
  }
  if (new Set(legacy).size !== legacy.length) throw validation(`One or more parameter values were invalid: Duplicate value in attribute name: ${legacy.join(', ')}`);
  return legacy as string[];
}

function conditionFailed(item: Item | null): DynamoDbRefusal {
  return new DynamoDbRefusal('DYNAMODB_CONDITION_FAILED', {}, undefined, item ?? undefined);
}

/** The lock ID inside OpenTofu's `:info`, or null when it is not lock info. */
function idOf(info: string): string | null {
  try {
    return parseLockInfo(Buffer.from(info, 'utf8')).id;
  } catch {
    return null;
  }
}

/** Index of the first item whose LockID sorts after `lockId`. */
function firstAfter(items: Item[], lockId: string): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareLockIds(lockIdOf(items[mid]!), lockId) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function send(res: ServerResponse, status: number, doc: Answer, requestId: string, extra: Record<string, string> = {}): void {
  // A string body goes out in one write with the headers (see sendText); crc32 reads it as UTF-8, as sent.
  const body = JSON.stringify(doc);
  res.writeHead(status, {
    'Content-Type': 'application/x-amz-json-1.0',
    'Content-Length': String(Buffer.byteLength(body, 'utf8')),
    'x-amzn-RequestId': requestId,
    'x-amz-crc32': String(crc32(body) >>> 0),
    ...extra,
  });
  res.end(body, 'utf8');
}

/**
 * A PutItem or DeleteItem of an item changes the lock (lock permission on its state key) or, for a digest
 * item, claims to change the state (write). Checked once the LockID is parsed and before anything is read
 * or changed, so a refusal changes nothing. A DeleteItem that would force-unlock a lock held through
 * another door also needs force-unlock: that is decided in the transaction (decideDoorRelease).
 */
function authorizeItemChange(r: AwsRequest, ref: LockItemRef): void {
  r.ctx.authorize(ref.kind === 'digest' ? 'write' : 'lock', ref.key);
}
