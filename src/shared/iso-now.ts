/**
 * The current time as an ISO 8601 string, formatted once per millisecond: formatting a Date costs about a
 * microsecond, and a batch of lock requests asks for the same millisecond many times over.
 */
let lastMs = Number.NaN;
let lastIso = '';

export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}
