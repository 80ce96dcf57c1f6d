/**
 * Who may do what, as pure functions: a principal holds grants `<key glob>:<permission,…>`, and every
 * operation of every door needs one permission on one key (or on no key, for server-wide operations).
 */

export const PERMISSIONS = ['read', 'write', 'lock', 'force-unlock', 'delete', 'restore', 'admin'] as const;
export type Permission = (typeof PERMISSIONS)[number];

export interface Grant {
  /** A key glob: `*` matches any run of characters, `/` included (`lesson-17/pr-*`, `*`). */
  pattern: string;
  permissions: Permission[];
}

export function isPermission(text: string): text is Permission {
  return (PERMISSIONS as readonly string[]).includes(text);
}

/**
 * Parses `lesson-17/pr-*:read,write,lock`. The last `:` separates the glob from the permissions, so
 * globs may contain `:` (`env:/*`). Returns the reason when the text is not a grant.
 */
export function parseGrant(text: string): Grant | { error: string } {
  const at = text.lastIndexOf(':');
  if (at <= 0) return { error: `"${text}" is not <key glob>:<permission,…> (e.g. 'lesson-17/pr-*:read,write,lock')` };
  const pattern = text.slice(0, at);
  const names = text.slice(at + 1).split(',').map((p) => p.trim()).filter(Boolean);
  if (names.length === 0) return { error: `"${text}" names no permission; use some of ${PERMISSIONS.join(', ')}` };
  const unknown = names.filter((n) => !isPermission(n));
  if (unknown.length > 0) return { error: `unknown permission ${unknown.map((u) => `"${u}"`).join(', ')} in "${text}"; use ${PERMISSIONS.join(', ')}` };
  return { pattern, permissions: [...new Set(names as Permission[])] };
}

/** Does `key` match `pattern`, where `*` stands for any run of characters? Everything else is literal. */
export function globMatches(pattern: string, key: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === key;
  if (!key.startsWith(parts[0]!) || !key.endsWith(parts[parts.length - 1]!)) return false;
  let at = parts[0]!.length;
  const end = key.length - parts[parts.length - 1]!.length;
  for (const middle of parts.slice(1, -1)) {
    const found = key.indexOf(middle, at);
    if (found < 0 || found + middle.length > end) return false;
    at = found + middle.length;
  }
  return at <= end;
}

/**
 * May a principal with `grants` do `permission` on `key`? `admin` implies every permission. A null key is
 * a server-wide operation (tokens, tables): it needs a grant whose glob is `*`.
 */
export function isAllowed(grants: readonly Grant[], permission: Permission, key: string | null): boolean {
  return grants.some(
    (g) => (g.permissions.includes(permission) || g.permissions.includes('admin')) && (key === null ? g.pattern === '*' : globMatches(g.pattern, key)),
  );
}

/**
 * Does one grant allow `permission` on every key that starts with `prefix` — a glob `<p>*` (no other `*`) whose `<p>`
 * begins `prefix`? (Then a count of those keys reveals nothing the principal may not see.) Pure.
 */
export function coversPrefix(grants: readonly Grant[], permission: Permission, prefix: string): boolean {
  return grants.some((g) => {
    if (!(g.permissions.includes(permission) || g.permissions.includes('admin')) || !g.pattern.endsWith('*')) return false;
    const head = g.pattern.slice(0, -1);
    return !head.includes('*') && prefix.startsWith(head);
  });
}

/** The grants written back as `glob:perm,perm` texts (for listings). */
export function formatGrant(g: Grant): string {
  return `${g.pattern}:${g.permissions.join(',')}`;
}
