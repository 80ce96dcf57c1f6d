import { ApiClient, ApiError } from './api-client.js';
import type { CliContext, Command } from './command.js';
import { backendConfigCommand } from './commands/backend-config.js';
import { backupCommand } from './commands/backup.js';
import { forceUnlockCommand } from './commands/force-unlock.js';
import { lockShowCommand } from './commands/lock-show.js';
import { locksCommand } from './commands/locks.js';
import { tokenCreateCommand, tokenListCommand, tokenRevokeCommand } from './commands/token.js';
import { auditCommand } from './commands/audit.js';
import { rekeyCommand } from './commands/rekey.js';
import { pruneCommand } from './commands/prune.js';
import { recoverCommand } from './commands/recover.js';
import { runCommand } from './commands/run.js';
import { runServe } from './commands/serve.js';
import { stateDiffCommand } from './commands/state-diff.js';
import { stateHistoryCommand } from './commands/state-history.js';
import { stateListCommand } from './commands/state-list.js';
import { statePullCommand } from './commands/state-pull.js';
import { statePushCommand } from './commands/state-push.js';
import { stateRestoreCommand } from './commands/state-restore.js';
import { stateRmCommand } from './commands/state-rm.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { lockInfoBlock } from './lock-view.js';
import { createOutput } from './output.js';
import { UsageError } from './usage-error.js';

/** Command words → command. Two-word commands ("state pull") are looked up before one-word ones. */
const COMMANDS: Record<string, { run: Command; summary: string }> = {
  serve: { run: (args) => runServe(args), summary: 'Run the state server (SQLite in ./.statelock by default)' },
  locks: { run: locksCommand, summary: 'List every held lock: key, ID, operation, who, age, last activity, verdict' },
  'lock show': { run: lockShowCommand, summary: 'Show one lock entry in full, its age, and what it means' },
  'force-unlock': { run: forceUnlockCommand, summary: "Release a lock, naming the holder's ID, after a confirmation prompt" },
  run: { run: runCommand, summary: 'Run terraform/tofu under a session whose heartbeat proves the lock holder alive' },
  recover: { run: recoverCommand, summary: "The lesson's seven-step recovery of a stuck lock, as one guided flow" },
  'state list': { run: stateListCommand, summary: 'List states, optionally under a key prefix' },
  'state pull': { run: statePullCommand, summary: 'Print or save the stored bytes of a state (or of one serial)' },
  'state push': { run: statePushCommand, summary: 'Upload a state file with the checks of terraform state push' },
  'state history': { run: stateHistoryCommand, summary: 'List every version of a state, oldest first' },
  'state rm': { run: stateRmCommand, summary: 'Soft-delete a state (refused while locked; versions stay)' },
  'state diff': { run: stateDiffCommand, summary: 'Resources and outputs changed between two versions' },
  'state restore': { run: stateRestoreCommand, summary: 'Roll an old version forward as a new version' },
  backup: { run: backupCommand, summary: 'Save the current state of a key (or a prefix) to a timestamped file' },
  prune: { run: pruneCommand, summary: 'Soft-delete old per-PR states under a prefix' },
  'token create': { run: tokenCreateCommand, summary: 'Create a token with key-glob grants (and --aws an AWS key pair); shown once' },
  'token list': { run: tokenListCommand, summary: 'List tokens and their grants (never their secrets)' },
  'token revoke': { run: tokenRevokeCommand, summary: 'Revoke a token: its next request is refused (401)' },
  rekey: { run: rekeyCommand, summary: 'Re-encrypt every stored state version with the newest encryption key' },
  audit: { run: auditCommand, summary: 'Read the audit trail: every lock, unlock, write, delete and token change' },
  'backend-config': { run: backendConfigCommand, summary: 'Print the backend block for a key, or its per-PR variant' },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `Usage: statelock [--server URL] [--token TOKEN] <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Global options (before or after the command):
  --server URL    statelock server (env STATELOCK_SERVER, default http://127.0.0.1:8080)
  --token TOKEN   API token (env STATELOCK_TOKEN)

Exit codes: 0 success, 1 error, 2 usage, 3 refused because of a lock, 4 not found (docs/cli.md).
`;
}

/** Removes `--server`/`--token` (either `--opt value` or `--opt=value`) from anywhere in argv. */
export function extractGlobals(argv: string[]): { server?: string; token?: string; rest: string[] } {
  const found: { server?: string; token?: string } = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    const m = /^--(server|token)(?:=(.*))?$/.exec(arg);
    if (!m) {
      rest.push(arg);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${m[1]} needs a value`);
    found[m[1] as 'server' | 'token'] = value;
  }
  return { ...found, rest };
}

async function main(argv: string[]): Promise<number> {
  const globals = extractGlobals(argv);
  const [first, second, ...more] = globals.rest;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    process.stdout.write(usage());
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const two = second !== undefined ? COMMANDS[`${first} ${second}`] : undefined;
  const command = two ?? COMMANDS[first];
  if (!command) throw new UsageError(`unknown command "${[first, second].filter(Boolean).join(' ')}"\n\n${usage()}`);
  const args = two ? more : globals.rest.slice(1);
  const ctx: CliContext = {
    api: new ApiClient({ server: globals.server ?? process.env.STATELOCK_SERVER ?? 'http://127.0.0.1:8080', token: globals.token ?? process.env.STATELOCK_TOKEN }),
    io: createOutput(process.stdout, process.stderr, process.env),
    env: process.env,
    stdin: process.stdin,
    now: () => Date.now(),
  };
  return command.run(args, ctx);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`statelock: ${message}\n`);
    if (err instanceof ApiError && err.holder) process.stderr.write(`\nLock Info:\n${lockInfoBlock(err.holder)}`);
    process.exitCode = exitCodeFor(err);
  },
);
