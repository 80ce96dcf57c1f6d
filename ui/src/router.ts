/**
 * Hash routes (`#/state/<key>`), so state keys with `/` need no server routing. Keys travel
 * percent-encoded as one segment; filters travel as a query after `?`.
 */

export type RouteName = 'overview' | 'states' | 'state' | 'locks' | 'audit' | 'signin' | 'not-found';

export interface Route {
  name: RouteName;
  /** The state key of `#/state/<key>`. */
  key: string | null;
  params: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  const route = (name: RouteName, key: string | null = null): Route => ({ name, key, params });
  if (path === '' || path === '/') return route('overview');
  if (path === '/states') return route('states');
  if (path === '/locks') return route('locks');
  if (path === '/audit') return route('audit');
  if (path === '/signin') return route('signin');
  if (path.startsWith('/state/') && path.length > '/state/'.length) {
    try {
      return route('state', decodeURIComponent(path.slice('/state/'.length)));
    } catch {
      return route('not-found');
    }
  }
  return route('not-found');
}

function withParams(path: string, params: Record<string, string | null | undefined>): string {
  const p = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) p.set(name, value);
  const text = p.toString();
  return text ? `${path}?${text}` : path;
}

export const hashes = {
  overview: () => '#/',
  states: (prefix?: string | null, after?: string | null) => withParams('#/states', { prefix, after }),
  state: (key: string) => `#/state/${encodeURIComponent(key)}`,
  locks: () => '#/locks',
  audit: (filters: { key?: string | null; action?: string | null; since?: string | null } = {}) => withParams('#/audit', filters),
  signin: () => '#/signin',
};

/** Changes the address without a navigation (the page already shows what it names). */
export function replaceHash(hash: string): void {
  if (location.hash !== hash) history.replaceState(null, '', hash);
}
