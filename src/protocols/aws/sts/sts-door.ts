import type { ServerResponse } from 'node:http';
import { awsErrorName, StatelockError } from '../../../server/errors.js';
import type { AwsRequest } from '../aws-request.js';
import { xmlEscape } from '../xml-escape.js';

/** The account every statelock principal belongs to: there is no real AWS account behind the doors. */
export const STATELOCK_ACCOUNT_ID = '000000000000';

const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const IAM_NS = 'https://iam.amazonaws.com/doc/2010-05-08/';

/**
 * STS GetCallerIdentity (and IAM GetUser), the calls Terraform's s3 backend makes to validate its
 * credentials and find the account ID: answered for the signing access key, so a backend block needs
 * neither `skip_credentials_validation` nor `skip_requesting_account_id` once `endpoints.sts` (and
 * `endpoints.iam`) point here.
 */
export class StsDoor {
  async handle(r: AwsRequest): Promise<void> {
    const form = new URLSearchParams(r.method === 'POST' ? r.body.toString('utf8') : r.rawQuery);
    const action = form.get('Action') ?? '';
    const version = form.get('Version') ?? '';
    const arn = `arn:aws:iam::${STATELOCK_ACCOUNT_ID}:user/${r.accessKeyId}`;
    if (action === 'GetCallerIdentity') {
      const result = `<Arn>${xmlEscape(arn)}</Arn><UserId>${xmlEscape(r.accessKeyId)}</UserId><Account>${STATELOCK_ACCOUNT_ID}</Account>`;
      return send(r.ctx.res, 200, envelope('GetCallerIdentity', STS_NS, result, r.requestId), r.requestId);
    }
    if (action === 'GetUser') {
      const user = `<User><Path>/</Path><UserName>${xmlEscape(r.accessKeyId)}</UserName><UserId>${xmlEscape(r.accessKeyId)}</UserId><Arn>${xmlEscape(arn)}</Arn><CreateDate>2020-01-01T00:00:00Z</CreateDate></User>`;
      return send(r.ctx.res, 200, envelope('GetUser', IAM_NS, user, r.requestId), r.requestId);
    }
    throw new StatelockError('STS_INVALID_ACTION', { action: action || '(none)', version: version || '(none)' });
  }

  /** STS's (and IAM's) error shape: ErrorResponse/Error/{Type, Code, Message}. */
  static sendError(res: ServerResponse, err: StatelockError, requestId: string): void {
    const code = awsErrorName(err.code, 's3') ?? err.code;
    const type = err.status >= 500 ? 'Receiver' : 'Sender';
    const body = `<ErrorResponse xmlns="${STS_NS}"><Error><Type>${type}</Type><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(err.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`;
    send(res, err.status, body, requestId);
  }
}

function envelope(action: string, ns: string, result: string, requestId: string): string {
  return `<${action}Response xmlns="${ns}"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`;
}

function send(res: ServerResponse, status: number, xml: string, requestId: string): void {
  const body = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
  res.writeHead(status, { 'Content-Type': 'text/xml', 'Content-Length': String(body.length), 'x-amzn-RequestId': requestId });
  res.end(body);
}
