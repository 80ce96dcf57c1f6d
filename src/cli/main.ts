import { runServe } from './commands/serve.js';
import { UsageError } from './usage-error.js';

const USAGE = `Usage: statelock <command> [options]

Commands:
  serve        Run the state server (SQLite in ./.statelock by default)

Run 'statelock <command> --help' for a command's options.`;

/** Exit codes: 0 success, 1 error, 2 usage. */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return runServe(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`statelock: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`statelock: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
