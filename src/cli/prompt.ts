import { createInterface } from 'node:readline';

/**
 * Asks one question on stderr and reads one line from stdin (a TTY or a pipe, as Terraform's prompts
 * do). End of input without a line answers ''.
 */
export function ask(question: string, stdin: NodeJS.ReadableStream = process.stdin, stderr: NodeJS.WritableStream = process.stderr): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: stdin, output: stderr, terminal: false });
    let answered = false;
    stderr.write(question);
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(line.trim());
    });
    rl.once('close', () => {
      if (!answered) resolve('');
    });
  });
}
