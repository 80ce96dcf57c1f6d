/** Seconds per unit of a duration: `s`econds, `m`inutes, `h`ours, `d`ays, `w`eeks. */
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;

/**
 * `90m`, `36h`, `7d`, `2w`, `0s` → seconds: a whole number and one unit (s, m, h, d, w), nothing
 * else — a bare number is refused because its unit would be a guess. Returns null when `text` is
 * not such a duration.
 */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})([smhdw])$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
}
