/**
 * Grant matching in the browser, the same rules as the server's src/auth/permissions.ts: a grant is
 * `<key glob>:<permission,…>` (the last `:` splits, so globs may hold `:`), `*` matches any run of
 * characters including `/`, and `admin` implies every permission. The page only uses this to hide
 * buttons; the API refuses what a grant does not allow anyway.
 */

export type Permission = 'read' | 'write' | 'lock' | 'force-unlock' | 'delete' | 'restore' | 'admin';

export interface Grant {
  pattern: string;
  permissions: string[];
}

/** The grant a text names, or null when it is not `<glob>:<perm,…>`. */
export function parseGrant(text: string): Grant | null {
  const at = text.lastIndexOf(':');
  if (at <= 0) return null;
  const permissions = text
    .slice(at + 1)
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  return permissions.length ? { pattern: text.slice(0, at), permissions } : null;
}

/** Does `key` match `pattern`, where `*` stands for any run of characters? Everything else is literal. */
export function globMatches(pattern: string, key: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === key;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!key.startsWith(first) || !key.endsWith(last)) return false;
  let at = first.length;
  const end = key.length - last.length;
  if (at > end) return false;
  for (const middle of parts.slice(1, -1)) {
    const found = key.indexOf(middle, at);
    if (found < 0 || found + middle.length > end) return false;
    at = found + middle.length;
  }
  return true;
}

/** May grants (as texts) do `permission` on `key`? A null key is server-wide: it needs a grant on `*`. */
export function isAllowed(grants: readonly string[], permission: Permission, key: string | null): boolean {
  return grants.some((text) => {
    const g = parseGrant(text);
    if (!g) return false;
    if (!g.permissions.includes(permission) && !g.permissions.includes('admin')) return false;
    return key === null ? g.pattern === '*' : globMatches(g.pattern, key);
  });
}
