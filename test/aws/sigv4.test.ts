import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { HttpRequest, buildQueryString, escapeUri } from '@smithy/core/protocols';
import { GetObjectCommand, ListObjectVersionsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { StatelockError } from '../../src/server/errors.js';
import {
  DEFAULT_MAX_CLOCK_SKEW_MS,
  formatAmzDate,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  checkClockSkew,
  headerValues,
  isSigV4,
  parseAuthorization,
  parseRawQuery,
  requestTime,
  signingKey,
  stringToSign,
  verifySignature,
  streamingSignatureCheck,
  type SignedRequest,
  type SigV4Authorization,
} from '../../src/protocols/aws/sigv4.js';
import { AwsChunkedDecoder, decodeAwsChunked } from '../../src/protocols/aws/aws-chunked.js';
import { verifyChecksums } from '../../src/protocols/aws/checksums.js';

/**
 * SigV4 verification against the real signer of the AWS SDK for JavaScript (@smithy/signature-v4), against
 * published AWS test vectors recomputed here with node:crypto alone, and against what the real S3, DynamoDB
 * and STS clients put on the wire (a loopback capture server).
 */

const ACCESS_KEY_ID = 'AKIDSTATELOCKTEST';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const REGION = 'us-east-1';
const HOST = '127.0.0.1:9000';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** The fixed "now" of the signer tests. */
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0);

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------------------
// helpers

interface SdkSignInput {
  service: 's3' | 'dynamodb' | 'sts';
  method: string;
  /** the path as the SDK puts it on the request line (S3: each key segment already escaped once) */
  path: string;
  query?: Record<string, string | string[]>;
  headers?: Record<string, string>;
  body?: string;
  /** S3 only: the x-amz-content-sha256 value; defaults to the hex sha256 of the body */
  payloadHash?: string;
  signingDate?: Date;
  sessionToken?: string;
  /** the raw query on the wire, when it differs from the SDK's serialisation of `query` */
  rawQuery?: string;
}

interface Signed {
  req: SignedRequest;
  authorization: string;
  payloadHash: string;
}

/** Signs a request with the AWS SDK's own SignatureV4, configured as the service clients configure it. */
async function sdkSign(input: SdkSignInput): Promise<Signed> {
  const body = input.body ?? '';
  const headers: Record<string, string> = { host: HOST, ...input.headers };
  if (input.service === 's3') headers['x-amz-content-sha256'] = input.payloadHash ?? sha256Hex(body);
  const signer = new SignatureV4({
    service: input.service,
    region: REGION,
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET, ...(input.sessionToken ? { sessionToken: input.sessionToken } : {}) },
    sha256: Sha256,
    uriEscapePath: input.service !== 's3', // the S3 client signs the path as sent; the others double-encode
    applyChecksum: false, // like the Go SDK: no x-amz-content-sha256 header for DynamoDB/STS
  });
  const request = new HttpRequest({
    method: input.method,
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: 9000,
    path: input.path,
    query: input.query ?? {},
    headers,
    body: input.body,
  });
  const signed = await signer.sign(request, { signingDate: input.signingDate ?? new Date(NOW) });
  const authorization = signed.headers['authorization'];
  assert.ok(authorization, 'the SDK produced an Authorization header');
  return {
    req: {
      method: input.method,
      rawPath: input.path,
      rawQuery: input.rawQuery ?? buildQueryString(input.query ?? {}),
      rawHeaders: Object.entries(signed.headers).flatMap(([name, value]) => [name, value]),
    },
    authorization,
    payloadHash: input.service === 's3' ? headers['x-amz-content-sha256']! : sha256Hex(body),
  };
}

/** Runs the whole server-side check, as the S3/DynamoDB door will. */
function verify(signed: Signed, options: { secret?: string; now?: number } = {}): SigV4Authorization {
  const auth = parseAuthorization(signed.authorization);
  const { amzDate, ms } = requestTime(auth, signed.req);
  checkClockSkew(amzDate, ms, options.now ?? NOW);
  verifySignature(signed.req, auth, options.secret ?? SECRET, signed.payloadHash);
  return auth;
}

