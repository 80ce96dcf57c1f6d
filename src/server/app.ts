import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { AuditService } from '../audit/audit-service.js';
import { LockService } from '../lock/lock-service.js';
import { SessionService } from '../lock/session-service.js';
import { ApiDoor } from '../protocols/api/api-door.js';
import { AwsDoor } from '../protocols/aws/aws-door.js';
import { ANONYMOUS, Authenticator } from '../auth/authenticator.js';
import { TokenService } from '../auth/token-service.js';
import { HttpBackendDoor } from '../protocols/http-backend/http-backend-door.js';
import { UiDoor } from '../protocols/ui/ui-door.js';
import { CSRF_HEADER, SESSION_COOKIE, cookieValue, csrfMatches, sameOriginRequest } from '../protocols/ui/ui-session.js';
import { StateService } from '../state/state-service.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { PostgresStore } from '../store/postgres/postgres-store.js';
import type { Store } from '../store/store.js';
import { encryptedStore } from '../store/encrypted-store.js';
import { Keyring } from '../store/encryption.js';
import { isLoopbackHost, type ServerConfig } from './config.js';
import { StatelockError } from './errors.js';
import { errorBody, sendJson, send } from './http-io.js';
import { createLogger, type Logger } from './logger.js';
import { Gauge, Metrics, ScrapedCounter } from './metrics.js';
import { createContext, type RequestContext } from './request-context.js';
import { ChunkSweeper } from '../store/content/chunk-sweeper.js';

type Door = 'http-backend' | 'api' | 'ui' | 'aws' | 'ops';

interface Route {
  door: Door;
  tail: string;
  run: (ctx: RequestContext) => Promise<void>;
}

/** A running statelock server: one store, its services, the doors, and the HTTP listener. */
export interface App {
  server: Server;
  store: Store;
  logger: Logger;
  url: string;
  /** How requests are authenticated, as said at start-up. */
  authState: string;
  /** Stops accepting, lets in-flight requests finish (up to drainMs), closes the store. */
  close(): Promise<void>;
}

