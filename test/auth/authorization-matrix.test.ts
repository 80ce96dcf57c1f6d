import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CreateTableCommand,
  DeleteItemCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  GetItemCommand,
  ListTablesCommand,
  PutItemCommand,
  ScanCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { GetCallerIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { isAllowed, parseGrant, type Grant, type Permission } from '../../src/auth/permissions.js';
import { dynamoClient, s3Client, serverRequest, startAwsServer, stsClient, type AwsServer, type PlainResponse } from '../support/aws.js';
import { lockBody, stateBody } from '../support/http.js';

/**
 * The authorization matrix, on one real server: every principal × door × operation, each answered as
 * its grants say (allowed, or 401/403 — AccessDenied / AccessDeniedException on the AWS doors), and
 * every refused request changes nothing: state bytes, lock holder and holds, version count, tokens,
 * buckets and tables, and no audit entry but refusals. Plus: bootstrap on a fresh server, missing /
 * wrong / revoked credentials, filtered listings, and messages that name the missing permission and
 * never a secret.
 *
 * The server is started with no credentials of its own (`anyKey`): AWS key pairs come only from tokens.
 */

interface Principal {
  name: string;
  token: string;
  grants: string[];
  awsAccessKeyId: string | null;
  awsSecretAccessKey: string | null;
  revokedAt: string | null;
}

/** The S3 bucket is named so that state keys are `lesson-17/<object key>`: one glob covers every door. */
const BUCKET = 'lesson-17';
const PR = 'lesson-17/pr-1/terraform.tfstate';
const PROD = 'lesson-17/prod/terraform.tfstate';
const TABLE = 'terraform-locks';
const LOCK_ID = '6f1d2c3b-0000-4000-8000-00000000beef';

const GRANTS: Record<string, string[]> = {
  reader: ['*:read'],
  'pr-writer': ['lesson-17/pr-*:read,write,lock'],
  unlocker: ['*:read,lock,force-unlock'],
  deleter: ['*:read,delete'],
  restorer: ['*:read,restore'],
  nobody: ['other/*:read'],
};

let server: AwsServer;
let admin: Principal;
const principals: Principal[] = [];
let serial = 100;
/** A serial above any the states have: steps of 10 leave room for the restores in between (each adds 1). */
const nextSerial = () => (serial += 10);
let unique = 0;

/* ------------------------------------------------------------------ helpers */

const basic = (token: string) => `Basic ${Buffer.from(`terraform:${token}`).toString('base64')}`;
const bearer = (token: string) => `Bearer ${token}`;
type Style = 'basic' | 'bearer';

function request(method: string, path: string, token: string | null, body?: string, style: Style = 'bearer'): Promise<PlainResponse> {
  return serverRequest(server, method, path, body, token === null ? {} : { Authorization: style === 'basic' ? basic(token) : bearer(token) });
}

const asAdmin = (method: string, path: string, body?: string) => request(method, path, admin.token, body);

function json<T>(res: PlainResponse): T {
  return JSON.parse(res.body.toString('utf8')) as T;
}

async function expectStatus(res: Promise<PlainResponse>, status: number, what: string): Promise<PlainResponse> {
  const r = await res;
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
  return r;
}

function grantsOf(p: Principal): Grant[] {
  return p.grants.map(parseGrant).filter((g): g is Grant => !('error' in g));
}

const clients = new Map<string, { s3: S3Client; ddb: DynamoDBClient; sts: STSClient }>();
function aws(p: Principal) {
  let c = clients.get(p.name);
  if (!c) {
    const credentials = { accessKeyId: p.awsAccessKeyId!, secretAccessKey: p.awsSecretAccessKey! };
    c = { s3: s3Client(server, { credentials }), ddb: dynamoClient(server, { credentials }), sts: stsClient(server, { credentials }) };
    clients.set(p.name, c);
  }
  return c;
}

/** What came back, reduced to what the matrix compares; `message` is the refusal's text when there is one. */
interface Outcome {
  kind: 'allowed' | 'unauthenticated' | 'forbidden' | 'other';
  message: string | null;
  detail?: string;
}

function httpOutcome(res: PlainResponse): Outcome {
  const text = res.body.toString('utf8');
  let message: string | null = null;
  try {
    message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? null;
  } catch {
    message = text || null;
  }
  if (res.status >= 200 && res.status < 300) return { kind: 'allowed', message: null };
  if (res.status === 401) return { kind: 'unauthenticated', message };
  if (res.status === 403) return { kind: 'forbidden', message };
  return { kind: 'other', message, detail: `HTTP ${res.status}: ${text.slice(0, 300)}` };
}

interface AwsError {
  name: string;
  message: string;
  $metadata?: { httpStatusCode?: number };
}

async function awsOutcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    await fn();
    return { kind: 'allowed', message: null };
  } catch (err) {
    const e = err as AwsError;
    const status = e.$metadata?.httpStatusCode;
    if (e.name === 'AccessDenied' || e.name === 'AccessDeniedException') return { kind: 'forbidden', message: e.message };
    // HEAD answers carry no body: the SDK knows only the status.
    if (status === 403 && ['Forbidden', 'Unknown', '403'].includes(e.name)) return { kind: 'forbidden', message: null };
    return { kind: 'other', message: e.message, detail: `${e.name} (${status}): ${e.message}` };
  }
}

/* ------------------------------------------------------- admin-side set-up */

