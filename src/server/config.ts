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
}

export const DEFAULTS: Omit<ServerConfig, 'dataDir' | 'databaseUrl'> = {
  host: '127.0.0.1',
  port: 8080,
  logLevel: 'info',
  maxBodyBytes: 512 * 1024 * 1024,
  drainMs: 10_000,
  releaseDeadAfterMs: null,
};
