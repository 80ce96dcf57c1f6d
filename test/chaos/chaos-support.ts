import { randomInt } from 'node:crypto';
import { rawRequest } from '../support/http.js';
import { rng } from '../support/rng.js';
export { rng };

/**
 * Shared pieces of the chaos tests: seeded randomness (so a failing run can be replayed with
 * STATELOCK_CHAOS_SEED), bounded knobs from the environment, an overlap checker for lock holds, and
 * a versions lister for the JSON API.
 */

/** A positive integer from the environment, or the default (the CI-bounded value). */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name} must be a positive integer, not "${raw}"`);
  return Number(raw);
}

/** The run's seed: STATELOCK_CHAOS_SEED when given, else a fresh random one (printed by the caller). */
export function chaosSeed(): number {
  const raw = process.env.STATELOCK_CHAOS_SEED;
  if (raw === undefined || raw === '') return randomInt(1, 2 ** 31);
  if (!/^\d+$/.test(raw)) throw new Error(`STATELOCK_CHAOS_SEED must be a non-negative integer, not "${raw}"`);
  return Number(raw) >>> 0;
}


/** A stream derived from the run's seed and some coordinates (round, client …): independent of scheduling. */
export function derivedRng(seed: number, ...coords: number[]): () => number {
  let h = seed >>> 0;
  for (const c of coords) h = Math.imul(h ^ (c + 0x9e3779b9), 0x85ebca6b) >>> 0;
  return rng(h ^ (h >>> 13));
}

/** An integer in [min, max]. */
export function between(rand: () => number, min: number, max: number): number {
  return min + Math.floor(rand() * (max - min + 1));
}

/**
 * One lock hold as the client saw it, on the client's own clock: `granted` when the LOCK's 200 arrived
 * (after the server granted it), `released` when the client sent its UNLOCK (before the server released
 * it) — so the client's interval lies inside the server's, and two server holds that did not overlap
 * can never produce client intervals that do. `released` is Infinity for a hold that was never released.
 */
export interface Hold {
  key: string;
  id: string;
  granted: number;
  released: number;
}

/** Every pair of holds on one key whose intervals overlap (checked against the latest end so far). */
export function findOverlaps(holds: Iterable<Hold>): string[] {
  const byKey = new Map<string, Hold[]>();
  for (const h of holds) {
    const list = byKey.get(h.key);
    if (list) list.push(h);
    else byKey.set(h.key, [h]);
  }
  const problems: string[] = [];
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.granted - b.granted);
    let latest: Hold | null = null;
    for (const h of list) {
      if (latest && h.granted < latest.released) {
        problems.push(`${key}: ${h.id} was granted at ${h.granted.toFixed(3)} ms while ${latest.id} held it since ${latest.granted.toFixed(3)} ms (released ${latest.released.toFixed(3)} ms)`);
      }
      if (!latest || h.released > latest.released) latest = h;
    }
  }
  return problems;
}

export interface VersionItem {
  seq: number;
  serial: number;
  lineage: string;
  sha256: string;
  size: number;
}

/** Every version of `key` after `after` (oldest first), following the API's pages; [] when the key has none. */
export async function listVersions(url: string, key: string, after = 0): Promise<VersionItem[]> {
  const out: VersionItem[] = [];
  let cursor = after;
  for (;;) {
    const res = await rawRequest(`${url}/api/v1/versions/${key}?limit=1000&after=${cursor}`);
    if (res.status === 404 && cursor === 0) return out;
    if (res.status !== 200) throw new Error(`GET versions of ${key} after ${cursor}: ${res.status} ${res.text}`);
    const page = res.json<{ items: VersionItem[]; next: string | null }>();
    out.push(...page.items);
    if (!page.next) return out;
    cursor = Number(page.next);
  }
}

/** Formats a millisecond duration as "1 min 23.4 s" or "12.3 s". */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${(s % 60).toFixed(1)} s`;
}
