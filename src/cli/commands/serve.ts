import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startApp } from '../../server/app.js';
import { warmUpBodyPaths } from '../../server/jit-warmup.js';
import { DEFAULTS, parseAwsCredentials, type ServerConfig } from '../../server/config.js';
import { isLogLevel } from '../../server/logger.js';
import { parseOptions } from '../parse-options.js';
import { parseDuration } from '../../shared/duration.js';
import { UsageError } from '../usage-error.js';
import { StatelockError } from '../../server/errors.js';
import { parseEncryptionKeys, type EncryptionKey } from '../../store/encryption.js';

const HELP = `Usage: statelock serve [--host H] [--port P] [--data DIR | --database URL] [--log-level L] [--max-body-bytes N] [--release-dead-after D]
                       [--tls-cert FILE --tls-key FILE] [--aws-credentials ID:SECRET,…] [--s3-domain NAME …]

  --host            address to listen on (default 127.0.0.1)
  --port            port to listen on; 0 picks a free port and prints it (default 8080)
  --data            directory of the SQLite database (default ./.statelock)
  --database URL    run on PostgreSQL instead (postgres://user:pass@host:5432/db; env STATELOCK_DATABASE_URL);
                    several replicas may share one database
  --log-level       debug | info | warn | error (default info); logs are JSON lines on stderr
  --max-body-bytes  largest request body accepted (default 536870912 = 512 MiB)
  --release-dead-after D
                    release locks whose holder has been proven dead (its statelock run session
                    lease expired with no activity since, or its command exited) for D, e.g. 5m;
                    audited. Off by default: a stale lock then waits for an operator.
  --tls-cert FILE, --tls-key FILE
                    serve HTTPS with this PEM certificate (chain) and private key
  --aws-credentials ID:SECRET[,ID:SECRET…]
                    access keys for the S3, DynamoDB and STS doors (env STATELOCK_AWS_CREDENTIALS);
                    SigV4 signatures are then verified. Without them any access key is accepted
                    unverified, and only while listening on loopback
  --encryption-key-file FILE
                    encrypt every stored state version at rest (AES-256-GCM) with the keys in FILE:
                    lines of <key id>:<base64 of 32 bytes>, the newest last (env STATELOCK_ENCRYPTION_KEY,
                    same format, commas allowed); "statelock rekey" re-encrypts old versions
  --request-timeout D
                    answer 408 to a request whose headers and body have not arrived within D
                    (default 5m): slow or stalled clients cannot hold connections forever
  --insecure-no-auth
                    listen beyond loopback although no token exists yet (everyone may do
                    everything); without it such a start is refused
  --s3-domain NAME  a host name under which <bucket>.NAME is S3 virtual-host addressing
                    (repeatable; default localhost). Path style always works
  --no-warm-up      skip the start-up warm-up: by default, after start, the state scanner, the
                    chunker and chunk decoding run over a small sample so that the first writes
                    after a restart run at full speed (it keeps ~6 MiB more memory resident)
`;

