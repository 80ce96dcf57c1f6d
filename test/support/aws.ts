import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startServer, tempDir, type RunningServer } from './server-process.js';

/** Debian's awscli (installed by .ci/run): the real AWS CLI the lesson's commands are typed into. */
export const AWS_CLI = '/usr/bin/aws';
export const AWS_CLI_SKIP = existsSync(AWS_CLI) ? false : `${AWS_CLI} is missing: install Debian's awscli (.ci/run does)`;

/** The test access key the servers are started with when a test checks signatures. */
export const TEST_KEY = { accessKeyId: 'AKIDSTATELOCKTEST', secretAccessKey: 'statelock-test-secret-key' };
export const REGION = 'us-east-1';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  cert: Buffer;
}

/** A self-signed certificate for 127.0.0.1 and localhost, made with openssl(1). */
export function makeTlsCert(dir = tempDir('statelock-tls-')): TlsFiles {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.localhost',
    '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  return { certFile, keyFile, cert: readFileSync(certFile) };
}

export interface AwsServer extends RunningServer {
  tls: TlsFiles | null;
}

/** `statelock serve` with the AWS doors configured: checked credentials unless `anyKey`, HTTPS when `tls`. */
export async function startAwsServer(opts: { anyKey?: boolean; tls?: boolean; args?: string[]; dataDir?: string } = {}): Promise<AwsServer> {
  const tls = opts.tls ? makeTlsCert() : null;
  const args = [
    ...(opts.anyKey ? [] : ['--aws-credentials', `${TEST_KEY.accessKeyId}:${TEST_KEY.secretAccessKey}`]),
    ...(tls ? ['--tls-cert', tls.certFile, '--tls-key', tls.keyFile] : []),
    ...(opts.args ?? []),
  ];
  const server = await startServer({ args, ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) });
  return Object.assign(server, { tls });
}

function requestHandler(server: AwsServer): NodeHttpHandler | undefined {
  return server.tls ? new NodeHttpHandler({ httpsAgent: new HttpsAgent({ ca: server.tls.cert }) }) : undefined;
}

type Creds = { accessKeyId: string; secretAccessKey: string };

/** An S3 client as Terraform configures it: path style, static keys, the SDK's default checksums. */
export function s3Client(server: AwsServer, opts: { credentials?: Creds; forcePathStyle?: boolean; checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED' } = {}): S3Client {
  const handler = requestHandler(server);
  return new S3Client({
    endpoint: server.url,
    region: REGION,
    forcePathStyle: opts.forcePathStyle ?? true,
    credentials: opts.credentials ?? TEST_KEY,
    maxAttempts: 1,
    requestChecksumCalculation: opts.checksums ?? 'WHEN_SUPPORTED',
    responseChecksumValidation: opts.checksums ?? 'WHEN_SUPPORTED',
    ...(handler ? { requestHandler: handler } : {}),
  });
}

export function dynamoClient(server: AwsServer, opts: { credentials?: Creds } = {}): DynamoDBClient {
  const handler = requestHandler(server);
  return new DynamoDBClient({ endpoint: server.url, region: REGION, credentials: opts.credentials ?? TEST_KEY, maxAttempts: 1, ...(handler ? { requestHandler: handler } : {}) });
}

export function stsClient(server: AwsServer, opts: { credentials?: Creds } = {}): STSClient {
  const handler = requestHandler(server);
  return new STSClient({ endpoint: server.url, region: REGION, credentials: opts.credentials ?? TEST_KEY, maxAttempts: 1, ...(handler ? { requestHandler: handler } : {}) });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real AWS CLI against the server: `aws --endpoint-url <server> <args>`, with the test keys,
 * no config files, no pager, and the server's CA when it serves HTTPS.
 */
export function awsCli(server: AwsServer, args: string[], opts: { credentials?: Creds; stdin?: string | Buffer; env?: Record<string, string> } = {}): Promise<CliResult> {
  const creds = opts.credentials ?? TEST_KEY;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tempDir('statelock-awscli-home-'),
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_DEFAULT_REGION: REGION,
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_PAGER: '',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...(server.tls ? { AWS_CA_BUNDLE: server.tls.certFile } : {}),
    ...(opts.env ?? {}),
  };
  return new Promise((resolve) => {
    const child = execFile(AWS_CLI, ['--endpoint-url', server.url, ...args], { env, maxBuffer: 64 * 1024 * 1024, encoding: 'buffer' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') });
    });
    if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
    else child.stdin!.end();
  });
}

export interface PlainResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * A plain (unsigned) request to the server, over HTTPS with its CA when it serves HTTPS: for reading
 * through the http backend door and the API beside the AWS doors.
 */
export function serverRequest(server: AwsServer, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<PlainResponse> {
  const url = new URL(server.url);
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const options = {
    host: url.hostname,
    port: Number(url.port),
    path,
    method,
    headers: { ...(payload ? { 'Content-Length': String(payload.length) } : {}), ...headers },
    ...(server.tls ? { ca: server.tls.cert } : {}),
  };
  return new Promise((resolve, reject) => {
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    };
    const req = server.tls ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
    req.on('error', reject);
    req.end(payload);
  });
}
