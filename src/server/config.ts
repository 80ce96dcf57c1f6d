import type { EncryptionKey } from '../store/encryption.js';
import type { LogLevel } from './logger.js';

export interface ServerConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  dataDir: string;
  /** A PostgreSQL URL: run on PostgreSQL (several replicas may share it) instead of SQLite in dataDir. */
  databaseUrl: string | null;
  logLevel: LogLevel;
  /** Largest request body accepted, in bytes (413 beyond). */
  maxBodyBytes: number;
  /** How long SIGTERM waits for in-flight requests before closing connections. */
  drainMs: number;
  /** Release locks whose holder has been judged dead this long (ms); null: never (the default). */
  releaseDeadAfterMs: number | null;
  /** Serve HTTPS with this PEM certificate chain and key instead of plain HTTP. */
  tls: { cert: Buffer; key: Buffer } | null;
  /**
   * AWS access key ID → secret, for SigV4-signed S3/DynamoDB/STS requests. Empty: any access key is
   * accepted without a signature check, but only while the server listens on loopback.
   */
  awsCredentials: Map<string, string>;
  /** Host names under which `<bucket>.<name>` is S3 virtual-host addressing (besides path style). */
  s3Domains: string[];
  /** Largest accepted difference between a signed request's time and the server's clock. */
  awsMaxSkewMs: number;
  /** Listen beyond loopback although no token exists (everything allowed to everyone). */
  insecureNoAuth: boolean;
  /** A request whose headers and body have not fully arrived after this long is answered 408 (slow clients). */
  requestTimeoutMs: number;
  /** Encrypt stored state bodies at rest with these keys (the last is the newest); null: off. */
  encryptionKeys: EncryptionKey[] | null;
  /**
   * SQLite: disk space kept so that locks keep working when the disk is full (docs/operations.md, "Disk
   * space"); null: twice the database's size at start-up, 4 to 64 MiB, at most 1/8 of its file system.
   */
  diskReserveBytes: number | null;
}

export const DEFAULTS: Omit<ServerConfig, 'dataDir' | 'databaseUrl'> = {
  host: '127.0.0.1',
  port: 8080,
  logLevel: 'info',
  maxBodyBytes: 512 * 1024 * 1024,
  drainMs: 10_000,
  releaseDeadAfterMs: null,
  tls: null,
  awsCredentials: new Map(),
  s3Domains: ['localhost'],
  awsMaxSkewMs: 15 * 60 * 1000,
  insecureNoAuth: false,
  encryptionKeys: null,
  requestTimeoutMs: 300_000,
  diskReserveBytes: null,
};

/** `ID:SECRET[,ID:SECRET…]` → map; null when a pair is malformed. */
export function parseAwsCredentials(text: string): Map<string, string> | null {
  const out = new Map<string, string>();
  for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf(':');
    if (at <= 0 || at === pair.length - 1) return null;
    out.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return out;
}

/** Is this listen address reachable only from this machine? */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