/** Releases whatever lock the key has, through whichever door, even one bound to a live session. */
async function ensureFree(key: string): Promise<void> {
  const lock = await asAdmin('GET', `/api/v1/locks/${key}`);
  if (lock.status === 404) return;
  const id = json<{ info: { ID: string } }>(lock).info.ID;
  await expectStatus(asAdmin('DELETE', `/api/v1/locks/${key}?id=${encodeURIComponent(id)}&evenIfAlive=true`), 200, `freeing ${key}`);
}
async function ensureState(key: string): Promise<void> {
  if ((await asAdmin('GET', `/state/${key}`)).status === 200) return;
  await expectStatus(asAdmin('POST', `/state/${key}`, stateBody(nextSerial(), 'L')), 200, `writing ${key}`);
}
async function ensureStateFree(key: string): Promise<void> {
  await ensureFree(key);
  await ensureState(key);
}
async function heldOverHttp(key: string): Promise<void> {
  await ensureStateFree(key);
  await expectStatus(asAdmin('LOCK', `/state/${key}`, lockBody(LOCK_ID)), 200, `locking ${key}`);
}
async function heldOverS3(key: string): Promise<void> {
  await ensureStateFree(key);
  await aws(admin).s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${objectKey(key)}.tflock`, Body: lockBody(LOCK_ID), IfNoneMatch: '*' }));
}
async function heldOverDynamo(key: string): Promise<void> {
  await ensureStateFree(key);
  await aws(admin).ddb.send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: lockBody(LOCK_ID) } }, ConditionExpression: 'attribute_not_exists(LockID)' }));
}
const objectKey = (key: string) => key.slice(BUCKET.length + 1);

/** An admin's view of a key: bytes, lock holder and holds, version count. */
async function keyWitness(key: string): Promise<unknown> {
  const state = await asAdmin('GET', `/state/${key}`);
  const lock = await asAdmin('GET', `/api/v1/locks/${key}`);
  const versions = await asAdmin('GET', `/api/v1/versions/${key}?limit=1000`);
  return {
    state: state.status === 200 ? state.body.toString('base64') : state.status,
    lock: lock.status === 200 ? (({ info, holds, sessionId }) => ({ id: info.ID, raw: info, holds, sessionId }))(json<{ info: { ID: string }; holds: string[]; sessionId: string | null }>(lock)) : lock.status,
    versions: versions.status === 200 ? json<{ items: unknown[] }>(versions).items.length : versions.status,
  };
}

/** An admin's view of what server-wide operations change: tokens, buckets, tables. */
async function serverWitness(): Promise<unknown> {
  const tokens = json<{ items: Array<{ name: string; revokedAt: string | null }> }>(await asAdmin('GET', '/api/v1/tokens')).items.map((t) => `${t.name}:${t.revokedAt ?? 'live'}`);
  const buckets = (await aws(admin).s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name) ?? [];
  const tables = (await aws(admin).ddb.send(new ListTablesCommand({}))).TableNames ?? [];
  return { tokens, buckets, tables };
}

interface AuditItem {
  id: number;
  action: string;
  key: string;
  outcome: 'ok' | 'refused';
  principal: string | null;
}

let auditCursor = 0;
/** Audit entries written since the cursor (the cursor moves past them). */
async function newAuditEntries(): Promise<AuditItem[]> {
  const out: AuditItem[] = [];
  for (;;) {
    const page = json<{ items: AuditItem[]; next: string | null }>(await expectStatus(asAdmin('GET', `/api/v1/audit?after=${auditCursor}&limit=1000`), 200, 'reading the audit trail'));
    out.push(...page.items);
    if (page.items.length > 0) auditCursor = page.items[page.items.length - 1]!.id;
    if (!page.next) return out;
  }
}

/* --------------------------------------------------------------- operations */

type Door = 'http (Basic)' | 'http (Bearer)' | 'api' | 's3' | 'dynamodb' | 'sts';

interface Operation {
  door: Door;
  name: string;
  /** The key it acts on; null for server-wide operations. */
  key: string | null;
  /** Every permission it needs (all of them); [] for "any authenticated principal". Server-wide ones are checked on a null key. */
  needs: Permission[];
  /** Prepares what the operation acts on, as admin. */
  setup?: () => Promise<void>;
  run: (p: Principal) => Promise<Outcome>;
}

function httpOperations(key: string, style: Style): Operation[] {
  const door: Door = style === 'basic' ? 'http (Basic)' : 'http (Bearer)';
  const as = (p: Principal, method: string, path: string, body?: string) => request(method, path, p.token, body, style).then(httpOutcome);
  const zeroValued = JSON.stringify({ ID: LOCK_ID, Operation: '', Info: '', Who: '', Version: '', Created: '0001-01-01T00:00:00Z', Path: '' });
  return [
    { door, name: 'GET /state', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'GET', `/state/${key}`) },
    { door, name: 'HEAD /state', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'HEAD', `/state/${key}`) },
    { door, name: 'POST /state', key, needs: ['write'], setup: () => ensureStateFree(key), run: (p) => as(p, 'POST', `/state/${key}`, stateBody(nextSerial(), 'L')) },
    { door, name: 'PUT /state?ID= (under its lock)', key, needs: ['write'], setup: () => heldOverHttp(key), run: (p) => as(p, 'PUT', `/state/${key}?ID=${LOCK_ID}`, stateBody(nextSerial(), 'L')) },
    { door, name: 'LOCK /state', key, needs: ['lock'], setup: () => ensureStateFree(key), run: (p) => as(p, 'LOCK', `/state/${key}`, lockBody(LOCK_ID)) },
    { door, name: 'POST /lock', key, needs: ['lock'], setup: () => ensureStateFree(key), run: (p) => as(p, 'POST', `/lock/${key}`, lockBody(LOCK_ID)) },
    { door, name: 'UNLOCK /state by the holder', key, needs: ['lock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'UNLOCK', `/state/${key}`, lockBody(LOCK_ID)) },
    { door, name: 'DELETE /lock by the holder', key, needs: ['lock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'DELETE', `/lock/${key}`, lockBody(LOCK_ID)) },
    { door, name: 'UNLOCK /state empty body (terraform force-unlock)', key, needs: ['force-unlock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'UNLOCK', `/state/${key}`, '') },
    { door, name: 'UNLOCK /state zero-valued body (tofu force-unlock)', key, needs: ['force-unlock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'UNLOCK', `/state/${key}`, zeroValued) },
    { door, name: 'DELETE /lock empty body', key, needs: ['force-unlock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'DELETE', `/lock/${key}`, '') },
    { door, name: 'DELETE /state', key, needs: ['delete'], setup: () => ensureStateFree(key), run: (p) => as(p, 'DELETE', `/state/${key}`) },
  ];
}

let sessionId = '';
function apiOperations(key: string): Operation[] {
  const as = (p: Principal, method: string, path: string, body?: string) => request(method, `/api/v1/${path}`, p.token, body).then(httpOutcome);
  const withSession = async () => {
    await ensureStateFree(key);
    sessionId = json<{ id: string }>(await expectStatus(asAdmin('POST', '/api/v1/sessions', JSON.stringify({ key, ttlSeconds: 60 })), 201, 'creating a session')).id;
  };
  return [
    { door: 'api', name: 'GET states/<key>', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'GET', `states/${key}`) },
    { door: 'api', name: 'GET versions/<key>', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'GET', `versions/${key}`) },
    { door: 'api', name: 'GET content/<key>', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'GET', `content/${key}?seq=1`) },
    { door: 'api', name: 'GET diff/<key>', key, needs: ['read'], setup: () => ensureState(key), run: (p) => as(p, 'GET', `diff/${key}`) },
    { door: 'api', name: 'GET locks/<key>', key, needs: ['read'], setup: () => heldOverHttp(key), run: (p) => as(p, 'GET', `locks/${key}`) },
    { door: 'api', name: 'GET rejected/<key>', key, needs: ['read'], run: (p) => as(p, 'GET', `rejected/${key}`) },
    { door: 'api', name: 'GET audit?key=<key>', key, needs: ['read'], run: (p) => as(p, 'GET', `audit?key=${encodeURIComponent(key)}`) },
    { door: 'api', name: 'DELETE states/<key>', key, needs: ['delete'], setup: () => ensureStateFree(key), run: (p) => as(p, 'DELETE', `states/${key}`) },
    { door: 'api', name: 'POST restore/<key>?seq=1', key, needs: ['restore'], setup: () => ensureStateFree(key), run: (p) => as(p, 'POST', `restore/${key}?seq=1`) },
    { door: 'api', name: 'DELETE locks/<key> (force-unlock)', key, needs: ['force-unlock'], setup: () => heldOverHttp(key), run: (p) => as(p, 'DELETE', `locks/${key}?id=${LOCK_ID}`) },
    { door: 'api', name: 'POST sessions', key, needs: ['lock'], setup: () => ensureStateFree(key), run: (p) => as(p, 'POST', 'sessions', JSON.stringify({ key, ttlSeconds: 60 })) },
    { door: 'api', name: 'GET sessions/<id>', key, needs: ['read'], setup: withSession, run: (p) => as(p, 'GET', `sessions/${sessionId}`) },
    { door: 'api', name: 'POST sessions/<id>/heartbeat', key, needs: ['lock'], setup: withSession, run: (p) => as(p, 'POST', `sessions/${sessionId}/heartbeat`) },
    {
      door: 'api',
      name: 'POST sessions/<id>/end (its lock held)',
      key,
      needs: ['lock'],
      setup: async () => {
        await withSession();
        await expectStatus(asAdmin('LOCK', `/state/${key}?session=${sessionId}`, lockBody(LOCK_ID)), 200, 'locking under the session');
      },
      run: (p) => as(p, 'POST', `sessions/${sessionId}/end`, JSON.stringify({ reason: 'matrix' })),
    },
  ];
}

let uploadId = '';
function s3Operations(key: string): Operation[] {
  const ok = objectKey(key);
  const lockKey = `${ok}.tflock`;
  const s3 = (p: Principal) => aws(p).s3;
  const withUpload = async () => {
    await ensureStateFree(key);
    uploadId = (await aws(admin).s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: ok }))).UploadId!;
  };
  return [
    { door: 's3', name: 'GetObject', key, needs: ['read'], setup: () => ensureState(key), run: (p) => awsOutcome(() => s3(p).send(new GetObjectCommand({ Bucket: BUCKET, Key: ok }))) },
    { door: 's3', name: 'HeadObject', key, needs: ['read'], setup: () => ensureState(key), run: (p) => awsOutcome(() => s3(p).send(new HeadObjectCommand({ Bucket: BUCKET, Key: ok }))) },
    { door: 's3', name: 'GetObject versionId=1', key, needs: ['read'], setup: () => ensureState(key), run: (p) => awsOutcome(() => s3(p).send(new GetObjectCommand({ Bucket: BUCKET, Key: ok, VersionId: '1' }))) },
    { door: 's3', name: 'PutObject (state)', key, needs: ['write'], setup: () => ensureStateFree(key), run: (p) => awsOutcome(() => s3(p).send(new PutObjectCommand({ Bucket: BUCKET, Key: ok, Body: stateBody(nextSerial(), 'L') }))) },
    { door: 's3', name: 'CreateMultipartUpload', key, needs: ['write'], setup: () => ensureStateFree(key), run: (p) => awsOutcome(() => s3(p).send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: ok }))) },
    {
      door: 's3',
      name: 'UploadPart + CompleteMultipartUpload',
      key,
      needs: ['write'],
      setup: withUpload,
      run: (p) =>
        awsOutcome(async () => {
          const part = await s3(p).send(new UploadPartCommand({ Bucket: BUCKET, Key: ok, UploadId: uploadId, PartNumber: 1, Body: stateBody(nextSerial(), 'L') }));
          await s3(p).send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: ok, UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag! }] } }));
        }),
    },
    { door: 's3', name: 'AbortMultipartUpload', key, needs: ['write'], setup: withUpload, run: (p) => awsOutcome(() => s3(p).send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: ok, UploadId: uploadId }))) },
    { door: 's3', name: 'PutObject .tflock (lock)', key, needs: ['lock'], setup: () => ensureStateFree(key), run: (p) => awsOutcome(() => s3(p).send(new PutObjectCommand({ Bucket: BUCKET, Key: lockKey, Body: lockBody(LOCK_ID), IfNoneMatch: '*' }))) },
    { door: 's3', name: 'GetObject .tflock', key, needs: ['read'], setup: () => heldOverS3(key), run: (p) => awsOutcome(() => s3(p).send(new GetObjectCommand({ Bucket: BUCKET, Key: lockKey }))) },
    { door: 's3', name: 'DeleteObject .tflock held through S3 (unlock)', key, needs: ['lock'], setup: () => heldOverS3(key), run: (p) => awsOutcome(() => s3(p).send(new DeleteObjectCommand({ Bucket: BUCKET, Key: lockKey }))) },
    {
      door: 's3',
      name: 'DeleteObject .tflock held over http (force-unlock)',
      key,
      needs: ['lock', 'force-unlock'],
      setup: () => heldOverHttp(key),
      run: (p) => awsOutcome(() => s3(p).send(new DeleteObjectCommand({ Bucket: BUCKET, Key: lockKey }))),
    },
    { door: 's3', name: 'DeleteObject (state)', key, needs: ['delete'], setup: () => ensureStateFree(key), run: (p) => awsOutcome(() => s3(p).send(new DeleteObjectCommand({ Bucket: BUCKET, Key: ok }))) },
    {
      door: 's3',
      name: 'DeleteObjects (state)',
      key,
      needs: ['delete'],
      setup: () => ensureStateFree(key),
      run: (p) =>
        awsOutcome(async () => {
          const out = await s3(p).send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: ok }] } }));
          const error = out.Errors?.[0];
          if (error) throw Object.assign(new Error(error.Message ?? ''), { name: error.Code ?? 'Error', $metadata: { httpStatusCode: 200 } });
        }),
    },
  ];
}

function dynamoOperations(key: string): Operation[] {
  const ddb = (p: Principal) => aws(p).ddb;
  const lockKey = { LockID: { S: key } };
  const digestKey = { LockID: { S: `${key}-md5` } };
  const heldInfo = lockBody(LOCK_ID);
  const infoCondition = { ConditionExpression: 'Info = :info', ExpressionAttributeValues: { ':info': { S: heldInfo } } };
  return [
    { door: 'dynamodb', name: 'GetItem (lock item)', key, needs: ['read'], setup: () => heldOverDynamo(key), run: (p) => awsOutcome(() => ddb(p).send(new GetItemCommand({ TableName: TABLE, Key: lockKey }))) },
    { door: 'dynamodb', name: 'GetItem (digest item)', key, needs: ['read'], setup: () => ensureState(key), run: (p) => awsOutcome(() => ddb(p).send(new GetItemCommand({ TableName: TABLE, Key: digestKey }))) },
    {
      door: 'dynamodb',
      name: 'PutItem lock item (attribute_not_exists)',
      key,
      needs: ['lock'],
      setup: () => ensureStateFree(key),
      run: (p) => awsOutcome(() => ddb(p).send(new PutItemCommand({ TableName: TABLE, Item: { LockID: { S: key }, Info: { S: heldInfo } }, ConditionExpression: 'attribute_not_exists(LockID)' }))),
    },
    { door: 'dynamodb', name: 'DeleteItem lock item held through DynamoDB (unlock)', key, needs: ['lock'], setup: () => heldOverDynamo(key), run: (p) => awsOutcome(() => ddb(p).send(new DeleteItemCommand({ TableName: TABLE, Key: lockKey }))) },
    { door: 'dynamodb', name: 'DeleteItem lock item, Info = :info (tofu unlock)', key, needs: ['lock'], setup: () => heldOverDynamo(key), run: (p) => awsOutcome(() => ddb(p).send(new DeleteItemCommand({ TableName: TABLE, Key: lockKey, ...infoCondition }))) },
    {
      door: 'dynamodb',
      name: 'DeleteItem lock item held over http, Info = :info (the holder)',
      key,
      needs: ['lock'],
      setup: () => heldOverHttp(key),
      run: (p) => awsOutcome(() => ddb(p).send(new DeleteItemCommand({ TableName: TABLE, Key: lockKey, ...infoCondition }))),
    },
    {
      door: 'dynamodb',
      name: 'DeleteItem lock item held over http (force-unlock)',
      key,
      needs: ['lock', 'force-unlock'],
      setup: () => heldOverHttp(key),
      run: (p) => awsOutcome(() => ddb(p).send(new DeleteItemCommand({ TableName: TABLE, Key: lockKey }))),
    },
    { door: 'dynamodb', name: 'PutItem digest item', key, needs: ['write'], setup: () => ensureState(key), run: (p) => awsOutcome(() => ddb(p).send(new PutItemCommand({ TableName: TABLE, Item: { ...digestKey, Digest: { S: '0'.repeat(32) } } }))) },
    { door: 'dynamodb', name: 'DeleteItem digest item', key, needs: ['write'], setup: () => ensureState(key), run: (p) => awsOutcome(() => ddb(p).send(new DeleteItemCommand({ TableName: TABLE, Key: digestKey }))) },
  ];
}

function serverOperations(): Operation[] {
  const api = (p: Principal, method: string, path: string, body?: string) => request(method, `/api/v1/${path}`, p.token, body).then(httpOutcome);
  let victim = '';
  let bucket = '';
  let table = '';
  return [
    { door: 'api', name: 'POST tokens', key: null, needs: ['admin'], run: (p) => api(p, 'POST', 'tokens', JSON.stringify({ name: `made-${++unique}`, allow: ['*:read'] })) },
    { door: 'api', name: 'GET tokens', key: null, needs: ['admin'], run: (p) => api(p, 'GET', 'tokens') },
    {
      door: 'api',
      name: 'DELETE tokens/<name>',
      key: null,
      needs: ['admin'],
      setup: async () => {
        victim = `victim-${++unique}`;
        await expectStatus(asAdmin('POST', '/api/v1/tokens', JSON.stringify({ name: victim, allow: ['*:read'] })), 201, 'creating a token to revoke');
      },
      run: (p) => api(p, 'DELETE', `tokens/${victim}`),
    },
    { door: 'api', name: 'GET audit (every key)', key: null, needs: ['admin'], run: (p) => api(p, 'GET', 'audit') },
    { door: 'api', name: 'GET states (filtered)', key: null, needs: [], run: (p) => api(p, 'GET', 'states') },
    { door: 'api', name: 'GET locks (filtered)', key: null, needs: [], run: (p) => api(p, 'GET', 'locks') },
    { door: 'api', name: 'GET openapi.json', key: null, needs: [], run: (p) => api(p, 'GET', 'openapi.json') },
    { door: 's3', name: 'CreateBucket', key: null, needs: ['admin'], run: (p) => awsOutcome(() => aws(p).s3.send(new CreateBucketCommand({ Bucket: `made-${++unique}` }))) },
    {
      door: 's3',
      name: 'DeleteBucket',
      key: null,
      needs: ['admin'],
      setup: async () => {
        bucket = `doomed-${++unique}`;
        await aws(admin).s3.send(new CreateBucketCommand({ Bucket: bucket }));
      },
      run: (p) => awsOutcome(() => aws(p).s3.send(new DeleteBucketCommand({ Bucket: bucket }))),
    },
    { door: 's3', name: 'HeadBucket', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new HeadBucketCommand({ Bucket: BUCKET }))) },
    { door: 's3', name: 'ListBuckets', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new ListBucketsCommand({}))) },
    { door: 's3', name: 'GetBucketLocation', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new GetBucketLocationCommand({ Bucket: BUCKET }))) },
    { door: 's3', name: 'GetBucketVersioning', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new GetBucketVersioningCommand({ Bucket: BUCKET }))) },
    { door: 's3', name: 'ListObjectsV2 (filtered)', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new ListObjectsV2Command({ Bucket: BUCKET }))) },
    { door: 's3', name: 'ListObjectVersions (filtered)', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET }))) },
    {
      door: 'dynamodb',
      name: 'CreateTable',
      key: null,
      needs: ['admin'],
      run: (p) =>
        awsOutcome(() =>
          aws(p).ddb.send(new CreateTableCommand({ TableName: `made-${++unique}`, KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], BillingMode: 'PAY_PER_REQUEST' })),
        ),
    },
    {
      door: 'dynamodb',
      name: 'DeleteTable',
      key: null,
      needs: ['admin'],
      setup: async () => {
        table = `doomed-${++unique}`;
        await createTable(table);
      },
      run: (p) => awsOutcome(() => aws(p).ddb.send(new DeleteTableCommand({ TableName: table }))),
    },
    { door: 'dynamodb', name: 'DescribeTable', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).ddb.send(new DescribeTableCommand({ TableName: TABLE }))) },
    { door: 'dynamodb', name: 'ListTables', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).ddb.send(new ListTablesCommand({}))) },
    { door: 'dynamodb', name: 'Scan (filtered)', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).ddb.send(new ScanCommand({ TableName: TABLE }))) },
    { door: 'sts', name: 'GetCallerIdentity', key: null, needs: [], run: (p) => awsOutcome(() => aws(p).sts.send(new GetCallerIdentityCommand({}))) },
  ];
}

function createTable(name: string) {
  return aws(admin).ddb.send(new CreateTableCommand({ TableName: name, KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }], BillingMode: 'PAY_PER_REQUEST' }));
}

function operations(): Operation[] {
  const ops: Operation[] = [];
  for (const key of [PR, PROD]) {
    ops.push(...httpOperations(key, 'basic'), ...httpOperations(key, 'bearer'), ...apiOperations(key), ...s3Operations(key), ...dynamoOperations(key));
  }
  ops.push(...serverOperations());
  return ops;
}

/** The permissions of `op` that `p` lacks. */
function missing(p: Principal, op: Operation): Permission[] {
  const g = grantsOf(p);
  return op.needs.filter((perm) => !isAllowed(g, perm, op.key === null ? null : op.key));
}

/* -------------------------------------------------------------------- tests */

before(async () => {
  server = await startAwsServer({ anyKey: true });
});
after(async () => {
  await server?.stop();
});

describe('bootstrap', () => {
  test('a fresh server allows everything anonymously on loopback; the first admin token is made through the API; then credentials are required', async () => {
    assert.match(server.stdout(), /authentication: off: no token exists yet/);
    // Anonymous is *:admin while no token exists: the token routes answer too.
    assert.deepEqual(json(await expectStatus(request('GET', '/api/v1/tokens', null), 200, 'anonymous token list')), { items: [] });
    await expectStatus(request('LOCK', '/state/bootstrap/probe', null, lockBody(LOCK_ID)), 200, 'anonymous LOCK');
    await expectStatus(request('UNLOCK', '/state/bootstrap/probe', null, lockBody(LOCK_ID)), 200, 'anonymous UNLOCK');

    const created = await expectStatus(request('POST', '/api/v1/tokens', null, JSON.stringify({ name: 'admin', allow: ['*:admin'], aws: true })), 201, 'bootstrap token');
    admin = json<Principal>(created);
    assert.match(admin.token, /^slk_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(admin.grants, ['*:admin']);
    assert.ok(admin.awsAccessKeyId && admin.awsSecretAccessKey);

    const anonymous = await request('POST', '/api/v1/tokens', null, JSON.stringify({ name: 'sneaky', allow: ['*:admin'] }));
    assert.equal(anonymous.status, 401, 'the second token needs the first');
    assert.match(String(anonymous.headers['www-authenticate']), /Basic realm="statelock"/);
    assert.equal((await asAdmin('GET', '/api/v1/tokens')).status, 200);
  });

  test('token requests that are not {"name","allow":[…],"aws"?} are INVALID_TOKEN_REQUEST and create nothing', async () => {
    const before = await serverWitness();
    for (const body of ['', 'not json', '[]', '{"allow":["*:read"]}', '{"name":"x"}', '{"name":"x","allow":"*:read"}', '{"name":"x","allow":[1]}', '{"name":"x","allow":["*:read"],"aws":"yes"}', '{"name":"x","allow":["*:reed"]}', '{"name":"x","allow":[]}', '{"name":"bad name","allow":["*:read"]}']) {
      const res = await asAdmin('POST', '/api/v1/tokens', body);
      assert.equal(res.status, 400, body);
      assert.equal(json<{ error: { code: string } }>(res).error.code, 'INVALID_TOKEN_REQUEST', body);
    }
    assert.equal((await asAdmin('DELETE', '/api/v1/tokens/no-such-token')).status, 404);
    assert.equal((await asAdmin('DELETE', '/api/v1/tokens/%E0%A4%A')).status, 404, 'a malformed percent-escape is no token, not a 500');
    assert.deepEqual(await serverWitness(), before);
  });
});

describe('every principal × door × operation', () => {
  before(async () => {
    for (const [name, allow] of Object.entries(GRANTS)) {
      principals.push(json<Principal>(await expectStatus(asAdmin('POST', '/api/v1/tokens', JSON.stringify({ name, allow, aws: true })), 201, `creating ${name}`)));
    }
    principals.push(admin);
    await aws(admin).s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await createTable(TABLE);
    await ensureState(PR);
    await ensureState(PROD);
  });

  test('allowed exactly when the grants cover every permission the operation needs; refused ones are 403 and change nothing', async () => {
    const ops = operations();
    const problems: string[] = [];
    const secrets = principals.flatMap((p) => [p.token, p.token.slice('slk_'.length + 16 + 1) /* the secret may itself contain '_' */, p.awsSecretAccessKey]).filter((s): s is string => typeof s === 'string' && s.length > 0);
    let cases = 0;
    let refused = 0;
    for (const op of ops) {
      for (const p of principals) {
        const lacks = missing(p, op);
        const expected = lacks.length === 0 ? 'allowed' : 'forbidden';
        const label = `${p.name} × ${op.door} ${op.name} on ${op.key ?? 'the server'}`;
        await op.setup?.();
        await newAuditEntries(); // the set-up's own entries
        const witness = () => (op.key === null ? serverWitness() : keyWitness(op.key));
        const before = expected === 'forbidden' ? await witness() : null;
        const got = await op.run(p);
        cases++;
        if (got.kind !== expected) {
          problems.push(`${label}: expected ${expected}, got ${got.kind}${got.detail ? ` (${got.detail})` : ''}`);
          continue;
        }
        const audit = await newAuditEntries();
        if (expected === 'allowed') continue;
        refused++;
        assert.ok(before !== null);
        const afterwards = await witness();
        if (JSON.stringify(afterwards) !== JSON.stringify(before)) problems.push(`${label}: refused but changed ${JSON.stringify(before)} → ${JSON.stringify(afterwards)}`);
        const changes = audit.filter((e) => e.outcome !== 'refused');
        if (changes.length > 0) problems.push(`${label}: refused but audited ${JSON.stringify(changes)}`);
        if (got.message !== null) {
          const m = /lacks the ([a-z-]+) permission on (.*)$/s.exec(got.message);
          if (!m || !lacks.includes(m[1] as Permission)) problems.push(`${label}: the message does not name a missing permission (${lacks.join(', ')}): ${got.message}`);
          else if (!m[2]!.includes(op.key ?? 'this server')) problems.push(`${label}: the message does not name ${op.key ?? 'the server'}: ${got.message}`);
          if (!got.message.includes(`"${p.name}"`)) problems.push(`${label}: the message does not name the principal: ${got.message}`);
          for (const s of secrets) if (got.message.includes(s)) problems.push(`${label}: the message contains a secret`);
        } else if (!op.name.startsWith('HEAD') && op.name !== 'HeadObject') {
          problems.push(`${label}: refused without a message`);
        }
      }
    }
    console.log(`# authorization matrix: ${cases} cases (${principals.length} principals × ${ops.length} door operations; ${refused} refused)`);
    assert.deepEqual(problems, []);
    assert.ok(refused > 100 && cases - refused > 100, `both outcomes are exercised (${refused} refused of ${cases})`);
  });

  test('the matrix is what the grants promise: a spot check by hand', async () => {
    const byName = (n: string) => principals.find((p) => p.name === n)!;
    const op = (door: Door, name: string, key: string | null) => operations().find((o) => o.door === door && o.name === name && o.key === key)!;
    const expectations: Array<[principal: string, door: Door, op: string, key: string | null, allowed: boolean]> = [
      ['pr-writer', 'http (Basic)', 'POST /state', PR, true],
      ['pr-writer', 'http (Basic)', 'POST /state', PROD, false],
      ['pr-writer', 's3', 'DeleteObject .tflock held over http (force-unlock)', PR, false],
      ['unlocker', 's3', 'DeleteObject .tflock held over http (force-unlock)', PROD, true],
      ['unlocker', 'dynamodb', 'DeleteItem lock item held over http (force-unlock)', PR, true],
      ['reader', 'dynamodb', 'DeleteItem lock item held over http (force-unlock)', PR, false],
      ['pr-writer', 'dynamodb', 'DeleteItem lock item held over http, Info = :info (the holder)', PR, true],
      ['deleter', 'api', 'DELETE states/<key>', PROD, true],
      ['restorer', 'api', 'DELETE states/<key>', PROD, false],
      ['restorer', 'api', 'POST restore/<key>?seq=1', PROD, true],
      ['nobody', 'api', 'GET states/<key>', PR, false],
      ['nobody', 'dynamodb', 'ListTables', null, true],
      ['reader', 'api', 'GET audit (every key)', null, false],
      ['admin', 'dynamodb', 'CreateTable', null, true],
      ['unlocker', 's3', 'CreateBucket', null, false],
    ];
    for (const [who, door, name, key, allowed] of expectations) {
      const o = op(door, name, key);
      assert.ok(o, `${door} ${name}`);
      await o.setup?.();
      const got = await o.run(byName(who));
      assert.equal(got.kind, allowed ? 'allowed' : 'forbidden', `${who} × ${door} ${name} on ${key}: ${got.detail ?? got.message}`);
    }
  });

  test('a force-unlock refused inside the lock transaction is audited as refused, and the lock stays', async () => {
    const prWriter = principals.find((p) => p.name === 'pr-writer')!;
    await heldOverHttp(PR);
    await newAuditEntries();
    const got = await awsOutcome(() => aws(prWriter).s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${objectKey(PR)}.tflock` })));
    assert.equal(got.kind, 'forbidden');
    assert.match(got.message ?? '', /lacks the force-unlock permission on lesson-17\/pr-1\/terraform.tfstate \(the lock is held through http, not through s3/);
    const audit = await newAuditEntries();
    assert.deepEqual(audit.map((e) => [e.action, e.key, e.outcome, e.principal]), [['lock.force-unlock', PR, 'refused', 'pr-writer']]);
    assert.equal(json<{ info: { ID: string } }>(await asAdmin('GET', `/api/v1/locks/${PR}`)).info.ID, LOCK_ID);
  });
});

describe('credentials', () => {
  test('missing credentials: 401 with WWW-Authenticate on the http backend and the API; unsigned AWS requests are refused', async () => {
    for (const [method, path] of [['GET', `/state/${PR}`], ['LOCK', `/state/${PR}`], ['GET', '/api/v1/states'], ['POST', '/api/v1/tokens']] as const) {
      const res = await request(method, path, null, method === 'LOCK' ? lockBody('x') : undefined);
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.match(String(res.headers['www-authenticate']), /Basic realm="statelock".*Bearer/);
      assert.equal(json<{ error: { code: string } }>(res).error.code, 'UNAUTHENTICATED');
      assert.match(json<{ error: { message: string } }>(res).error.message, /no credentials/);
    }
    const unsigned = await serverRequest(server, 'PUT', `/${BUCKET}/${objectKey(PR)}`, stateBody(nextSerial(), 'L'), { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    assert.equal(unsigned.status, 403);
    assert.match(unsigned.body.toString('utf8'), /<Code>AccessDenied<\/Code>/);
  });

  test('wrong tokens are 401, whatever their shape; nothing changes', async () => {
    await heldOverHttp(PR);
    const before = await keyWitness(PR);
    const wrong = [
      admin.token.slice(0, -4) + (admin.token.endsWith('AAAA') ? 'BBBB' : 'AAAA'), // right id, wrong secret
      'slk_AAAAAAAAAAAAAAAA_' + 'x'.repeat(43), // no such id
      'not-a-token',
      admin.awsSecretAccessKey!, // an AWS secret is not a token
    ];
    for (const token of wrong) {
      for (const style of ['basic', 'bearer'] as const) {
        for (const [method, path, body] of [['POST', `/state/${PR}`, stateBody(nextSerial(), 'L')], ['UNLOCK', `/state/${PR}`, ''], ['DELETE', `/api/v1/locks/${PR}?id=${LOCK_ID}`, undefined]] as const) {
          const res = await request(method, path, token, body, style);
          assert.equal(res.status, 401, `${style} ${method} ${path}`);
          const text = res.body.toString('utf8');
          assert.ok(!text.includes(token), 'the answer does not echo the credential');
        }
      }
    }
    for (const header of ['Bearer', 'Basic !!!', 'Basic ' + Buffer.from('no-colon').toString('base64'), 'Digest x', 'Bearer a b']) {
      const res = await serverRequest(server, 'GET', `/state/${PR}`, undefined, { Authorization: header });
      assert.equal(res.status, 401, header);
    }
    assert.deepEqual(await keyWitness(PR), before);
  });

  test('unknown access keys and wrong secrets are refused by the AWS doors', async () => {
    const unknown = { accessKeyId: 'AKIDNOSUCHKEY0000000', secretAccessKey: 'x'.repeat(40) };
    const wrongSecret = { accessKeyId: admin.awsAccessKeyId!, secretAccessKey: 'y'.repeat(40) };
    const s3Error = (creds: typeof unknown) => s3Client(server, { credentials: creds }).send(new GetObjectCommand({ Bucket: BUCKET, Key: objectKey(PR) })).then(() => 'ok', (e: AwsError) => e.name);
    const ddbError = (creds: typeof unknown) => dynamoClient(server, { credentials: creds }).send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: PR } } })).then(() => 'ok', (e: AwsError) => e.name);
    assert.equal(await s3Error(unknown), 'InvalidAccessKeyId');
    assert.equal(await ddbError(unknown), 'UnrecognizedClientException');
    assert.equal(await s3Error(wrongSecret), 'SignatureDoesNotMatch');
    assert.equal(await ddbError(wrongSecret), 'InvalidSignatureException');
  });

  test('a revoked token is refused at once on every door (401; the AWS key pair stops existing) and the revocation is audited', async () => {
    const temp = json<Principal>(await expectStatus(asAdmin('POST', '/api/v1/tokens', JSON.stringify({ name: 'temporary', allow: ['*:read,lock'], aws: true })), 201, 'creating temporary'));
    await ensureState(PR);
    const tempAws = { s3: s3Client(server, { credentials: { accessKeyId: temp.awsAccessKeyId!, secretAccessKey: temp.awsSecretAccessKey! } }), ddb: dynamoClient(server, { credentials: { accessKeyId: temp.awsAccessKeyId!, secretAccessKey: temp.awsSecretAccessKey! } }) };
    assert.equal((await request('GET', `/state/${PR}`, temp.token, undefined, 'basic')).status, 200);
    assert.equal((await request('GET', `/api/v1/states/${PR}`, temp.token)).status, 200);
    assert.equal((await awsOutcome(() => tempAws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: objectKey(PR) })))).kind, 'allowed');
    assert.equal((await awsOutcome(() => tempAws.ddb.send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: PR } } })))).kind, 'allowed');

    const revoked = json<Principal>(await expectStatus(asAdmin('DELETE', '/api/v1/tokens/temporary'), 200, 'revoking'));
    assert.equal(revoked.name, 'temporary');
    assert.ok(revoked.revokedAt);
    assert.equal((revoked as unknown as Record<string, unknown>).token, undefined, 'a listing never shows the secret');

    for (const style of ['basic', 'bearer'] as const) {
      const res = await request('GET', `/state/${PR}`, temp.token, undefined, style);
      assert.equal(res.status, 401);
      assert.match(res.body.toString('utf8'), /the token \\?"temporary\\?" was revoked/);
    }
    assert.equal((await request('GET', '/api/v1/states', temp.token)).status, 401);
    assert.equal(await tempAws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: objectKey(PR) })).then(() => 'ok', (e: AwsError) => e.name), 'InvalidAccessKeyId');
    assert.equal(await tempAws.ddb.send(new GetItemCommand({ TableName: TABLE, Key: { LockID: { S: PR } } })).then(() => 'ok', (e: AwsError) => e.name), 'UnrecognizedClientException');
    assert.equal((await asAdmin('DELETE', '/api/v1/tokens/temporary')).status, 404, 'revoking twice');

    const audit = json<{ items: AuditItem[] }>(await asAdmin('GET', '/api/v1/audit?key=tokens%2Ftemporary'));
    assert.deepEqual(audit.items.map((e) => [e.action, e.outcome, e.principal]), [['token.create', 'ok', 'admin'], ['token.revoke', 'ok', 'admin']]);
  });
});

describe('listings are filtered, never refused', () => {
  const PR2 = 'lesson-17/pr-2/terraform.tfstate';
  before(async () => {
    for (const key of [PR, PR2, PROD]) await ensureStateFree(key);
    await heldOverHttp(PR);
    await heldOverHttp(PROD);
  });
  const named = (n: string) => principals.find((p) => p.name === n)!;

  test('API: GET states and GET locks show only the keys the principal may read', async () => {
    const keysOf = async (p: Principal, what: 'states' | 'locks') => json<{ items: Array<{ key: string }> }>(await expectStatus(request('GET', `/api/v1/${what}?prefix=lesson-17/`, p.token), 200, `${p.name} ${what}`)).items.map((s) => s.key);
    assert.deepEqual(await keysOf(named('pr-writer'), 'states'), [PR, PR2]);
    assert.deepEqual(await keysOf(named('pr-writer'), 'locks'), [PR]);
    assert.deepEqual(await keysOf(named('nobody'), 'states'), []);
    assert.deepEqual(await keysOf(named('nobody'), 'locks'), []);
    assert.deepEqual(await keysOf(named('reader'), 'states'), [PR, PR2, PROD]);
    assert.deepEqual(await keysOf(admin, 'locks'), [PR, PROD]);
  });

  test('S3: ListObjectsV2 and ListObjectVersions (also with a key marker or prefix naming a hidden key) show only readable keys', async () => {
    const s3 = aws(named('pr-writer')).s3;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.deepEqual((listed.Contents ?? []).map((o) => o.Key), ['pr-1/terraform.tfstate', 'pr-1/terraform.tfstate.tflock', 'pr-2/terraform.tfstate']);
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET }));
    assert.ok((versions.Versions ?? []).length > 0);
    assert.ok((versions.Versions ?? []).every((v) => v.Key!.startsWith('pr-')), JSON.stringify(versions.Versions?.map((v) => v.Key)));
    const marked = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, KeyMarker: 'prod/terraform.tfstate', VersionIdMarker: '1000' }));
    assert.deepEqual(marked.Versions ?? [], [], 'the key marker does not reveal the versions of a key the principal may not read');
    const prefixed = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: 'prod/terraform.tfstate' }));
    assert.deepEqual(prefixed.Versions ?? [], []);
    const none = await aws(named('nobody')).s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.deepEqual(none.Contents ?? [], []);
    const all = await aws(admin).s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.ok((all.Contents ?? []).some((o) => o.Key === 'prod/terraform.tfstate'));
  });

  test('DynamoDB: Scan and DescribeTable count only readable items', async () => {
    const ddb = aws(named('pr-writer')).ddb;
    const scan = await ddb.send(new ScanCommand({ TableName: TABLE }));
    const ids = (scan.Items ?? []).map((i) => i.LockID!.S!);
    assert.deepEqual(ids, [PR, `${PR}-md5`, `${PR2}-md5`]);
    const described = await ddb.send(new DescribeTableCommand({ TableName: TABLE }));
    assert.equal(described.Table?.ItemCount, ids.length);
    assert.deepEqual((await aws(named('nobody')).ddb.send(new ScanCommand({ TableName: TABLE }))).Items ?? [], []);
    const adminIds = ((await aws(admin).ddb.send(new ScanCommand({ TableName: TABLE }))).Items ?? []).map((i) => i.LockID!.S!);
    assert.ok(adminIds.includes(PROD) && adminIds.includes(`${PROD}-md5`));
  });

  test("the audit trail: one key's entries with read on it, token changes and the whole trail only for admins", async () => {
    const reader = named('reader');
    const ofKey = json<{ items: AuditItem[] }>(await expectStatus(request('GET', `/api/v1/audit?key=${encodeURIComponent(PR)}`, reader.token), 200, 'reader audit of PR'));
    assert.ok(ofKey.items.length > 0 && ofKey.items.every((e) => e.key === PR));
    const tokenTrail = json<{ items: AuditItem[] }>(await expectStatus(request('GET', '/api/v1/audit?key=tokens%2Freader', reader.token), 200, 'reader audit of tokens/reader'));
    assert.deepEqual(tokenTrail.items, [], 'a *:read grant does not show token changes');
    const adminTrail = json<{ items: AuditItem[] }>(await asAdmin('GET', '/api/v1/audit?key=tokens%2Freader'));
    assert.deepEqual(adminTrail.items.map((e) => e.action), ['token.create']);
    const whole = await request('GET', '/api/v1/audit', reader.token);
    assert.equal(whole.status, 403);
    assert.match(json<{ error: { message: string } }>(whole).error.message, /principal "reader" lacks the admin permission on this server/);
    assert.equal((await request('GET', `/api/v1/audit?key=${encodeURIComponent(PR)}`, named('nobody').token)).status, 403);
  });
});
