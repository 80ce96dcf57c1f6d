import type { RequestContext } from '../../server/request-context.js';
import type { LockService } from '../../lock/lock-service.js';
import type { StateService } from '../../state/state-service.js';
import type { Store } from '../../store/store.js';
import type { Digests } from '../../state/state-file.js';

export type AwsService = 's3' | 'dynamodb' | 'sts';

/**
 * One S3, DynamoDB or STS request after the AWS door checked it: signature (or loopback trust), clock
 * skew, payload hash, aws-chunked decoding, and any Content-MD5 / x-amz-checksum-* against the body.
 * A service door only interprets it.
 */
export interface AwsRequest {
  ctx: RequestContext;
  service: AwsService;
  method: string;
  /** The path exactly as on the request line (percent-encoded), without the query. */
  rawPath: string;
  /** The query exactly as on the request line, without '?'; '' when none. */
  rawQuery: string;
  query: URLSearchParams;
  /** The Host header without the port, lower-cased. */
  host: string;
  /** The credential scope's region. */
  region: string;
  accessKeyId: string;
  /** The request body, decoded from aws-chunked when it was sent so, and verified. Empty when `bodyStream` is set. */
  body: Buffer;
  /**
   * PutObject of a state object: the body as it arrives (decoded on the way when it is aws-chunked, its chunk
   * signatures checked as chunks complete), not read yet, so that it streams into the store. Its signature
   * covered the headers; the payload hash, Content-MD5, x-amz-checksum-* headers and trailers are checked by
   * `verifyBody`, which the writer calls with the body's digests before it commits anything (the CRCs are
   * computed while the stream is read).
   */
  bodyStream?: AsyncIterable<Buffer>;
  verifyBody?: (digests: Digests) => void;
  /** Verified checksums: algorithm (crc32, crc32c, crc64nvme, sha1, sha256, md5) → base64 value. */
  checksums: Record<string, string>;
  /** Sent back as x-amz-request-id / x-amzn-RequestId and in error bodies. */
  requestId: string;
}

/** What every service door is built from. */
export interface AwsDoorDeps {
  state: StateService;
  locks: LockService;
  store: Store;
  /** Host names under which `<bucket>.<name>` is virtual-host addressing. */
  s3Domains: readonly string[];
}