function expectCode(fn: () => unknown, code: string): StatelockError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StatelockError, `expected ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.doesNotMatch(caught.message, /\{\w+\}/, 'every placeholder is filled');
  return caught;
}

const expectMismatch = (signed: Signed, secret?: string): StatelockError =>
  expectCode(() => verify(signed, secret === undefined ? {} : { secret }), 'AWS_SIGNATURE_MISMATCH');

/** A copy of `signed` with the request changed. */
function tamper(signed: Signed, change: Partial<SignedRequest> & { payloadHash?: string }): Signed {
  const { payloadHash, ...req } = change;
  return { ...signed, req: { ...signed.req, ...req }, payloadHash: payloadHash ?? signed.payloadHash };
}

/** rawHeaders with every value of `name` replaced by `value` (or the header removed when value is null). */
function setHeader(rawHeaders: string[], name: string, value: string | null): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== name.toLowerCase()) out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
    else if (value !== null) out.push(rawHeaders[i]!, value);
  }
  return out;
}

/** The path the S3 client puts on the wire for a key (each segment escaped like encodeURIComponent plus !'()*). */
function s3Path(bucket: string, key: string): string {
  return `/${bucket}/${key.split('/').map(escapeUri).join('/')}`;
}

// ---------------------------------------------------------------------------------------------------------

describe('parseAuthorization / isSigV4', () => {
  const good =
    'AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=' +
    'ab'.repeat(32);

  test('parses the three components', () => {
    assert.deepEqual(parseAuthorization(good), {
      accessKeyId: 'AKID',
      date: '20261126',
      region: 'us-east-1',
      service: 's3',
      signedHeaders: ['host', 'x-amz-content-sha256', 'x-amz-date'],
      signedHeadersRaw: 'host;x-amz-content-sha256;x-amz-date',
      signature: 'ab'.repeat(32),
    });
  });

  test('accepts the no-space form (Go v1, Java) and any component order', () => {
    const compact = good.replace(/, /g, ',');
    assert.equal(parseAuthorization(compact).service, 's3');
    const reordered = `AWS4-HMAC-SHA256 Signature=${'cd'.repeat(32)},SignedHeaders=host,Credential=K/20261126/eu-west-1/dynamodb/aws4_request`;
    const auth = parseAuthorization(reordered);
    assert.equal(auth.region, 'eu-west-1');
    assert.equal(auth.service, 'dynamodb');
    assert.equal(auth.signature, 'cd'.repeat(32));
  });

  test('isSigV4', () => {
    assert.equal(isSigV4(good), true);
    assert.equal(isSigV4(undefined), false);
    assert.equal(isSigV4(''), false);
    assert.equal(isSigV4('AWS AKID:c2lnbmF0dXJl'), false); // SigV2
    assert.equal(isSigV4('Bearer x'), false);
    assert.equal(isSigV4('AWS4-HMAC-SHA256-PAYLOAD x'), false);
    assert.equal(isSigV4('AWS4-ECDSA-P256-SHA256 Credential=x'), false); // SigV4a is not SigV4
  });

  test('malformed headers give AWS_AUTH_MALFORMED with a reason', () => {
    const sig = 'ab'.repeat(32);
    const cases: Array<[string, RegExp]> = [
      ['', /must start with "AWS4-HMAC-SHA256 "/],
      ['AWS4-HMAC-SHA256', /Credential, SignedHeaders and Signature components are missing/],
      ['AWS4-HMAC-SHA256   ', /components are missing/],
      ['AWS AKID:sig', /must start with/],
      [`AWS4-HMAC-SHA256 SignedHeaders=host, Signature=${sig}`, /Credential component is missing/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, Signature=${sig}`, /SignedHeaders component is missing/],
      ['AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host', /Signature component is missing/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig.slice(2)}`, /64 hexadecimal/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${'zz'.repeat(32)}`, /64 hexadecimal/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3, SignedHeaders=host, Signature=${sig}`, /Credential must be/],
      [`AWS4-HMAC-SHA256 Credential=A/2026-11-26/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}`, /not yyyymmdd/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws5_request, SignedHeaders=host, Signature=${sig}`, /must end with "aws4_request"/],
      [`AWS4-HMAC-SHA256 Credential=/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}`, /empty access key/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126//s3/aws4_request, SignedHeaders=host, Signature=${sig}`, /empty region/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=${sig}`, /must include host/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=Host;x-amz-date, Signature=${sig}`, /lowercase/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;;x-amz-date, Signature=${sig}`, /lowercase header names/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;host, Signature=${sig}`, /twice/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, Credential=B/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}`, /given twice/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}, Extra=1`, /unknown component "Extra"/],
      [`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig},`, /not a name=value/],
    ];
    for (const [header, reason] of cases) {
      const err = expectCode(() => parseAuthorization(header), 'AWS_AUTH_MALFORMED');
      assert.match(String(err.params['reason']), reason, header);
      assert.equal(err.status, 400);
    }
  });
});

describe('requestTime and clock skew', () => {
  const auth = parseAuthorization(`AWS4-HMAC-SHA256 Credential=A/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`);
  const req = (rawHeaders: string[]): SignedRequest => ({ method: 'GET', rawPath: '/', rawQuery: '', rawHeaders });

  test('reads X-Amz-Date (any case), else Date', () => {
    assert.deepEqual(requestTime(auth, req(['X-Amz-Date', '20261126T120000Z'])), { amzDate: '20261126T120000Z', ms: NOW });
    assert.deepEqual(requestTime(auth, req(['Date', '20261126T120000Z'])), { amzDate: '20261126T120000Z', ms: NOW });
    assert.equal(requestTime(auth, req(['date', 'Thu, 26 Nov 2026 11:00:00 GMT', 'x-amz-date', '20261126T120000Z'])).ms, NOW);
  });

  test('missing, repeated, malformed or out-of-scope timestamps give AWS_AUTH_MALFORMED', () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /neither an X-Amz-Date nor a Date header/],
      [['x-amz-date', '20261126T120000Z', 'x-amz-date', '20261126T120001Z'], /given 2 times/],
      [['x-amz-date', '2026-11-26T12:00:00Z'], /not a valid yyyymmddThhmmssZ/],
      [['x-amz-date', '20261126T120000'], /not a valid/],
      [['x-amz-date', '20261131T120000Z'], /not a valid/], // 31 November
      [['x-amz-date', '20261126T250000Z'], /not a valid/],
      [['date', 'Thu, 26 Nov 2026 12:00:00 GMT'], /not a valid/],
      [['x-amz-date', '20261127T000000Z'], /scope date 20261126 does not match/],
    ];
    for (const [headers, reason] of cases) {
      const err = expectCode(() => requestTime(auth, req(headers)), 'AWS_AUTH_MALFORMED');
      assert.match(String(err.params['reason']), reason, JSON.stringify(headers));
    }
  });

  test('checkClockSkew: 15 minutes either way is allowed, more is AWS_CLOCK_SKEW', () => {
    assert.equal(DEFAULT_MAX_CLOCK_SKEW_MS, 900_000);
    checkClockSkew('x', NOW, NOW + 900_000);
    checkClockSkew('x', NOW, NOW - 900_000);
    const err = expectCode(() => checkClockSkew('20261126T120000Z', NOW, NOW + 900_001), 'AWS_CLOCK_SKEW');
    assert.deepEqual(err.params, { requestTime: '20261126T120000Z', serverTime: '20261126T121500Z', maxSkew: '15 minutes' });
    assert.equal(err.status, 403);
    expectCode(() => checkClockSkew('x', NOW, NOW - 900_001), 'AWS_CLOCK_SKEW');
    checkClockSkew('x', NOW, NOW + 30_000, 30_000);
    const custom = expectCode(() => checkClockSkew('x', NOW, NOW + 30_001, 30_000), 'AWS_CLOCK_SKEW');
    assert.equal(custom.params['maxSkew'], '30 seconds');
  });
});

