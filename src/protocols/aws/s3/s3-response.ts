import type { AwsRequest } from '../aws-request.js';

/**
 * Writes one S3 answer: `x-amz-request-id` always; `Content-Length` from the body unless the caller set
 * it (HEAD answers announce the length of the body they leave out).
 */
export function sendS3(r: AwsRequest, status: number, headers: Record<string, string>, body?: Buffer | string, contentType?: string): void {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const all: Record<string, string> = {
    'x-amz-request-id': r.requestId,
    ...(contentType ? { 'Content-Type': contentType } : {}),
    'Content-Length': String(payload.length),
    ...headers,
  };
  const res = r.ctx.res;
  res.writeHead(status, all);
  if (r.method === 'HEAD' || status === 204 || status === 304) res.end();
  else res.end(payload);
}

/** An XML answer (200 unless told). */
export function sendXml(r: AwsRequest, xml: string, headers: Record<string, string> = {}, status = 200): void {
  sendS3(r, status, headers, xml, 'application/xml');
}

/** Hex MD5 from the base64 MD5 statelock keeps (VersionMeta.md5). */
export function md5HexOfBase64(md5Base64: string): string {
  return Buffer.from(md5Base64, 'base64').toString('hex');
}

/** `"<hex md5>"`: an S3 ETag. */
export function quotedEtag(hexMd5: string): string {
  return `"${hexMd5}"`;
}

/** IMF-fixdate (`Tue, 01 Dec 2026 10:00:00 GMT`), what Last-Modified carries. */
export function httpDate(iso: string): string {
  return new Date(iso).toUTCString();
}

/** ISO-8601 with milliseconds (`2026-12-01T10:00:00.000Z`), what listings carry. */
export function isoDate(iso: string): string {
  return new Date(iso).toISOString();
}

/** A request header as one string (the last of repeated ones), or undefined. */
export function header(r: AwsRequest, name: string): string | undefined {
  const v = r.ctx.req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[v.length - 1] : v;
}
