import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientContext } from '../audit/audit-entry.js';
import { bodyStream, readBody } from './http-io.js';
import { ANONYMOUS, authorize, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';

/** What a protocol adapter gets for one request: the parsed URL parts and who is asking. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** The path after the door's prefix, still percent-encoded. */
  tail: string;
  query: URLSearchParams;
  client: ClientContext;
  /** Who is asking (set by the server before the door runs; anonymous while no principal exists). */
  principal: Principal;
  /** Throws FORBIDDEN unless the principal may do `permission` on `key` (null: server-wide). */
  authorize(permission: Permission, key: string | null): void;
  body(): Promise<Buffer>;
  /** The body as it arrives, under the same size limit, for state bodies that stream into the store. */
  bodyStream(): AsyncIterable<Buffer>;
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
    principal: ANONYMOUS,
    authorize(permission, key) {
      authorize(this.principal, permission, key);
    },
    body: () => readBody(req, maxBody),
    bodyStream: () => bodyStream(req, maxBody),
  };
}