describe('canonical parts', () => {
  test("canonical query matches the reference's captured example", () => {
    assert.equal(canonicalQuery('list-type=2&prefix=env%3A%2F&delimiter=%2F&encoding-type=url'), 'delimiter=%2F&encoding-type=url&list-type=2&prefix=env%3A%2F');
  });

  test('canonical query: no "=" means an empty value, sorting by name then value, re-encoding', () => {
    assert.equal(canonicalQuery(''), '');
    assert.equal(canonicalQuery('versions'), 'versions=');
    assert.equal(canonicalQuery('uploads&prefix=a'), 'prefix=a&uploads=');
    assert.equal(canonicalQuery('b=2&a=2&a=1&A=0'), 'A=0&a=1&a=2&b=2');
    assert.equal(canonicalQuery('k=%3a%2f'), 'k=%3A%2F'); // lower-case hex is normalised
    assert.equal(canonicalQuery('k=a:b/c'), 'k=a%3Ab%2Fc'); // unescaped reserved characters are escaped
    assert.equal(canonicalQuery('k=a%20b'), 'k=a%20b');
    assert.equal(canonicalQuery('k=%7E%2D%5F%2E'), 'k=~-_.'); // unreserved characters are never escaped
    assert.equal(canonicalQuery("k=!'()*"), 'k=%21%27%28%29%2A');
    assert.equal(canonicalQuery('k=%C3%BC&j=ü'), 'j=%C3%BC&k=%C3%BC');
    assert.equal(canonicalQuery('k=100%'), 'k=100%25'); // a lone % is a literal %
    assert.equal(canonicalQuery('a=1&&b=2'), 'a=1&b=2');
  });

  test("'+' in a raw query is a literal '+' (RFC 3986, as the SDKs escape it: %2B), never a space", () => {
    assert.equal(canonicalQuery('prefix=a+b'), 'prefix=a%2Bb');
    assert.equal(canonicalQuery('prefix=a%2Bb'), 'prefix=a%2Bb');
    assert.equal(canonicalQuery('prefix=a%20b'), 'prefix=a%20b');
    assert.deepEqual(parseRawQuery('prefix=a+b&versions&x=%20'), [
      ['prefix', 'a+b'],
      ['versions', ''],
      ['x', ' '],
    ]);
  });

  test('canonical URI: verbatim for S3, normalised and encoded again for other services', () => {
    assert.equal(canonicalUri('/bucket/env%3A/dev/x%20y', 's3'), '/bucket/env%3A/dev/x%20y');
    assert.equal(canonicalUri('/bucket//a/./b/../c', 's3'), '/bucket//a/./b/../c');
    assert.equal(canonicalUri('', 's3'), '/');
    assert.equal(canonicalUri('/', 'dynamodb'), '/');
    assert.equal(canonicalUri('', 'sts'), '/');
    assert.equal(canonicalUri('/a//b/./c/../d/', 'service'), '/a/b/d/');
    assert.equal(canonicalUri('/a%20b', 'service'), '/a%2520b');
    assert.equal(canonicalUri('/..', 'service'), '/');
  });

  test('canonical headers: every value of a name in order, trimmed, whitespace collapsed, joined with ","', () => {
    const auth = parseAuthorization(`AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=${'0'.repeat(64)}`);
    const req: SignedRequest = {
      method: 'GET',
      rawPath: '/',
      rawQuery: '',
      rawHeaders: ['Host', 'example.amazonaws.com', 'My-Header1', '  value1  ', 'X-Amz-Date', '20150830T123600Z', 'my-header1', 'a   b \t c', 'User-Agent', 'not signed'],
    };
    assert.equal(
      canonicalRequest(req, auth, EMPTY_SHA256),
      ['GET', '/', '', 'host:example.amazonaws.com', 'my-header1:value1,a b c', 'x-amz-date:20150830T123600Z', '', 'host;my-header1;x-amz-date', EMPTY_SHA256].join('\n'),
    );
    assert.deepEqual(headerValues(req.rawHeaders, 'MY-HEADER1'), ['  value1  ', 'a   b \t c']);
  });
});

