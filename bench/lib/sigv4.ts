import { createHash, createHmac } from 'node:crypto';

/**
 * Client-side AWS Signature Version 4 (header auth), written apart from the server's verifier
 * (src/protocols/aws/sigv4.ts) so the bench does not check statelock against its own code. Every target
 * gets the same signed requests: a DynamoDB PutItem for statelock is byte for byte the one dynalite gets,
 * and an S3 PutObject for statelock the one s3rver gets.
 *
 * Cheap on purpose: the derived signing key (four HMACs) is cached per day, so signing a request costs one
 * SHA-256 of the canonical request and one HMAC. The payload hash is the caller's: the transfer suite
 * computes a state's SHA-256 once, outside the timed part.
 */

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/** `20261126T223743Z` */
export function amzDate(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export class SigV4Signer {
  private keyDate = '';
  private key: Buffer = Buffer.alloc(0);

  constructor(
    private readonly credentials: AwsCredentials,
    private readonly region: string,
    private readonly service: 's3' | 'dynamodb',
  ) {}

  private signingKey(date: string): Buffer {
    if (date !== this.keyDate) {
      this.key = hmac(hmac(hmac(hmac(`AWS4${this.credentials.secretAccessKey}`, date), this.region), this.service), 'aws4_request');
      this.keyDate = date;
    }
    return this.key;
  }

  /**
   * The headers to send: `headers` (lowercase names, `host` among them, all of them signed) plus
   * `x-amz-date` and `authorization`. `path` is the request path with no query; the bench only uses
   * unreserved characters and '/', for which S3's verbatim canonical URI and other services' encoded
   * one are the same string.
   */
  sign(method: string, path: string, headers: Record<string, string>, payloadHash: string, now = new Date()): Record<string, string> {
    if (!/^\/[A-Za-z0-9\-._~/]*$/.test(path)) throw new Error(`bench SigV4: path "${path}" must be unreserved characters and '/'`);
    if (!headers.host) throw new Error('bench SigV4: the host header must be signed');
    const stamp = amzDate(now);
    const date = stamp.slice(0, 8);
    const all: Record<string, string> = { ...headers, 'x-amz-date': stamp };
    const names = Object.keys(all).sort();
    const canonicalHeaders = names.map((n) => `${n}:${all[n]!.trim().replace(/\s+/g, ' ')}\n`).join('');
    const signedHeaders = names.join(';');
    const canonical = [method, path, '', canonicalHeaders, signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${this.region}/${this.service}/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', stamp, scope, sha256Hex(canonical)].join('\n');
    const signature = createHmac('sha256', this.signingKey(date)).update(toSign, 'utf8').digest('hex');
    return {
      ...all,
      authorization: `AWS4-HMAC-SHA256 Credential=${this.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
  }
}
