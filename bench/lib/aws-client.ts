import { Client } from './client.js';
import { EMPTY_SHA256, sha256Hex, SigV4Signer, type AwsCredentials } from './sigv4.js';

export const REGION = 'us-east-1';
/** The lock table Terraform's `dynamodb_table` names (any name is the same view in statelock). */
export const LOCK_TABLE = 'terraform-state-lock';

/**
 * A SigV4-signing client on one keep-alive connection ({@link Client}): DynamoDB's AWS JSON 1.0 calls and
 * S3 object requests in path style, exactly as the same bytes go to statelock and to the emulators.
 */
export class AwsClient {
  private readonly http: Client;
  private readonly host: string;
  private readonly signer: SigV4Signer;

  constructor(baseUrl: string, credentials: AwsCredentials, service: 's3' | 'dynamodb') {
    this.http = new Client(baseUrl);
    this.host = new URL(baseUrl).host;
    this.signer = new SigV4Signer(credentials, REGION, service);
  }

  /** One DynamoDB call; the payload hash is the body's SHA-256, as the SDKs sign it. */
  dynamo(operation: string, input: unknown): Promise<{ status: number; body: Buffer }> {
    const body = Buffer.from(JSON.stringify(input));
    const headers = this.signer.sign(
      'POST',
      '/',
      { host: this.host, 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `DynamoDB_20120810.${operation}` },
      sha256Hex(body),
    );
    return this.http.send('POST', '/', body, headers);
  }

  /**
   * One S3 request. `payloadHash` is the body's hex SHA-256 (computed once by the caller for a big body),
   * sent as x-amz-content-sha256 and signed, as the Go SDK does over plain HTTP.
   */
  s3(method: string, path: string, body?: Buffer, payloadHash = EMPTY_SHA256, extra: Record<string, string> = {}): Promise<{ status: number; bytes: number; body: Buffer }> {
    const headers = this.signer.sign(method, path, { host: this.host, 'x-amz-content-sha256': payloadHash, ...extra }, payloadHash);
    return this.http.send(method, path, body, headers);
  }

  close(): void {
    this.http.close();
  }
}

/** CreateTable for a Terraform lock table (`LockID` S HASH, on demand), then DescribeTable until ACTIVE. */
export async function createLockTable(client: AwsClient, table = LOCK_TABLE, timeoutMs = 15_000): Promise<void> {
  const created = await client.dynamo('CreateTable', {
    TableName: table,
    AttributeDefinitions: [{ AttributeName: 'LockID', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'LockID', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  });
  if (created.status !== 200) throw new Error(`CreateTable ${table}: ${created.status} ${created.body.toString()}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const described = await client.dynamo('DescribeTable', { TableName: table });
    const status = described.status === 200 ? (JSON.parse(described.body.toString()) as { Table?: { TableStatus?: string } }).Table?.TableStatus : undefined;
    if (status === 'ACTIVE') return;
    if (Date.now() > deadline) throw new Error(`table ${table} not ACTIVE after ${timeoutMs} ms: ${described.status} ${described.body.toString()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CreateBucket `PUT /<bucket>` (path style). */
export async function createBucket(client: AwsClient, bucket: string): Promise<void> {
  const res = await client.s3('PUT', `/${bucket}`);
  if (res.status !== 200) throw new Error(`CreateBucket ${bucket}: ${res.status} ${res.body.toString()}`);
}
