/**
 * The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`.
 * test/api.test.ts checks that every route the API door answers is described here.
 */
const keyParam = {
  name: 'key',
  in: 'path',
  required: true,
  description: 'The state key: "/"-separated UTF-8 segments (each percent-encoded), no empty, "." or ".." segment, at most 1024 bytes.',
  schema: { type: 'string' },
};
const pageParams = [
  { name: 'after', in: 'query', required: false, description: 'Cursor: the `next` of the previous page.', schema: { type: 'string' } },
  { name: 'limit', in: 'query', required: false, description: 'Page size, 1 to 1000 (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
];
const prefixParam = { name: 'prefix', in: 'query', required: false, description: 'Only keys starting with this string.', schema: { type: 'string' } };
const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const page = (item: string) => ({
  type: 'object',
  required: ['items', 'next'],
  properties: { items: { type: 'array', items: { $ref: `#/components/schemas/${item}` } }, next: { type: ['string', 'null'] } },
});
const ok = (schema: object, description = 'OK') => ({ description, content: { 'application/json': { schema } } });

/**
 * The permission each operation needs (`x-statelock-permission`); "admin on *" is a server-wide grant.
 * Listings are filtered to the keys the principal may read, never refused.
 */
const PERMISSION_OF: Record<string, string> = {
  getOverview: 'read on *',
  listStates: 'read (filtered: only the keys the principal may read are listed)',
  getState: 'read on the key',
  deleteState: 'delete on the key',
  diffVersions: 'read on the key',
  restoreVersion: 'restore on the key',
  listVersions: 'read on the key',
  getContent: 'read on the key',
  listLocks: 'read (filtered: only the keys the principal may read are listed)',
  getLock: 'read on the key',
  forceUnlock: 'force-unlock on the key',
  listAudit: 'read on `key` when given (token changes need admin); the whole trail needs admin on *',
  listRejectedWrites: 'read on the key',
  getRejectedWrite: 'read on the key',
  createSession: "lock on the session's key",
  getSession: "read on the session's key",
  heartbeatSession: "lock on the session's key",
  endSession: "lock on the session's key",
  createToken: 'admin on *',
  listTokens: 'admin on *',
  revokeToken: 'admin on *',
  getOpenApi: 'any authenticated principal',
};

const DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'statelock API',
    version: '1',
    description:
      'States, versions, locks and the audit trail of a statelock server. Terraform itself uses the http backend at /state/<key>, not this API. ' +
      'Once a token exists every request needs one (`Authorization: Bearer <token>`, or HTTP Basic with the token as password): 401 without or with a wrong or revoked token, 403 when the principal lacks the permission an operation names in x-statelock-permission.',
  },
  security: [{ bearer: [] }, { basic: [] }, { dashboardSession: [] }],
  paths: {
    '/api/v1/overview': {
      get: {
        operationId: 'getOverview',
        summary: "The dashboard's overview: live states, held locks by liveness verdict (and stale ones), and the last 24 hours' conflicts (refused writes and refused LOCKs), forced unlocks, writes and restores.",
        responses: {
          '200': ok({
            type: 'object',
            properties: {
              states: { type: 'integer' },
              locks: { type: 'object', properties: { held: { type: 'integer' }, alive: { type: 'integer' }, dead: { type: 'integer' }, unknown: { type: 'integer' }, stale: { type: 'integer' } } },
              last24h: { type: 'object', properties: { conflicts: { type: 'integer' }, forcedUnlocks: { type: 'integer' }, writes: { type: 'integer' }, restores: { type: 'integer' } } },
            },
          }),
        },
      },
    },
    '/api/v1/states': {
      get: {
        operationId: 'listStates',
        summary: 'List live states, ordered by key. With count=true the answer also has `total`, the number of live states under the prefix.',
        parameters: [prefixParam, ...pageParams, { name: 'count', in: 'query', required: false, schema: { type: 'boolean' } }],
        responses: { '200': ok(page('StateSummary')), '400': errorResponse('Bad query parameter') },
      },
    },
    '/api/v1/states/{key}': {
      get: {
        operationId: 'getState',
        summary: "One state's current version, version count and lock.",
        parameters: [keyParam],
        responses: {
          '200': ok({ type: 'object', properties: { key: { type: 'string' }, current: { $ref: '#/components/schemas/Version' }, versions: { type: 'integer' }, seq: { type: 'integer' }, writer: { type: 'string', description: 'The client address of the current version' }, lock: { oneOf: [{ $ref: '#/components/schemas/Lock' }, { type: 'null' }] } } }),
          '400': errorResponse('Invalid key'),
          '404': errorResponse('No live state at this key'),
        },
      },
      delete: {
        operationId: 'deleteState',
        summary: 'Soft delete: the key leaves reads and listings; every version stays readable and restorable. Refused while locked.',
        parameters: [keyParam],
        responses: { '200': ok({ type: 'object', properties: { deleted: { type: 'string' } } }), '404': errorResponse('No live state at this key'), '423': errorResponse('The key is locked') },
      },
    },
    '/api/v1/diff/{key}': {
      get: {
        operationId: 'diffVersions',
        summary: 'Resources (by instance address, with changed attribute names) and outputs added, removed and changed between two versions. Default: the version before `to` → the current one. Values only with values=true, sensitive ones (the state\'s sensitive_attributes, sensitive outputs, secret-looking names) as "(sensitive)".',
        parameters: [
          keyParam,
          { name: 'values', in: 'query', required: false, description: 'Add each changed attribute\'s and output\'s value before and after, masked when sensitive.', schema: { type: 'boolean' } },
          { name: 'from', in: 'query', required: false, description: 'seq', schema: { type: 'integer', minimum: 1 } },
          { name: 'to', in: 'query', required: false, description: 'seq', schema: { type: 'integer', minimum: 1 } },
          { name: 'fromSerial', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
          { name: 'toSerial', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
        ],
        responses: { '200': ok({ $ref: '#/components/schemas/Diff' }), '404': errorResponse('No such state or version'), '422': errorResponse('An encrypted version cannot be diffed') },
      },
    },
    '/api/v1/restore/{key}': {
      post: {
        operationId: 'restoreVersion',
        summary: 'Roll forward: the content of an old version (seq or serial) becomes a new version with serial = current + 1 and the current lineage. Refused while another holds the lock (pass lockId when you hold it).',
        parameters: [
          keyParam,
          { name: 'seq', in: 'query', required: false, schema: { type: 'integer', minimum: 1 } },
          { name: 'serial', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
          { name: 'lockId', in: 'query', required: false, schema: { type: 'string' } },
        ],
        responses: {
          '200': ok({
            type: 'object',
            properties: {
              restored: { $ref: '#/components/schemas/Version' },
              replaced: { description: 'The version that was current before (kept)', oneOf: [{ type: 'object', properties: { seq: { type: 'integer' }, serial: { type: 'integer' } } }, { type: 'null' }] },
            },
          }),
          '404': errorResponse('No such version'),
          '422': errorResponse('An encrypted version cannot be restored server-side'),
          '423': errorResponse('Locked by someone else'),
        },
      },
    },
    '/api/v1/versions/{key}': {
      get: {
        operationId: 'listVersions',
        summary: 'Every version of a key, oldest first (also for soft-deleted keys). `after` is a seq. With resources=true each version also has `resources`, its number of resource instances (null when not readable).',
        parameters: [keyParam, ...pageParams, { name: 'resources', in: 'query', required: false, schema: { type: 'boolean' } }],
        responses: { '200': ok(page('Version')), '404': errorResponse('The key has no versions') },
      },
    },
    '/api/v1/content/{key}': {
      get: {
        operationId: 'getContent',
        summary: 'The bytes of one version, exactly as written: the current one, or `seq`, or the newest with `serial`.',
        parameters: [
          keyParam,
          { name: 'seq', in: 'query', required: false, schema: { type: 'integer', minimum: 1 } },
          { name: 'serial', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
          { name: 'download', in: 'query', required: false, description: 'Answer as an attachment (Content-Disposition) named after the key, seq and serial.', schema: { type: 'boolean' } },
        ],
        responses: {
          '200': { description: 'The state bytes; headers Content-MD5, X-Statelock-Seq, X-Statelock-Serial.', content: { 'application/json': { schema: { type: 'object' } } } },
          '404': errorResponse('No such state or version'),
        },
      },
    },
    '/api/v1/locks': {
      get: {
        operationId: 'listLocks',
        summary: 'Every held lock, ordered by key.',
        parameters: [prefixParam, ...pageParams],
        responses: { '200': ok(page('Lock')) },
      },
    },
    '/api/v1/locks/{key}': {
      get: {
        operationId: 'getLock',
        summary: 'The lock held on a key.',
        parameters: [keyParam],
        responses: { '200': ok({ $ref: '#/components/schemas/Lock' }), '404': errorResponse('The key is not locked') },
      },
      delete: {
        operationId: 'forceUnlock',
        summary: "Force-unlock, naming the holder's lock ID as terraform force-unlock LOCK_ID does. Audited.",
        parameters: [
          keyParam,
          { name: 'id', in: 'query', required: true, schema: { type: 'string' } },
          { name: 'evenIfAlive', in: 'query', required: false, description: 'Override the refusal while the holder is alive (audited).', schema: { type: 'boolean' } },
        ],
        responses: {
          '200': ok({ type: 'object', properties: { unlocked: { type: 'string' }, previous: { $ref: '#/components/schemas/Lock' } } }),
          '404': errorResponse('The key is not locked'),
          '409': errorResponse('The ID is not the holder\'s; the body shows the holder'),
        },
      },
    },
    '/api/v1/audit': {
      get: {
        operationId: 'listAudit',
        summary: 'The audit trail, oldest first (`after` is an entry id), or with order=desc newest first (`before` is an entry id, the previous page\'s `next`).',
        parameters: [
          { name: 'order', in: 'query', required: false, schema: { type: 'string', enum: ['asc', 'desc'] } },
          { name: 'before', in: 'query', required: false, schema: { type: 'integer' } },
          { name: 'key', in: 'query', required: false, schema: { type: 'string' } },
          { name: 'since', in: 'query', required: false, schema: { type: 'string', format: 'date-time' } },
          { name: 'action', in: 'query', required: false, schema: { type: 'string' } },
          ...pageParams,
        ],
        responses: { '200': ok(page('AuditEntry')), '400': errorResponse('Bad query parameter') },
      },
    },
    '/api/v1/rejected/{key}': {
      get: {
        operationId: 'listRejectedWrites',
        summary: 'Writes refused by fencing (they carried a lock ID that had been released), kept with their bodies.',
        parameters: [keyParam, ...pageParams],
        responses: { '200': ok(page('RejectedWrite')) },
      },
    },
    '/api/v1/rejected-content/{key}': {
      get: {
        operationId: 'getRejectedWrite',
        summary: 'The body of one rejected write, byte for byte.',
        parameters: [keyParam, { name: 'id', in: 'query', required: true, schema: { type: 'integer' } }],
        responses: { '200': { description: 'The refused body', content: { 'application/json': { schema: { type: 'object' } } } }, '404': errorResponse('No such rejected write') },
      },
    },
    '/api/v1/sessions': {
      post: {
        operationId: 'createSession',
        summary: 'Start a lease for a wrapped Terraform process (statelock run). Bind a lock to it with LOCK /state/<key>?session=<id>.',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'object', required: ['key'], properties: { key: { type: 'string' }, ttlSeconds: { type: 'number', minimum: 1, maximum: 86400 }, holder: { type: 'object' }, ci: { type: 'object' } } },
            },
          },
        },
        responses: { '201': ok({ $ref: '#/components/schemas/Session' }, 'Created'), '400': errorResponse('Invalid request') },
      },
    },
    '/api/v1/sessions/{id}': {
      get: { operationId: 'getSession', summary: 'One session.', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': ok({ $ref: '#/components/schemas/Session' }), '404': errorResponse('No such session') } },
    },
    '/api/v1/sessions/{id}/heartbeat': {
      post: {
        operationId: 'heartbeatSession',
        summary: 'Renew the lease by its TTL.',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '200': ok({ type: 'object', properties: { id: { type: 'string' }, expiresAt: { type: 'string' } } }), '404': errorResponse('No such session'), '409': errorResponse('The session has ended') },
      },
    },
    '/api/v1/sessions/{id}/end': {
      post: {
        operationId: 'endSession',
        summary: "The wrapped command exited: end the session and release its lock if it still holds one (audited with the reason).",
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: { required: false, content: { 'application/json': { schema: { type: 'object', properties: { reason: { type: 'string' }, exitCode: { type: ['integer', 'null'] }, signal: { type: ['string', 'null'] } } } } } },
        responses: { '200': ok({ type: 'object', properties: { id: { type: 'string' }, released: { oneOf: [{ $ref: '#/components/schemas/Lock' }, { type: 'null' }] } } }), '404': errorResponse('No such session') },
      },
    },
    '/api/v1/tokens': {
      post: {
        operationId: 'createToken',
        summary: 'Create a principal (admin). The token — and with aws=true an AWS access key pair — is in this answer only; the server keeps a hash of the token.',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', required: ['name', 'allow'], properties: { name: { type: 'string' }, allow: { type: 'array', items: { type: 'string', description: '<key glob>:<permission,…>, e.g. lesson-17/pr-*:read,write,lock' } }, aws: { type: 'boolean' } } } } },
        },
        responses: { '201': ok({ $ref: '#/components/schemas/CreatedToken' }, 'Created'), '400': errorResponse('Invalid request'), '409': errorResponse('A live token has that name') },
      },
      get: { operationId: 'listTokens', summary: 'Every token, revoked ones included, without secrets (admin).', responses: { '200': ok({ type: 'object', properties: { items: { type: 'array', items: { $ref: '#/components/schemas/Token' } } } }) } },
    },
    '/api/v1/tokens/{name}': {
      delete: {
        operationId: 'revokeToken',
        summary: 'Revoke a token (admin): its next request is a 401. Audited.',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '200': ok({ $ref: '#/components/schemas/Token' }), '404': errorResponse('No live token of that name') },
      },
    },
    '/api/v1/openapi.json': { get: { operationId: 'getOpenApi', summary: 'This document.', responses: { '200': ok({ type: 'object' }) } } },
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'A statelock token (slk_…), as OpenTofu sends it with `headers`.' },
      basic: { type: 'http', scheme: 'basic', description: "The token as the password (Terraform's http backend `username`/`password`)." },
      dashboardSession: {
        type: 'apiKey',
        in: 'cookie',
        name: 'statelock_session',
        description: 'The dashboard session set by POST /ui/auth/login. Requests that change anything must also carry the session\'s X-Statelock-CSRF header (else 403 CSRF_REJECTED).',
      },
    },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: { code: { type: 'string', description: 'A code from docs/errors.md' }, message: { type: 'string' }, holder: { type: 'object', description: 'The lock holder, on lock conflicts' } },
          },
        },
      },
      StateSummary: {
        type: 'object',
        properties: { key: { type: 'string' }, serial: { type: 'integer' }, lineage: { type: 'string' }, size: { type: 'integer' }, updatedAt: { type: 'string', format: 'date-time' }, versions: { type: 'integer' }, locked: { type: 'boolean' } },
      },
      Version: {
        type: 'object',
        properties: {
          seq: { type: 'integer', description: "The version's number within its key: 1, 2, 3 … in write order" },
          serial: { type: 'integer' },
          lineage: { type: 'string' },
          md5: { type: 'string', description: 'base64' },
          sha256: { type: 'string', description: 'hex' },
          size: { type: 'integer' },
          createdAt: { type: 'string', format: 'date-time' },
          lockId: { type: ['string', 'null'] },
          operation: { type: ['string', 'null'] },
          encrypted: { type: 'boolean', description: 'OpenTofu client-side encrypted envelope' },
          forced: { type: ['string', 'null'], enum: ['lineage-changed', 'serial-lower', 'serial-same-content-differs', null] },
          clientAddr: { type: 'string' },
        },
      },
      Token: {
        type: 'object',
        properties: { name: { type: 'string' }, grants: { type: 'array', items: { type: 'string' } }, awsAccessKeyId: { type: ['string', 'null'] }, createdAt: { type: 'string', format: 'date-time' }, revokedAt: { type: ['string', 'null'] } },
      },
      CreatedToken: {
        type: 'object',
        properties: { name: { type: 'string' }, grants: { type: 'array', items: { type: 'string' } }, token: { type: 'string', description: 'slk_<id>_<secret>: shown once' }, awsAccessKeyId: { type: ['string', 'null'] }, awsSecretAccessKey: { type: ['string', 'null'] }, createdAt: { type: 'string' }, revokedAt: { type: 'null' } },
      },
      Lock: {
        type: 'object',
        properties: {
          key: { type: 'string' },
          info: { type: 'object', description: 'The lock info exactly as the client sent it: ID, Operation, Info, Who, Version, Created, Path' },
          acquiredAt: { type: 'string', format: 'date-time' },
          ageSeconds: { type: 'integer' },
          lastActivityAt: { type: 'string', format: 'date-time' },
          clientAddr: { type: 'string' },
          userAgent: { type: 'string' },
          sessionId: { type: ['string', 'null'] },
          holds: { type: 'array', items: { type: 'string', enum: ['http', 's3', 'dynamodb'] }, description: 'The doors holding the lock; with double locking (use_lockfile + dynamodb_table) each AWS door releases its own hold' },
          verdict: { type: 'string', enum: ['alive', 'dead', 'unknown'] },
          evidence: { type: 'object' },
          idleSeconds: { type: 'integer', description: 'Seconds since anything used the lock' },
          stale: { type: 'boolean', description: 'Not known to be alive and idle for 15 minutes or more, or dead' },
          waiters: { type: 'integer', description: 'LOCK requests waiting in line (GET /api/v1/locks/{key} only)' },
        },
      },
      Diff: {
        type: 'object',
        properties: {
          key: { type: 'string' },
          from: { oneOf: [{ $ref: '#/components/schemas/Version' }, { type: 'null' }] },
          to: { $ref: '#/components/schemas/Version' },
          resources: {
            type: 'array',
            items: { type: 'object', properties: { address: { type: 'string' }, change: { type: 'string', enum: ['added', 'removed', 'changed'] }, attributes: { type: 'array', items: { type: 'string' } }, values: { type: 'object', description: 'values=true: {<attribute>: {before, after}}' } } },
          },
          outputs: {
            type: 'array',
            items: { type: 'object', properties: { name: { type: 'string' }, change: { type: 'string', enum: ['added', 'removed', 'changed'] }, sensitive: { type: 'boolean' }, before: {}, after: {} } },
          },
          summary: { type: 'object', properties: { added: { type: 'integer' }, removed: { type: 'integer' }, changed: { type: 'integer' } } },
        },
      },
      Session: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          key: { type: 'string' },
          ttlSeconds: { type: 'number' },
          createdAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: 'string', format: 'date-time' },
          lastHeartbeatAt: { type: 'string', format: 'date-time' },
          endedAt: { type: ['string', 'null'] },
          endReason: { type: ['string', 'null'] },
          holder: { type: 'object' },
          ci: { type: 'object' },
        },
      },
      RejectedWrite: {
        type: 'object',
        properties: { id: { type: 'integer' }, key: { type: 'string' }, lockId: { type: 'string' }, at: { type: 'string' }, serial: { type: 'integer' }, lineage: { type: 'string' }, size: { type: 'integer' }, sha256: { type: 'string' }, reason: { type: 'string' }, clientAddr: { type: 'string' } },
      },
      AuditEntry: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          at: { type: 'string', format: 'date-time' },
          action: { type: 'string', enum: ['lock.acquire', 'lock.release', 'lock.conflict', 'lock.force-unlock', 'lock.auto-release', 'state.write', 'state.write.forced', 'state.write.refused', 'state.delete', 'state.restore', 'token.create', 'token.revoke'] },
          key: { type: 'string' },
          lockId: { type: ['string', 'null'] },
          outcome: { type: 'string', enum: ['ok', 'refused'] },
          clientAddr: { type: 'string' },
          userAgent: { type: 'string' },
          principal: { type: ['string', 'null'] },
          detail: { type: 'object' },
        },
      },
    },
  },
} as const;

/** Every operation with its permission and the 401/403 answers any of them may give. */
function withPermissions<T extends { paths: Record<string, Record<string, unknown>> }>(doc: T): T {
  const copy = JSON.parse(JSON.stringify(doc)) as T;
  for (const item of Object.values(copy.paths)) {
    for (const op of Object.values(item) as Array<{ operationId: string; responses: Record<string, unknown> }>) {
      const permission = PERMISSION_OF[op.operationId];
      if (permission === undefined) throw new Error(`openapi: operation ${op.operationId} names no permission`);
      Object.assign(op, { 'x-statelock-permission': permission });
      op.responses['401'] ??= errorResponse('No credentials, or a wrong or revoked token (WWW-Authenticate says how to send one)');
      const refusable = !permission.includes('filtered') && permission !== 'any authenticated principal';
      if (refusable) op.responses['403'] ??= errorResponse(`The principal lacks the permission: ${permission}`);
    }
  }
  return copy;
}

export const OPENAPI_DOCUMENT = withPermissions(DOCUMENT);
