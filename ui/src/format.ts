/** How numbers, sizes, durations and times read on the page. Pure. */

/** `0 B`, `812 B`, `4.2 KiB`, `1.3 MiB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A duration in seconds as its two largest units: `42s`, `3m 12s`, `5h 2m`, `3d 4h`. */
export function formatAge(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const units: Array<[string, number]> = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [name, size] of units) {
    if (parts.length === 2) break;
    const n = Math.floor(rest / size);
    if (n > 0 || parts.length > 0) {
      parts.push(`${n}${name}`);
      rest -= n * size;
    }
  }
  return parts.join(' ');
}

/** Seconds from an ISO time to now (never negative; NaN for an unreadable time). */
export function secondsSince(iso: string, nowMs = Date.now()): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? NaN : Math.max(0, (nowMs - t) / 1000);
}

/** `3m 12s ago`, or `—`. */
export function formatRelative(iso: string | null | undefined, nowMs = Date.now()): string {
  if (!iso) return '—';
  const s = secondsSince(iso, nowMs);
  return Number.isNaN(s) ? String(iso) : `${formatAge(s)} ago`;
}

/** A local date and time, `2026-01-15 14:22:33` plus the zone offset, for titles and tables. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  const offset = -d.getTimezoneOffset();
  const zone = offset === 0 ? 'UTC' : `UTC${offset > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone}`;
}

/** `12,345`. */
export function formatCount(n: number | null | undefined): string {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : '—';
}

/** A value from a diff or an audit detail as compact text, cut at `max` characters. */
export function compactValue(value: unknown, max = 200): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value === undefined) text = '(absent)';
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A value for a `<input type="datetime-local">` from an ISO time (local time, minutes). */
export function toLocalInput(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The ISO time of a `datetime-local` value (read as local time), or null when empty or unreadable. */
export function fromLocalInput(value: string): string | null {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