describe('published AWS vectors, recomputed independently with node:crypto', () => {
  const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
  /** An independent SigV4 signature: key derivation and HMAC written out here, not taken from sigv4.ts. */
  function independentSignature(secret: string, scope: string[], amzDate: string, canonical: string): string {
    const [date, region, service] = scope as [string, string, string];
    const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${date}/${region}/${service}/aws4_request\n${sha256Hex(canonical)}`;
    return hmac(key, toSign).toString('hex');
  }

  test('get-vanilla (AWS SigV4 test suite)', () => {
    const canonical = 'GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n' + EMPTY_SHA256;
    const expected = independentSignature(SECRET, ['20150830', 'us-east-1', 'service'], '20150830T123600Z', canonical);
    assert.equal(expected, '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'); // AWS's published value
    const authorization = `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=${expected}`;
    const req: SignedRequest = { method: 'GET', rawPath: '/', rawQuery: '', rawHeaders: ['Host', 'example.amazonaws.com', 'X-Amz-Date', '20150830T123600Z'] };
    const auth = parseAuthorization(authorization);
    assert.equal(canonicalRequest(req, auth, EMPTY_SHA256), canonical);
    assert.equal(
      stringToSign('20150830T123600Z', auth, canonical),
      `AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n${sha256Hex(canonical)}`,
    );
    assert.ok(signingKey(SECRET, '20150830', 'us-east-1', 'service').equals(hmac(hmac(hmac(hmac(`AWS4${SECRET}`, '20150830'), 'us-east-1'), 'service'), 'aws4_request')));
    verifySignature(req, auth, SECRET, EMPTY_SHA256);
    expectCode(() => verifySignature(req, auth, `${SECRET}x`, EMPTY_SHA256), 'AWS_SIGNATURE_MISMATCH');
  });

  test('get-vanilla-query-order-key-case (AWS SigV4 test suite)', () => {
    const canonical = 'GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n' + EMPTY_SHA256;
    const expected = independentSignature(SECRET, ['20150830', 'us-east-1', 'service'], '20150830T123600Z', canonical);
    assert.equal(expected, 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500');
    const req: SignedRequest = { method: 'GET', rawPath: '/', rawQuery: 'Param2=value2&Param1=value1', rawHeaders: ['Host', 'example.amazonaws.com', 'X-Amz-Date', '20150830T123600Z'] };
    const auth = parseAuthorization(`AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=${expected}`);
    assert.equal(canonicalRequest(req, auth, EMPTY_SHA256), canonical);
    verifySignature(req, auth, SECRET, EMPTY_SHA256);
  });

  const S3_DOC_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

  test('S3 documentation: GET Object with a Range header', () => {
    const req: SignedRequest = {
      method: 'GET',
      rawPath: '/test.txt',
      rawQuery: '',
      rawHeaders: ['Host', 'examplebucket.s3.amazonaws.com', 'Range', 'bytes=0-9', 'x-amz-content-sha256', EMPTY_SHA256, 'x-amz-date', '20130524T000000Z'],
    };
    const canonical = `GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:${EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n${EMPTY_SHA256}`;
    const expected = independentSignature(S3_DOC_SECRET, ['20130524', 'us-east-1', 's3'], '20130524T000000Z', canonical);
    assert.equal(expected, 'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41');
    const auth = parseAuthorization(
      `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=${expected}`,
    );
    assert.equal(canonicalRequest(req, auth, EMPTY_SHA256), canonical);
    verifySignature(req, auth, S3_DOC_SECRET, EMPTY_SHA256);
  });

  /** The AWS documentation's chunked-upload examples: 65 KiB of 'a' in 64 KiB chunks. */
  const DOC_DATA = Buffer.alloc(66_560, 'a');
  function docChunkedRequest(payloadHash: string, extraHeaders: string[], signedHeaders: string, seed: string): { req: SignedRequest; auth: SigV4Authorization } {
    const req: SignedRequest = {
      method: 'PUT',
      rawPath: '/examplebucket/chunkObject.txt',
      rawQuery: '',
      rawHeaders: [
        'Host', 's3.amazonaws.com',
        'x-amz-date', '20130524T000000Z',
        'x-amz-storage-class', 'REDUCED_REDUNDANCY',
        'x-amz-content-sha256', payloadHash,
        'Content-Encoding', 'aws-chunked',
        'x-amz-decoded-content-length', '66560',
        ...extraHeaders,
      ],
    };
    const auth = parseAuthorization(`AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=${signedHeaders},Signature=${seed}`);
    return { req, auth };
  }
  const chunkLine = (size: number, sig: string): string => `${size.toString(16)};chunk-signature=${sig}\r\n`;

  test('S3 documentation: signed chunked upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), seed and every chunk', () => {
    const { req, auth } = docChunkedRequest(
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
      ['Content-Length', '66824'],
      'content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class',
      '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
    );
    verifySignature(req, auth, S3_DOC_SECRET, 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD');
    const raw = Buffer.concat([
      Buffer.from(chunkLine(65_536, 'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648')),
      DOC_DATA.subarray(0, 65_536),
      Buffer.from(`\r\n${chunkLine(1024, '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497')}`),
      DOC_DATA.subarray(65_536),
      Buffer.from(`\r\n${chunkLine(0, 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9')}\r\n`),
    ]);
    assert.equal(raw.length, 66_824, 'the documented Content-Length');
    const check = (secret = S3_DOC_SECRET) => streamingSignatureCheck(auth, '20130524T000000Z', secret, false);
    const decoded = decodeAwsChunked(raw, 66_560, check());
    assert.ok(decoded.body.equals(DOC_DATA));

    // a changed byte, a reordered chain, missing signatures or the wrong secret fail
    const flipped = Buffer.from(raw);
    flipped[raw.indexOf('\r\n') + 2 + 70_000 - 65_536] = 0x62;
    expectCode(() => decodeAwsChunked(flipped, 66_560, check()), 'AWS_SIGNATURE_MISMATCH');
    const text = raw.toString('latin1');
    const sigs = [...text.matchAll(/chunk-signature=([0-9a-f]{64})/g)].map((m) => m[1]!);
    const swapped = text.replace(sigs[0]!, 'FIRST').replace(sigs[1]!, sigs[0]!).replace('FIRST', sigs[1]!);
    expectCode(() => decodeAwsChunked(Buffer.from(swapped, 'latin1'), 66_560, check()), 'AWS_SIGNATURE_MISMATCH');
    expectCode(() => decodeAwsChunked(raw, 66_560, check('other')), 'AWS_SIGNATURE_MISMATCH');
    const unsigned = text.replace(/;chunk-signature=[0-9a-f]{64}/g, '');
    expectCode(() => decodeAwsChunked(Buffer.from(unsigned, 'latin1'), 66_560, check()), 'AWS_SIGNATURE_MISMATCH');
    // the first bad chunk is refused as soon as it completes, before the rest of the body has arrived
    const early = new AwsChunkedDecoder(66_560, streamingSignatureCheck(auth, '20130524T000000Z', S3_DOC_SECRET, false));
    expectCode(() => early.push(flipped.subarray(0, raw.indexOf('\r\n') + 2 + 65_536)), 'AWS_SIGNATURE_MISMATCH');
  });

  test('S3 documentation: signed chunked upload with a signed trailer (…-PAYLOAD-TRAILER)', () => {
    const { req, auth } = docChunkedRequest(
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
      ['x-amz-trailer', 'x-amz-checksum-crc32c'],
      'content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer',
      '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e',
    );
    verifySignature(req, auth, S3_DOC_SECRET, 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER');
    const trailer = (crc: string, sig: string): string => `x-amz-checksum-crc32c:${crc}\r\nx-amz-trailer-signature:${sig}\r\n\r\n`;
    const body = (trailerText: string): Buffer =>
      Buffer.concat([
        Buffer.from(chunkLine(65_536, 'b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2')),
        DOC_DATA.subarray(0, 65_536),
        Buffer.from(`\r\n${chunkLine(1024, '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7')}`),
        DOC_DATA.subarray(65_536),
        Buffer.from(`\r\n${chunkLine(0, '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992')}${trailerText}`),
      ]);
    const goodSig = 'd81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435';
    const check = () => streamingSignatureCheck(auth, '20130524T000000Z', S3_DOC_SECRET, true);
    const decoded = decodeAwsChunked(body(trailer('sOO8/Q==', goodSig)), 66_560, check());
    assert.deepEqual(verifyChecksums({}, decoded.trailers, decoded.body), { crc32c: 'sOO8/Q==' });

    // the trailer signature covers the trailer value, and must be present
    expectCode(() => decodeAwsChunked(body(trailer('sOO8/A==', goodSig)), 66_560, check()), 'AWS_SIGNATURE_MISMATCH');
    expectCode(() => decodeAwsChunked(body('x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n'), 66_560, check()), 'AWS_SIGNATURE_MISMATCH');
  });
});

describe('verification of requests signed by the AWS SDK (@smithy/signature-v4)', () => {
  test('S3 ListObjectsV2 with list-type=2&prefix=env%3A%2F&encoding-type=url', async () => {
    const signed = await sdkSign({
      service: 's3',
      method: 'GET',
      path: '/bucket',
      query: { 'list-type': '2', prefix: 'env:/', delimiter: '/', 'encoding-type': 'url' },
      payloadHash: EMPTY_SHA256,
    });
    assert.equal(signed.req.rawQuery, 'delimiter=%2F&encoding-type=url&list-type=2&prefix=env%3A%2F');
    const auth = verify(signed);
    assert.equal(auth.service, 's3');
    assert.equal(auth.accessKeyId, ACCESS_KEY_ID);

    // the same parameters in another order, or with lower-case escapes, are the same request
    verify(tamper(signed, { rawQuery: 'list-type=2&prefix=env%3a%2f&encoding-type=url&delimiter=%2F' }));
    // a changed, added or removed parameter is not
    expectMismatch(tamper(signed, { rawQuery: 'delimiter=%2F&encoding-type=url&list-type=2&prefix=env%3A%2Fdev' }));
    expectMismatch(tamper(signed, { rawQuery: `${signed.req.rawQuery}&max-keys=1` }));
    expectMismatch(tamper(signed, { rawQuery: 'delimiter=%2F&list-type=2&prefix=env%3A%2F' }));
    expectMismatch(tamper(signed, { rawQuery: '' }));
  });

  test("S3 ?versions without '=' (botocore's form) verifies against the SDK's 'versions='", async () => {
    const signed = await sdkSign({ service: 's3', method: 'GET', path: '/bucket', query: { versions: '', prefix: 'a+b c' }, rawQuery: 'versions&prefix=a%2Bb%20c' });
    verify(signed);
    verify(tamper(signed, { rawQuery: 'prefix=a%2Bb%20c&versions=' }));
    // '+' on the wire is a literal plus, so it is the same as %2B …
    verify(tamper(signed, { rawQuery: 'versions&prefix=a+b%20c' }));
    // … and not a space
    expectMismatch(tamper(signed, { rawQuery: 'versions&prefix=a%2Bb+c' }));
  });

  test('S3 PutObject with a hex payload hash, key "env:/dev/x y" encoded as the S3 client does', async () => {
    const body = '{"version":4,"serial":1,"lineage":"l"}\n';
    const path = s3Path('tfstate', 'env:/dev/x y');
    assert.equal(path, '/tfstate/env%3A/dev/x%20y');
    const signed = await sdkSign({
      service: 's3',
      method: 'PUT',
      path,
      query: { 'x-id': 'PutObject' },
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'aws-sdk-go-v2/1.41.5', expect: '100-continue' },
      body,
    });
    assert.equal(signed.payloadHash, sha256Hex(body));
    verify(signed);

    expectMismatch(signed, 'wrong-secret');
    expectMismatch(tamper(signed, { method: 'POST' }));
    expectMismatch(tamper(signed, { rawPath: '/tfstate/env%3A/prod/x%20y' }));
    expectMismatch(tamper(signed, { rawPath: '/tfstate/env%3A/dev/x+y' }));
    expectMismatch(tamper(signed, { rawQuery: 'x-id=GetObject' }));
    expectMismatch(tamper(signed, { payloadHash: sha256Hex(`${body} `) }));
    expectMismatch(tamper(signed, { payloadHash: 'UNSIGNED-PAYLOAD' }));
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'content-type', 'text/plain') }));
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'host', 'evil.example:9000') }));
    expectMismatch(tamper(signed, { rawHeaders: [...signed.req.rawHeaders, 'Content-Type', 'text/plain'] })); // a second value of a signed header
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'content-type', null) })); // a signed header removed

    // headers the SDK does not sign may change or appear
    const unsignedChanged = setHeader(setHeader(signed.req.rawHeaders, 'user-agent', 'curl/8'), 'expect', null);
    verify(tamper(signed, { rawHeaders: [...unsignedChanged, 'X-Forwarded-For', '10.0.0.1'] }));
    // header-name case and whitespace are not part of the signature
    const reshaped = signed.req.rawHeaders.map((item, i) => (i % 2 === 0 ? item.toUpperCase() : `  ${item}  `));
    verify(tamper(signed, { rawHeaders: reshaped }));
  });

  test('S3 tolerant path: lower-case escapes or unescaped ":" still verify, a different key does not', async () => {
    const signed = await sdkSign({ service: 's3', method: 'GET', path: '/tfstate/env%3A/dev/app.tfstate', payloadHash: EMPTY_SHA256 });
    verify(signed);
    verify(tamper(signed, { rawPath: '/tfstate/env%3a/dev/app.tfstate' }));
    verify(tamper(signed, { rawPath: '/tfstate/env:/dev/app.tfstate' }));
    expectMismatch(tamper(signed, { rawPath: '/tfstate/env%3A/dev/app.tfstatf' }));
    expectMismatch(tamper(signed, { rawPath: '/tfstate/env%253A/dev/app.tfstate' }));
  });

  test("S3 keys with characters the S3 client escapes beyond encodeURIComponent (!'()*) and non-ASCII", async () => {
    const key = "env:/dev/a+b (1)!*'ü~.tfstate";
    const path = s3Path('tfstate', key);
    assert.equal(path, '/tfstate/env%3A/dev/a%2Bb%20%281%29%21%2A%27%C3%BC~.tfstate');
    const signed = await sdkSign({ service: 's3', method: 'PUT', path, query: { 'x-id': 'PutObject' }, payloadHash: 'UNSIGNED-PAYLOAD', body: 'x' });
    verify(signed);
  });

  test('S3 UNSIGNED-PAYLOAD and STREAMING-UNSIGNED-PAYLOAD-TRAILER are signed as literal strings', async () => {
    for (const payloadHash of ['UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER']) {
      const signed = await sdkSign({
        service: 's3',
        method: 'PUT',
        path: '/tfstate/app.tfstate',
        query: { 'x-id': 'PutObject' },
        headers: { 'x-amz-checksum-sha256': 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=' },
        payloadHash,
      });
      assert.equal(signed.payloadHash, payloadHash);
      verify(signed);
      expectMismatch(tamper(signed, { payloadHash: EMPTY_SHA256 }));
      expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'x-amz-checksum-sha256', 'AAAA') }));
    }
  });

  test('S3 with session credentials: X-Amz-Security-Token is signed', async () => {
    const signed = await sdkSign({ service: 's3', method: 'GET', path: '/tfstate', query: { location: '' }, sessionToken: 'FQoGZXIvYXdzE//token+/=', payloadHash: EMPTY_SHA256 });
    assert.ok(parseAuthorization(signed.authorization).signedHeaders.includes('x-amz-security-token'));
    verify(signed);
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'x-amz-security-token', 'other') }));
  });

  test('DynamoDB POST / with X-Amz-Target: the payload hash is the sha256 of the body', async () => {
    const body = JSON.stringify({ TableName: 'locks', Key: { LockID: { S: 'tfstate/app.tfstate' } }, ConsistentRead: true });
    const signed = await sdkSign({
      service: 'dynamodb',
      method: 'POST',
      path: '/',
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.GetItem' },
      body,
    });
    assert.equal(signed.payloadHash, sha256Hex(body));
    assert.equal(headerValues(signed.req.rawHeaders, 'x-amz-content-sha256').length, 0);
    const auth = verify(signed);
    assert.equal(auth.service, 'dynamodb');
    assert.ok(auth.signedHeaders.includes('x-amz-target'));

    expectMismatch(signed, SECRET.toLowerCase());
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'x-amz-target', 'DynamoDB_20120810.DeleteItem') }));
    expectMismatch(tamper(signed, { payloadHash: sha256Hex(body.replace('app', 'other')) }));
    expectMismatch(tamper(signed, { rawPath: '/x' }));
    expectMismatch(tamper(signed, { method: 'PUT' }));
    expectMismatch(tamper(signed, { rawQuery: 'a=b' }));
    // for non-S3 services the path is normalised, so these are the same canonical URI
    verify(tamper(signed, { rawPath: '' }));
    verify(tamper(signed, { rawPath: '//' }));
  });

  test('STS POST / GetCallerIdentity (form-encoded body)', async () => {
    const body = 'Action=GetCallerIdentity&Version=2011-06-15';
    const signed = await sdkSign({ service: 'sts', method: 'POST', path: '/', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body });
    assert.equal(verify(signed).service, 'sts');
    expectMismatch(tamper(signed, { payloadHash: sha256Hex('Action=AssumeRole&Version=2011-06-15') }));
    expectMismatch(signed, 'test');
  });

  test('a non-S3 path is encoded twice, exactly as the SDK signer does', async () => {
    const signed = await sdkSign({ service: 'sts', method: 'GET', path: '/a%20b/c:d/./e/../f', body: '' });
    verify(signed);
  });

  test('clock skew: more than 15 minutes before or after the server clock is AWS_CLOCK_SKEW', async () => {
    for (const offset of [-16 * 60_000, 16 * 60_000]) {
      const signed = await sdkSign({ service: 's3', method: 'GET', path: '/tfstate', payloadHash: EMPTY_SHA256, signingDate: new Date(NOW + offset) });
      const err = expectCode(() => verify(signed), 'AWS_CLOCK_SKEW');
      assert.equal(err.params['serverTime'], '20261126T120000Z');
      assert.equal(err.params['maxSkew'], '15 minutes');
      // the signature itself is fine: only the clock refuses it
      verify(signed, { now: NOW + offset });
    }
    for (const offset of [-14 * 60_000, 14 * 60_000]) {
      verify(await sdkSign({ service: 's3', method: 'GET', path: '/tfstate', payloadHash: EMPTY_SHA256, signingDate: new Date(NOW + offset) }));
    }
  });

  test('a tampered x-amz-date fails the signature (or the scope check when the day changes)', async () => {
    const signed = await sdkSign({ service: 's3', method: 'GET', path: '/tfstate', payloadHash: EMPTY_SHA256 });
    expectMismatch(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'x-amz-date', '20261126T120001Z') }));
    expectCode(() => verify(tamper(signed, { rawHeaders: setHeader(signed.req.rawHeaders, 'x-amz-date', '20261127T120000Z') })), 'AWS_AUTH_MALFORMED');
  });
});

