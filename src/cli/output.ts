/** How the CLI writes: aligned tables, colour only on a TTY without NO_COLOR, ages people read. */
export interface Output {
  /** Whether ANSI colour is on: stdout is a TTY and NO_COLOR is unset. */
  readonly color: boolean;
  out(text: string): void;
  err(text: string): void;
}

export function createOutput(stdout: NodeJS.WriteStream, stderr: NodeJS.WriteStream, env: NodeJS.ProcessEnv): Output {
  return {
    color: Boolean(stdout.isTTY) && env.NO_COLOR === undefined,
    out: (text) => void stdout.write(text),
    err: (text) => void stderr.write(text),
  };
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const;
export type Style = keyof typeof CODES;

export function paint(o: Output, style: Style, text: string): string {
  if (!o.color) return text;
  const [on, off] = CODES[style];
  return `\u001b[${on}m${text}\u001b[${off}m`;
}

/** Columns padded to the widest cell (measured without colour codes), two spaces apart, header in bold. */
export function table(o: Output, header: string[], rows: string[][]): string {
  const visible = (s: string) => s.replace(/\u001b\[\d+m/g, '').length;
  const widths = header.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visible(c))))
      .join('  ')
      .trimEnd();
  return [paint(o, 'bold', line(header)), ...rows.map(line)].join('\n') + '\n';
}

/** 45s, 3m12s, 2h05m, 3d04h. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

export function printJson(o: Output, value: unknown): void {
  o.out(JSON.stringify(value, null, 2) + '\n');
}
