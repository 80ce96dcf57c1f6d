import { fmt, median, ratio, round } from './stats.js';

/** One line of the results table: a statelock figure next to its same-run baseline. */
export interface Figure {
  benchmark: string;
  metric: string;
  unit: string;
  /** Which direction is good for this metric. */
  better: 'higher' | 'lower';
  /** Median over runs. */
  statelock: number;
  baseline: number;
  /** statelock ÷ baseline (median ÷ median). */
  ratio: number;
  baselineName: string;
  runs: { statelock: number[]; baseline: number[] };
  note?: string;
}

export function figure(f: Omit<Figure, 'statelock' | 'baseline' | 'ratio'> & { statelock?: number; baseline?: number }): Figure {
  const s = f.statelock ?? median(f.runs.statelock);
  const b = f.baseline ?? median(f.runs.baseline);
  return {
    ...f,
    statelock: round(s, 4),
    baseline: round(b, 4),
    ratio: round(ratio(s, b), 4),
    runs: { statelock: f.runs.statelock.map((v) => round(v, 4)), baseline: f.runs.baseline.map((v) => round(v, 4)) },
  };
}

export function markdownTable(figures: readonly Figure[]): string {
  const lines = [
    '| Benchmark | Metric | statelock | baseline | ratio (statelock ÷ baseline) | better | runs | baseline is | notes |',
    '|---|---|---:|---:|---:|:---:|---:|---|---|',
  ];
  for (const f of figures) {
    const unit = f.unit ? ` ${f.unit}` : '';
    const ratioText = Number.isFinite(f.ratio) ? `**${f.ratio >= 10 ? f.ratio.toFixed(1) : f.ratio.toFixed(2)}×**` : 'n/a';
    lines.push(
      `| ${f.benchmark} | ${f.metric} | ${fmt(f.statelock)}${unit} | ${fmt(f.baseline)}${unit} | ${ratioText} | ${f.better === 'higher' ? '↑' : '↓'} | ${f.runs.statelock.length} | ${f.baselineName} | ${f.note ?? ''} |`,
    );
  }
  return lines.join('\n');
}

/** One of the targets, checked against a figure of the same run. */
export interface TargetCheck {
  /** The target in the words. */
  target: string;
  /** What was measured, the ratio first. */
  measured: string;
  /** null: not measured in this run (e.g. PostgreSQL missing). */
  met: boolean | null;
  /** Which row(s) of the results table it comes from. */
  row: string;
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  const lines = ['| Issue target | Measured (same run) | Met? | From row |', '|---|---|:---:|---|'];
  for (const c of checks) lines.push(`| ${c.target} | ${c.measured} | ${c.met === null ? 'n/a' : c.met ? '**met**' : '**NOT met**'} | ${c.row} |`);
  return lines.join('\n');
}
