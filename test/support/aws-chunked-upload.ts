import { createHash, createHmac } from 'node:crypto';
import { Sha256 } from '@smithy/core/checksum';
import { HttpRequest } from '@smithy/core/protocols';
import { SignatureV4 } from '@smithy/signature-v4';
import { computeChecksum } from '../../src/protocols/aws/checksums.js';
import { REGION, serverRequest, TEST_KEY, type AwsServer, type PlainResponse } from './aws.js';

/**
 * PutObject with a hand-built aws-chunked body, for the variants the AWS SDK for JavaScript does not send
 * (the signed ones) and for bodies broken on purpose. The headers are signed by the SDK's own signer
 * (@smithy/signature-v4) with the streaming payload hash; the chunk and trailer signatures are computed here
 * with node:crypto, per AWS's documentation ("Signature calculation: transfer payload in multiple chunks"):
 *
 *   chunk signature   = HMAC(key, "AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n<previous>\n<sha256("")>\n<sha256(data)>")
 *   trailer signature = HMAC(key, "AWS4-HMAC-SHA256-TRAILER\n<date>\n<scope>\n<previous>\n<sha256(trailer lines)>")
 *
 * seeded with the Authorization header's signature, the final 0-length chunk included.
 */

export type ChunkedMode = 'signed' | 'signed-trailer' | 'unsigned-trailer';

const PAYLOAD_HASH: Record<ChunkedMode, string> = {
  signed: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'signed-trailer': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'unsigned-trailer': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
};

export interface ChunkedPut {
  mode: ChunkedMode;
  body: Buffer;
  /** Data bytes per chunk (default 64 KiB). */
  chunkSize?: number;
  /** The x-amz-decoded-content-length to declare (default the body's length). */
  decodedLength?: number;
  /** The crc32 trailer's value to send (default the body's; the trailer variants only). */
  crc32?: string;
  /** Changes the encoded body after every signature was computed (a body altered in flight, truncated …). */
  tamper?: (encoded: Buffer) => Buffer;
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** Sends the PutObject to `/<bucket>/<key>` (path style) over the server's HTTP or HTTPS; resolves with the answer. */
export async function putChunked(server: AwsServer, bucket: string, key: string, put: ChunkedPut): Promise<PlainResponse> {
  const url = new URL(server.url);
  const payloadHash = PAYLOAD_HASH[put.mode];
  const trailer = put.mode !== 'signed';
  const headers: Record<string, string> = {
    host: url.host,
    'x-amz-content-sha256': payloadHash,
    'content-encoding': 'aws-chunked',
    'x-amz-decoded-content-length': String(put.decodedLength ?? put.body.length),
    ...(trailer ? { 'x-amz-trailer': 'x-amz-checksum-crc32' } : {}),
  };
  const signer = new SignatureV4({ service: 's3', region: REGION, credentials: TEST_KEY, sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const now = new Date();
  const signed = await signer.sign(new HttpRequest({ method: 'PUT', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: `/${bucket}/${key}`, headers }), { signingDate: now });
  const authorization = signed.headers['authorization']!;
  const seed = /Signature=([0-9a-f]{64})/.exec(authorization)![1]!;
  const amzDate = signed.headers['x-amz-date']!;
  const scope = `${amzDate.slice(0, 8)}/${REGION}/s3/aws4_request`;
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${TEST_KEY.secretAccessKey}`, amzDate.slice(0, 8)), REGION), 's3'), 'aws4_request');

  const chunkSize = put.chunkSize ?? 64 * 1024;
  const parts: Buffer[] = [];
  let previous = seed;
  const signedMode = put.mode !== 'unsigned-trailer';
  const emptyHash = sha256('');
  for (let offset = 0; ; offset += chunkSize) {
    const data = put.body.subarray(offset, Math.min(offset + chunkSize, put.body.length));
    let extension = '';
    if (signedMode) {
      previous = hmac(signingKey, ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, previous, emptyHash, sha256(data)].join('\n')).toString('hex');
      extension = `;chunk-signature=${previous}`;
    }
    parts.push(Buffer.from(`${data.length.toString(16)}${extension}\r\n`, 'latin1'));
    if (data.length === 0) break;
    parts.push(data, Buffer.from('\r\n'));
  }
  if (trailer) {
    const lines = `x-amz-checksum-crc32:${put.crc32 ?? computeChecksum('crc32', put.body)}\n`;
    parts.push(Buffer.from(lines.replace(/\n/g, '\r\n'), 'latin1'));
    if (signedMode) {
      const signature = hmac(signingKey, ['AWS4-HMAC-SHA256-TRAILER', amzDate, scope, previous, sha256(lines)].join('\n')).toString('hex');
      parts.push(Buffer.from(`x-amz-trailer-signature:${signature}\r\n`, 'latin1'));
    }
  }
  parts.push(Buffer.from('\r\n'));
  let encoded: Buffer = Buffer.concat(parts);
  if (put.tamper) encoded = put.tamper(encoded);

  // An answer that comes before the whole body was sent (an early refusal) may reset the connection under the
  // rest: what counts is the answer, which has been received by then.
  return serverRequest(server, 'PUT', `/${bucket}/${key}`, encoded, signed.headers);
}
