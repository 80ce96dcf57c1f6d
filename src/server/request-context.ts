import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientContext } from '../audit/audit-entry.js';
import { readBody } from './http-io.js';

/** What a protocol adapter gets for one request: the parsed URL parts and who is asking. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** The path after the door's prefix, still percent-encoded. */
  tail: string;
  query: URLSearchParams;
  client: ClientContext;
  body(): Promise<Buffer>;
}

export function createContext(req: IncomingMessage, res: ServerResponse, tail: string, query: URLSearchParams, maxBody: number): RequestContext {
  return {
    req,
    res,
    method: req.method ?? 'GET',
    tail,
    query,
    client: {
      addr: req.socket.remoteAddress ?? 'unknown',
      userAgent: req.headers['user-agent'] ?? '',
      principal: null,
    },
    body: () => readBody(req, maxBody),
  };
}
