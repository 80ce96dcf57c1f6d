/**
 * The cost of the AWS doors, in one run on one server: a lock cycle (take + release) through Terraform's
 * DynamoDB calls (PutItem with attribute_not_exists, then DeleteItem) and through the S3 `.tflock` object
 * (PutObject If-None-Match, then DeleteObject), each set against the same cycle over the http backend
 * (LOCK + UNLOCK) — the baseline is statelock's own http door, so the ratio is what SigV4, the AWS wire
 * formats and the SDK add. Run: `npx tsc -p tsconfig.json && node dist/bench/aws-lock-cycle.js [cycles]`.
 */
import { DeleteItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Agent, request } from 'node:http';
import { dynamoClient, s3Client, startAwsServer } from '../test/support/aws.js';

const cycles = Number(process.argv[2] ?? 1000);
const server = await startAwsServer({ args: ['--log-level', 'error'] });
const url = new URL(server.url);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const info = (id: string) => JSON.stringify({ ID: id, Operation: 'OperationTypeApply', Info: '', Who: 'bench@host', Version: '1.11.4', Created: new Date().toISOString(), Path: '' });

function http(method: string, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: Number(url.port), path, method, agent, headers: { 'Content-Length': String(Buffer.byteLength(body)) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function measure(name: string, cycle: (i: number) => Promise<void>): Promise<number> {
  for (let i = 0; i < 50; i++) await cycle(-i - 1); // warm-up
  const started = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) await cycle(i);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rate = cycles / seconds;
  console.log(`${name.padEnd(34)} ${rate.toFixed(0).padStart(6)} cycles/s  (${((seconds / cycles) * 1000).toFixed(2)} ms per cycle)`);
  return rate;
}

const dynamo = dynamoClient(server);
const s3 = s3Client(server);
try {
  await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
  const results: Array<[string, number]> = [];
  for (let round = 0; round < 3; round++) {
    const base = await measure('http backend LOCK + UNLOCK', async (i) => {
      const body = info(`h-${round}-${i}`);
      if ((await http('LOCK', '/state/bench/http/terraform.tfstate', body)) !== 200) throw new Error('LOCK failed');
      if ((await http('UNLOCK', '/state/bench/http/terraform.tfstate', body)) !== 200) throw new Error('UNLOCK failed');
    });
    const ddb = await measure('DynamoDB PutItem + DeleteItem', async (i) => {
      const Key = { LockID: { S: 'bench/ddb/terraform.tfstate' } };
      await dynamo.send(new PutItemCommand({ TableName: 'terraform-state-lock', Item: { ...Key, Info: { S: info(`d-${round}-${i}`) } }, ConditionExpression: 'attribute_not_exists(LockID)' }));
      await dynamo.send(new DeleteItemCommand({ TableName: 'terraform-state-lock', Key }));
    });
    const file = await measure('S3 .tflock PutObject + DeleteObject', async (i) => {
      await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 's3/terraform.tfstate.tflock', Body: info(`s-${round}-${i}`), IfNoneMatch: '*', ContentType: 'application/json' }));
      await s3.send(new DeleteObjectCommand({ Bucket: 'bench', Key: 's3/terraform.tfstate.tflock' }));
    });
    results.push(['dynamodb', ddb / base], ['s3-lockfile', file / base]);
  }
  for (const door of ['dynamodb', 's3-lockfile']) {
    const ratios = results.filter(([d]) => d === door).map(([, r]) => r).sort((a, b) => a - b);
    console.log(`${door}: ${ratios[1]!.toFixed(2)}× the http backend's lock cycles/s (median of 3 rounds, ${cycles} cycles each)`);
  }
} finally {
  dynamo.destroy();
  s3.destroy();
  await server.stop();
}
