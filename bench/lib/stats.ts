/** Small statistics helpers. Every figure the bench reports is the median of several runs. */

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of a sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

export function ratio(a: number, b: number): number {
  return b === 0 || !Number.isFinite(a) || !Number.isFinite(b) ? NaN : a / b;
}

/**
 * The ratios of runs taken in the same round, `a[i] ÷ b[i]` (the bench interleaves its targets round by round, so
 * run i of each lies close in time): their range, and in how many rounds the ratio reached `target`. Null when
 * there is no pair to divide.
 */
export function roundRatios(a: readonly number[], b: readonly number[], target: number): { min: number; max: number; reached: number; rounds: number } | null {
  const ratios = a.slice(0, b.length).map((x, i) => ratio(x, b[i]!)).filter(Number.isFinite);
  if (ratios.length === 0) return null;
  return { min: Math.min(...ratios), max: Math.max(...ratios), reached: ratios.filter((r) => r >= target).length, rounds: ratios.length };
}

export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** 3 significant digits, for tables. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