/** Starts the server, prints the backend block to paste, and runs until SIGTERM or SIGINT. */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parseOptions({
    args,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      data: { type: 'string' },
      database: { type: 'string' },
      'log-level': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'release-dead-after': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'aws-credentials': { type: 'string' },
      's3-domain': { type: 'string', multiple: true },
      'insecure-no-auth': { type: 'boolean' },
      'encryption-key-file': { type: 'string' },
      'request-timeout': { type: 'string' },
      'warm-up': { type: 'boolean' }, // the default; still accepted
      'no-warm-up': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config: ServerConfig = {
    ...DEFAULTS,
    dataDir: resolve(String(values.data ?? '.statelock')),
    databaseUrl: (values.database as string | undefined) ?? (process.env.STATELOCK_DATABASE_URL || null),
  };
  if (config.databaseUrl !== null && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) throw new UsageError('--database must be a postgres:// URL');
  if (values.host !== undefined) config.host = String(values.host);
  if (values.port !== undefined) config.port = intOption('--port', values.port, 0, 65535);
  if (values['max-body-bytes'] !== undefined) config.maxBodyBytes = intOption('--max-body-bytes', values['max-body-bytes'], 1, Number.MAX_SAFE_INTEGER);
  if (values['release-dead-after'] !== undefined) {
    const seconds = parseDuration(String(values['release-dead-after']));
    if (seconds === null) throw new UsageError(`--release-dead-after must be a duration such as 30s, 5m or 1h, not "${String(values['release-dead-after'])}"`);
    config.releaseDeadAfterMs = seconds * 1000;
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (values['tls-cert'] !== undefined) {
    const read = (flag: string, file: string) => {
      try {
        return readFileSync(file);
      } catch (err) {
        throw new UsageError(`${flag}: cannot read ${file}: ${(err as Error).message}`);
      }
    };
    config.tls = { cert: read('--tls-cert', String(values['tls-cert'])), key: read('--tls-key', String(values['tls-key'])) };
  }
  const credentials = (values['aws-credentials'] as string | undefined) ?? process.env.STATELOCK_AWS_CREDENTIALS;
  if (credentials) {
    const parsed = parseAwsCredentials(credentials);
    if (!parsed || parsed.size === 0) throw new UsageError('--aws-credentials must be ID:SECRET pairs separated by commas');
    config.awsCredentials = parsed;
  }
  config.insecureNoAuth = values['insecure-no-auth'] === true;
  if (values['request-timeout'] !== undefined) {
    const seconds = parseDuration(String(values['request-timeout']));
    if (seconds === null || seconds < 1) throw new UsageError(`--request-timeout must be a duration of at least 1s, such as 30s or 5m, not "${String(values['request-timeout'])}"`);
    config.requestTimeoutMs = seconds * 1000;
  }
  config.encryptionKeys = encryptionKeysFrom(values['encryption-key-file'] as string | undefined);
  if (values['s3-domain'] !== undefined) config.s3Domains = (values['s3-domain'] as string[]).map((d) => d.toLowerCase());
  if (values['log-level'] !== undefined) {
    const level = String(values['log-level']);
    if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn or error, not "${level}"`);
    config.logLevel = level;
  }

  const started = performance.now();
  let app;
  try {
    app = await startApp(config);
  } catch (err) {
    if (err instanceof StatelockError && err.code === 'INSECURE_NO_AUTH') throw new UsageError(err.message);
    throw err;
  }
  app.logger.info('listening', { url: app.url, ...(config.databaseUrl ? {} : { dataDir: config.dataDir }), engine: app.store.engine, startupMs: Math.round(performance.now() - started) });
  app.logger.info('authentication', { state: app.authState });
  process.stdout.write(banner(app.url, config.databaseUrl ? 'PostgreSQL' : `SQLite in ${config.dataDir}`, app.authState));
  // On by default: cold, a fresh process's first few MiB of state scan ~20x slower (bench/README.md). It keeps
  // ~6 MiB more resident for the server's life (JIT code and heap); --no-warm-up saves that.
  if (values['no-warm-up'] !== true) {
    const at = performance.now();
    // In the background, between requests.
    void warmUpBodyPaths().then((r) => app.logger.debug('warm-up done', { ...r, ms: Math.round(performance.now() - at) }));
  }

  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      app.logger.info('draining', { signal });
      void app.close().then(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

/** The keys of `--encryption-key-file FILE` or STATELOCK_ENCRYPTION_KEY; null when neither is given. */
export function encryptionKeysFrom(file: string | undefined): EncryptionKey[] | null {
  let text: string | undefined = process.env.STATELOCK_ENCRYPTION_KEY || undefined;
  let source = 'STATELOCK_ENCRYPTION_KEY';
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--encryption-key-file: cannot read ${file}: ${(err as Error).message}`);
    }
    source = file;
  }
  if (text === undefined) return null;
  const keys = parseEncryptionKeys(text);
  if ('error' in keys) throw new UsageError(`${source}: ${keys.error}`);
  return keys;
}

function intOption(name: string, raw: unknown, min: number, max: number): number {
  const text = String(raw);
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw new UsageError(`${name} must be an integer from ${min} to ${max}, not "${text}"`);
  return Number(text);
}

function banner(url: string, storage: string, auth: string): string {
  const address = `${url}/state/team/app/prod/terraform.tfstate`;
  return `statelock listening on ${url} (${storage})
authentication: ${auth}

Paste into your Terraform configuration, one key per state (the path after /state/):

terraform {
  backend "http" {
    address        = "${address}"
    lock_address   = "${address}"
    unlock_address = "${address}"
  }
}

`;
}