export async function startApp(config: ServerConfig): Promise<App> {
  const logger = createLogger(config.logLevel);
  // Each request's line is built only when the level lets it out (at warn, the lock path skips it entirely).
  const logRequests = config.logLevel === 'debug' || config.logLevel === 'info';
  const sqlite = config.databaseUrl
    ? null
    : new SqliteStore(config.dataDir, {
        diskReserveBytes: config.diskReserveBytes ?? 'auto',
        onDiskReserve: (event, fields) =>
          event === 'released'
            ? logger.warn('disk full: the disk reserve was released so that locks keep working; state writes are refused until space is freed', fields)
            : event === 'restored'
              ? logger.warn('disk reserve restored: state writes are accepted again', fields) // closes the warning above, at its level
              : logger.warn('disk reserve could not be created', fields),
      });
  const engine: Store = sqlite ?? (await PostgresStore.open(config.databaseUrl!, (err) => logger.warn('database connection lost', { error: err.message })));
  // Always wrapped: without keys nothing is sealed, but a sealed body is refused rather than served as state.
  const store: Store = encryptedStore(engine, new Keyring(config.encryptionKeys ?? []));
  logger.info('encryption at rest', config.encryptionKeys ? { state: 'on', newestKey: config.encryptionKeys.at(-1)!.id, keys: config.encryptionKeys.length } : { state: 'off' });
  const metrics = new Metrics();
  const chunkSweeper = new ChunkSweeper(store, (n) => n > 0 && logger.info('swept unreferenced chunks', { count: n }), (err) => logger.error('sweeping chunks failed', { error: String(err) }));
  chunkSweeper.start();
  const state = new StateService(store, metrics);
  const locks = new LockService(store, metrics);
  metrics.addGauge(new Gauge('statelock_locks_held', 'Locks currently held.', () => locks.count()));
  metrics.addGauge(
    new Gauge('statelock_locks_by_verdict', 'Held locks by liveness verdict.', async () => {
      const { alive, dead, unknown } = await locks.summary();
      return Object.entries({ alive, dead, unknown }).map(([verdict, value]) => ({ labels: { verdict }, value }));
    }),
  );
  metrics.addGauge(
    new Gauge('statelock_lock_age_seconds_max', 'Age of the oldest held lock (0 when none).', async () => {
      const now = Date.now();
      return Math.max(0, ...(await locks.all()).map((l) => Math.round((now - Date.parse(l.acquiredAt)) / 1000)));
    }),
  );
  if (sqlite) {
    metrics.addGauge(new ScrapedCounter('statelock_store_commits_total', 'SQLite COMMITs of store updates; concurrent updates share one (group commit).', () => sqlite.commits));
    metrics.addGauge(new ScrapedCounter('statelock_store_wal_syncs_total', 'fdatasyncs of the SQLite WAL after group commits, before their callers are answered; one may cover several commits.', () => sqlite.walSyncs));
    metrics.addGauge(new ScrapedCounter('statelock_store_updates_total', 'Store updates committed (each LOCK, UNLOCK, write … is one); ÷ commits = updates per fsync.', () => sqlite.committedUpdates));
    metrics.addGauge(new Gauge('statelock_disk_reserve_whole', '1 while the disk reserve kept for locks is in place; 0 once a full disk made it released (state writes are then refused).', async () => (sqlite.diskReserve.whole ? 1 : 0)));
  }
  metrics.addGauge(new Gauge('statelock_lock_waiters', 'LOCK requests waiting in line (?wait=).', async () => locks.waiters.total()));
  const httpBackend = new HttpBackendDoor(state, locks);
  const authenticator = new Authenticator(store, config.awsCredentials);
  const api = new ApiDoor(state, locks, new AuditService(store), new SessionService(store), new TokenService(store, () => authenticator.principalsChanged()));
  const loopback = isLoopbackHost(config.host);
  const principals = await store.countLivePrincipals();
  if (!loopback && principals === 0 && !config.insecureNoAuth) {
    await chunkSweeper.stop();
    await store.close();
    throw new StatelockError('INSECURE_NO_AUTH', { host: config.host });
  }
  const authState = principals > 0 ? 'tokens required' : loopback ? 'off: no token exists yet, so every request on loopback is allowed (create one with `statelock token create`)' : 'OFF (--insecure-no-auth): anyone who reaches this address may do anything';
  const ui = new UiDoor(authenticator, config.tls !== null);
  const aws = new AwsDoor({ state, locks, store, s3Domains: config.s3Domains }, { authenticator, loopback, maxSkewMs: config.awsMaxSkewMs }, config.maxBodyBytes);

  // serve --release-dead-after: the server itself releases locks whose holder is proven dead.
  const sweeper =
    config.releaseDeadAfterMs === null
      ? null
      : setInterval(
          () => {
            locks
              .releaseDead(config.releaseDeadAfterMs!, { addr: 'statelock', userAgent: 'release-dead-after', principal: null })
              .then((n) => n > 0 && logger.info('released dead locks', { count: n }))
              .catch((err: unknown) => logger.error('releasing dead locks failed', { error: String(err) }));
          },
          Math.max(100, Math.min(config.releaseDeadAfterMs / 2, 1000)),
        );
  sweeper?.unref();
  let draining = false;
  let inFlight = 0;

  const route = (path: string, req: IncomingMessage, url: string): Route | null => {
    // SigV4-signed requests are S3, DynamoDB or STS whatever their path (a bucket may be called "state").
    if (AwsDoor.claims(req)) return { door: 'aws', tail: path, run: (c) => aws.handle(c, url) };
    if (path.startsWith('/state/')) return { door: 'http-backend', tail: path.slice(7), run: (c) => httpBackend.handleState(c) };
    if (path.startsWith('/lock/')) return { door: 'http-backend', tail: path.slice(6), run: (c) => httpBackend.handleLock(c) };
    if (path.startsWith('/api/v1/')) return { door: 'api', tail: path.slice(8), run: (c) => api.handle(c) };
    if (path === '/ui' || path.startsWith('/ui/')) return { door: 'ui', tail: path.slice(3), run: (c) => ui.handle(c) };
    const ops: Record<string, (c: RequestContext) => Promise<void>> = {
      '/healthz': async (c) => sendJson(c.res, 200, { status: 'ok' }),
      '/readyz': async (c) => {
        if (draining) throw new StatelockError('SHUTTING_DOWN');
        await locks.count(); // the store answers
        sendJson(c.res, 200, { status: 'ready', engine: store.engine });
      },
      '/metrics': async (c) => send(c.res, 200, Buffer.from(await metrics.render()), 'text/plain; version=0.0.4'),
    };
    const op = ops[path];
    return op ? { door: 'ops', tail: '', run: op } : null;
  };

  /** A token in Authorization; for the API, otherwise the dashboard's session cookie (with its CSRF token on changes). */
  const principalOf = async (req: IncomingMessage, method: string, door: Door) => {
    if (door === 'ui') return ANONYMOUS; // the dashboard door reads its session cookie itself (signed out is not an error there)
    const cookie = door === 'api' && !req.headers.authorization ? cookieValue(req.headers.cookie, SESSION_COOKIE) : null;
    if (!cookie || !(await authenticator.enforced())) return authenticator.fromAuthorization(req.headers.authorization);
    const session = await authenticator.fromSessionCookie(cookie);
    if (!session) throw new StatelockError('UNAUTHENTICATED', { reason: 'the dashboard session expired or is no longer valid: sign in again' });
    const csrf = req.headers[CSRF_HEADER];
    if (method !== 'GET' && method !== 'HEAD' && !csrfMatches(Array.isArray(csrf) ? csrf[0] : csrf, session.csrf)) {
      throw new StatelockError('CSRF_REJECTED', { reason: `a change made with the dashboard's session cookie must carry the ${CSRF_HEADER} header of that session` });
    }
    return session.principal;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const clientAddr = req.socket?.remoteAddress;
    inFlight++;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    const found = route(path, req, url);
    const door: Door = found?.door ?? 'ops';
    try {
      if (draining) throw new StatelockError('SHUTTING_DOWN');
      if (!found) throw new StatelockError('NOT_FOUND', { path });
      if (found.door === 'ops' && req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        throw new StatelockError('METHOD_NOT_ALLOWED', { method: req.method ?? '', path, allowed: 'GET, HEAD' });
      }
      const ctx = createContext(req, res, found.tail, query, config.maxBodyBytes);
      if (found.door === 'http-backend' || found.door === 'api' || found.door === 'ui') {
        // Browsers say where a request comes from; no other web site may use a signed-in (or token-less loopback) server.
        if (!sameOriginRequest(req.headers, ctx.method)) throw new StatelockError('CSRF_REJECTED', { reason: `Origin ${req.headers.origin ?? '(none)'} is not this server (${req.headers.host ?? 'no Host'})` });
        ctx.principal = await principalOf(req, ctx.method, found.door);
        if (ctx.principal.kind !== 'anonymous') ctx.client.principal = ctx.principal.name;
      }
      await found.run(ctx);
    } catch (err) {
      answerError(req, res, door, err, logger, { method: req.method, path }, aws);
    } finally {
      inFlight--;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ door, method: req.method ?? '', status: String(res.statusCode) });
      metrics.requestSeconds.observe(seconds);
      // The socket may already be gone (a 413 closes it; a client may hang up): never let logging throw.
      if (logRequests) logger.info('request', { door, method: req.method, path, status: res.statusCode, ms: Math.round(seconds * 1e6) / 1e3, client: clientAddr });
    }
  };

  // Node checks the timeouts every connectionsCheckingInterval (30 s by default): check often enough for the timeout given.
  const serverOptions = {
    maxHeaderSize: 16 * 1024,
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: Math.min(60_000, config.requestTimeoutMs),
    connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(config.requestTimeoutMs / 4))),
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) =>
    void handle(req, res).catch((err: unknown) => logger.error('request handling failed', { error: err instanceof Error ? err.stack : String(err) }));
  const server: Server = config.tls ? createTlsServer({ ...serverOptions, cert: config.tls.cert, key: config.tls.key }, onRequest) : createServer(serverOptions, onRequest);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Malformed HTTP (bad request line, oversized headers): answer 400/431 and close, never crash.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await chunkSweeper.stop();
    await store.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      draining = true;
      if (sweeper) clearInterval(sweeper);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = Date.now() + config.drainMs;
      while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      server.closeAllConnections();
      await closed;
      await chunkSweeper.stop();
      await store.close();
      logger.info('stopped', { inFlightAbandoned: inFlight });
    })());

  return { server, store, logger, url: `${config.tls ? 'https' : 'http'}://${host}:${port}`, authState, close };
}

/** The one place a failure becomes an HTTP answer. Coded refusals keep their status; anything else is a 500 and is logged. */
function answerError(req: IncomingMessage, res: ServerResponse, door: Door, err: unknown, logger: Logger, fields: Record<string, unknown>, aws: AwsDoor): void {
  const known = err instanceof StatelockError ? err : null;
  if (!known) logger.error('unexpected error', { ...fields, error: err instanceof Error ? err.stack : String(err) });
  const coded = known ?? new StatelockError('INTERNAL', { reason: 'see the server log' });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (coded.code === 'PAYLOAD_TOO_LARGE') res.setHeader('Connection', 'close');
  if (coded.status === 503) res.setHeader('Retry-After', '1');
  if (coded.code === 'UNAUTHENTICATED' && door !== 'aws') res.setHeader('WWW-Authenticate', 'Basic realm="statelock", Bearer'); // Terraform's client honours it on 503
  // The http door's lock conflicts answer with the holder's lock info as the body; the code travels here for tooling.
  res.setHeader('X-Statelock-Error', coded.code);
  if (door === 'http-backend') HttpBackendDoor.sendError(res, coded);
  else if (door === 'aws') aws.sendError(req, res, coded);
  else sendJson(res, coded.status, errorBody(coded));
}
