import type { ApiClient } from './api-client.js';
import type { Output } from './output.js';

/** What every command gets: the server, where to write, and the process's environment. */
export interface CliContext {
  api: ApiClient;
  io: Output;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadStream;
  /** Milliseconds since the epoch; a function so a long command reads the clock when it needs it. */
  now(): number;
}

/** A command takes its own arguments (after the command words, global options removed) and returns an exit code. */
export type Command = (args: string[], ctx: CliContext) => Promise<number>;