describe('what the real S3, DynamoDB and STS clients send (loopback capture)', () => {
  interface Captured {
    method: string;
    url: string;
    rawHeaders: string[];
    body: Buffer;
  }
  const captured: Captured[] = [];
  let server: http.Server;
  let endpoint = '';
  const credentials = { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET };

  before(async () => {
    server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (part: Buffer) => parts.push(part));
      req.on('end', () => {
        captured.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body: Buffer.concat(parts) });
        res.writeHead(200, { 'content-type': 'application/xml', etag: '"0"' });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Sends with a real client; the capture server's empty answers may not parse, which does not matter here. */
  async function capture(send: () => Promise<unknown>): Promise<Captured> {
    const before = captured.length;
    await send().catch(() => undefined);
    assert.equal(captured.length, before + 1, 'exactly one request reached the server');
    return captured[before]!;
  }

  /** Verifies a captured request as the server will: SigV4 over the raw request line and headers. */
  function verifyCaptured(c: Captured): SigV4Authorization {
    const question = c.url.indexOf('?');
    const req: SignedRequest = {
      method: c.method,
      rawPath: question < 0 ? c.url : c.url.slice(0, question),
      rawQuery: question < 0 ? '' : c.url.slice(question + 1),
      rawHeaders: c.rawHeaders,
    };
    const authorization = headerValues(c.rawHeaders, 'authorization')[0];
    assert.ok(isSigV4(authorization));
    const auth = parseAuthorization(authorization!);
    const { amzDate, ms } = requestTime(auth, req);
    checkClockSkew(amzDate, ms, Date.now());
    const payloadHash = auth.service === 's3' ? headerValues(c.rawHeaders, 'x-amz-content-sha256')[0]! : sha256Hex(c.body);
    verifySignature(req, auth, SECRET, payloadHash);
    expectCode(() => verifySignature(req, auth, 'not-the-secret', payloadHash), 'AWS_SIGNATURE_MISMATCH');
    return auth;
  }

  const headersOf = (c: Captured): http.IncomingHttpHeaders => {
    const headers: http.IncomingHttpHeaders = {};
    for (let i = 0; i < c.rawHeaders.length; i += 2) headers[c.rawHeaders[i]!.toLowerCase()] = c.rawHeaders[i + 1];
    return headers;
  };

  test('S3Client: ListObjectsV2, ListObjectVersions, GetObject, PutObject (buffered and streamed)', async () => {
    const s3 = new S3Client({ endpoint, region: REGION, forcePathStyle: true, credentials, maxAttempts: 1 });
    try {
      const list = await capture(() => s3.send(new ListObjectsV2Command({ Bucket: 'tfstate', Prefix: 'env:/', Delimiter: '/', EncodingType: 'url' })));
      assert.equal(list.url, '/tfstate/?delimiter=%2F&encoding-type=url&list-type=2&prefix=env%3A%2F');
      assert.equal(verifyCaptured(list).service, 's3');

      const versions = await capture(() => s3.send(new ListObjectVersionsCommand({ Bucket: 'tfstate', Prefix: 'a+b c' })));
      assert.equal(versions.url, '/tfstate/?prefix=a%2Bb%20c&versions=');
      verifyCaptured(versions);

      const get = await capture(() => s3.send(new GetObjectCommand({ Bucket: 'tfstate', Key: 'env:/dev/x y' })));
      assert.equal(get.url, '/tfstate/env%3A/dev/x%20y?x-id=GetObject');
      assert.equal(headersOf(get)['x-amz-checksum-mode'], 'ENABLED');
      verifyCaptured(get);

      const state = '{"version":4,"serial":1}\n';
      const put = await capture(() => s3.send(new PutObjectCommand({ Bucket: 'tfstate', Key: "env:/dev/a+b (1)!*'ü", Body: state })));
      assert.equal(put.url, '/tfstate/env%3A/dev/a%2Bb%20%281%29%21%2A%27%C3%BC?x-id=PutObject');
      verifyCaptured(put);
      assert.equal(headersOf(put)['x-amz-content-sha256'], sha256Hex(put.body), 'over http the JS SDK signs the real body hash');
      assert.deepEqual(Object.keys(verifyChecksums(headersOf(put), null, put.body)), ['crc32']);

      const pieces = [Buffer.alloc(70_000, 'x'), Buffer.from('tail')];
      const streamed = await capture(() =>
        s3.send(new PutObjectCommand({ Bucket: 'tfstate', Key: 'streamed', Body: Readable.from(pieces), ContentLength: 70_004 })),
      );
      const headers = headersOf(streamed);
      assert.equal(headers['x-amz-content-sha256'], 'STREAMING-UNSIGNED-PAYLOAD-TRAILER');
      assert.equal(headers['content-encoding'], 'aws-chunked');
      assert.equal(headers['transfer-encoding'], 'chunked');
      assert.equal(headers['x-amz-trailer'], 'x-amz-checksum-crc32');
      verifyCaptured(streamed);
      const decoded = decodeAwsChunked(streamed.body, Number(headers['x-amz-decoded-content-length']));
      assert.ok(decoded.body.equals(Buffer.concat(pieces)));
      assert.deepEqual(decoded.chunkLengths, [70_000, 4, 0], 'one aws-chunk per piece of the source stream');
      assert.deepEqual(Object.keys(verifyChecksums(headers, decoded.trailers, decoded.body)), ['crc32']);
    } finally {
      s3.destroy();
    }
  });

  test('DynamoDBClient GetItem and STSClient GetCallerIdentity', async () => {
    const dynamodb = new DynamoDBClient({ endpoint, region: REGION, credentials, maxAttempts: 1 });
    const sts = new STSClient({ endpoint, region: REGION, credentials, maxAttempts: 1 });
    try {
      const get = await capture(() => dynamodb.send(new GetItemCommand({ TableName: 'locks', Key: { LockID: { S: 'tfstate/app.tfstate-md5' } } })));
      assert.equal(get.url, '/');
      assert.equal(headersOf(get)['x-amz-target'], 'DynamoDB_20120810.GetItem');
      assert.equal(verifyCaptured(get).service, 'dynamodb');

      const who = await capture(() => sts.send(new GetCallerIdentityCommand({})));
      assert.equal(who.body.toString(), 'Action=GetCallerIdentity&Version=2011-06-15');
      assert.equal(verifyCaptured(who).service, 'sts');
    } finally {
      dynamodb.destroy();
      sts.destroy();
    }
  });
});

describe('per-request shortcuts keep the same answers', () => {
  test('formatAmzDate equals the ISO form without separators, across years, months and leap days', () => {
    const iso = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const fixed = [Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(1999, 11, 31, 0, 0, 0), Date.UTC(2026, 10, 27, 1, 2, 3), 0];
    let x = 12345;
    const random = Array.from({ length: 2000 }, () => ((x = (x * 1103515245 + 12345) % 2 ** 31), (x / 2 ** 31) * Date.UTC(2200, 0, 1)));
    for (const ms of [...fixed, ...random]) assert.equal(formatAmzDate(ms), iso(ms));
  });

  test('a derived key is reused only for the same secret, date, region and service', () => {
    const k = signingKey(SECRET, '20261127', 'us-east-1', 'dynamodb');
    assert.equal(signingKey(SECRET, '20261127', 'us-east-1', 'dynamodb'), k, 'cached');
    for (const other of [
      signingKey(`${SECRET}x`, '20261127', 'us-east-1', 'dynamodb'),
      signingKey(SECRET, '20261128', 'us-east-1', 'dynamodb'),
      signingKey(SECRET, '20261127', 'eu-west-1', 'dynamodb'),
      signingKey(SECRET, '20261127', 'us-east-1', 's3'),
    ]) {
      assert.ok(!other.equals(k));
    }
  });

  test('the SignedHeaders list of a parsed header is its own copy', () => {
    const header = `AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(64)}`;
    const first = parseAuthorization(header);
    first.signedHeaders.push('x-evil');
    assert.deepEqual(parseAuthorization(header).signedHeaders, ['host', 'x-amz-date']);
  });
});
