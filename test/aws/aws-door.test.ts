import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { lockBody } from '../support/http.js';
import { AWS_CLI_SKIP, awsCli, dynamoClient, REGION, serverRequest, startAwsServer, stsClient, TEST_KEY, type AwsServer } from '../support/aws.js';

/**
 * The AWS entry point shared by S3, DynamoDB and STS: which requests it claims, the credential policy
 * (checked keys; any key on a loopback server without credentials; none elsewhere), clock skew, and
 * STS GetCallerIdentity / IAM GetUser for Terraform's credential validation.
 */

const LOCK_KEY = 'acme-terraform-state-123456789012/lesson-17/terraform.tfstate';

/** A DynamoDB GetItem signed by the real signer at `date`, sent raw: the SDK would correct the clock itself. */
async function signedGetItem(server: AwsServer, date: Date, credentials = TEST_KEY) {
  const url = new URL(server.url);
  const body = JSON.stringify({ TableName: 'terraform-state-lock', Key: { LockID: { S: LOCK_KEY } } });
  const signer = new SignatureV4({ service: 'dynamodb', region: REGION, credentials, sha256: Sha256 });
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: '/',
      headers: { host: url.host, 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.GetItem' },
      body,
    },
    { signingDate: date },
  );
  return serverRequest(server, 'POST', '/', body, signed.headers as Record<string, string>);
}

const typeOf = (body: Buffer) => (JSON.parse(body.toString('utf8')) as { __type: string }).__type;

describe('AWS door: credentials checked (--aws-credentials)', () => {
  let server: AwsServer;
  before(async () => {
    server = await startAwsServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('STS GetCallerIdentity answers for the signing key, so Terraform needs no skip_credentials_validation', async () => {
    const id = await stsClient(server).send(new GetCallerIdentityCommand({}));
    assert.equal(id.Account, '000000000000');
    assert.equal(id.UserId, TEST_KEY.accessKeyId);
    assert.equal(id.Arn, `arn:aws:iam::000000000000:user/${TEST_KEY.accessKeyId}`);
  });

  test('an unknown access key and a wrong secret are refused with the names the SDK checks', async () => {
    await assert.rejects(stsClient(server, { credentials: { accessKeyId: 'AKIDOTHER', secretAccessKey: 'x' } }).send(new GetCallerIdentityCommand({})), { name: 'InvalidAccessKeyId' });
    await assert.rejects(
      dynamoClient(server, { credentials: { accessKeyId: TEST_KEY.accessKeyId, secretAccessKey: 'wrong' } }).send(new GetItemCommand({ TableName: 't', Key: { LockID: { S: LOCK_KEY } } })),
      { name: 'InvalidSignatureException' },
    );
    await assert.rejects(
      dynamoClient(server, { credentials: { accessKeyId: 'AKIDOTHER', secretAccessKey: 'x' } }).send(new GetItemCommand({ TableName: 't', Key: { LockID: { S: LOCK_KEY } } })),
      { name: 'UnrecognizedClientException' },
    );
  });

  test('a request signed 16 minutes off the server clock is refused; 10 minutes off is accepted', async () => {
    const skewed = await signedGetItem(server, new Date(Date.now() - 16 * 60_000));
    assert.equal(skewed.status, 400);
    assert.equal(typeOf(skewed.body), 'com.amazonaws.dynamodb.v20120810#InvalidSignatureException');
    assert.match(skewed.body.toString('utf8'), /more than/);
    const fine = await signedGetItem(server, new Date(Date.now() - 10 * 60_000));
    assert.equal(fine.status, 200, fine.body.toString('utf8'));
  });

  test('an unsigned DynamoDB request is MissingAuthenticationTokenException; http backend requests are not claimed', async () => {
    const unsigned = await serverRequest(server, 'POST', '/', '{}', { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.ListTables' });
    assert.equal(unsigned.status, 400);
    assert.equal(typeOf(unsigned.body), 'com.amazonaws.dynamodb.v20120810#MissingAuthenticationTokenException');
    const lock = await serverRequest(server, 'LOCK', `/state/${LOCK_KEY}`, lockBody('11111111-2222-4333-8444-555555555555'));
    assert.equal(lock.status, 200, 'the http door still answers on the same port');
    const unlock = await serverRequest(server, 'UNLOCK', `/state/${LOCK_KEY}`, lockBody('11111111-2222-4333-8444-555555555555'));
    assert.equal(unlock.status, 200);
  });

  test('the AWS CLI: sts get-caller-identity and iam get-user', { skip: AWS_CLI_SKIP }, async () => {
    const sts = await awsCli(server, ['sts', 'get-caller-identity']);
    assert.equal(sts.code, 0, sts.stderr);
    assert.equal((JSON.parse(sts.stdout) as { Account: string }).Account, '000000000000');
    const iam = await awsCli(server, ['iam', 'get-user']);
    assert.equal(iam.code, 0, iam.stderr);
    assert.equal((JSON.parse(iam.stdout) as { User: { Arn: string } }).User.Arn, `arn:aws:iam::000000000000:user/${TEST_KEY.accessKeyId}`);
    const wrong = await awsCli(server, ['sts', 'get-caller-identity'], { credentials: { accessKeyId: TEST_KEY.accessKeyId, secretAccessKey: 'nope' } });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /SignatureDoesNotMatch/);
  });
});

describe('AWS door: no credentials configured', () => {
  test('on loopback any access key is accepted (the signature cannot be checked without a secret)', async () => {
    const server = await startAwsServer({ anyKey: true });
    try {
      const id = await stsClient(server, { credentials: { accessKeyId: 'anything', secretAccessKey: 'whatever' } }).send(new GetCallerIdentityCommand({}));
      assert.equal(id.UserId, 'anything');
    } finally {
      await server.stop();
    }
  });

  test('listening beyond loopback (--insecure-no-auth), no access key is accepted until one is configured', async () => {
    const server = await startAwsServer({ anyKey: true, args: ['--host', '0.0.0.0', '--insecure-no-auth'] });
    try {
      await assert.rejects(stsClient(server, { credentials: { accessKeyId: 'anything', secretAccessKey: 'whatever' } }).send(new GetCallerIdentityCommand({})), { name: 'InvalidAccessKeyId' });
    } finally {
      await server.stop();
    }
  });
});
