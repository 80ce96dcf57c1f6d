/** Who is signed in, as whoami or login said. The page keeps no token: the cookie is HttpOnly. */
import { setCsrf } from './api.js';
import { isAllowed, type Permission } from './permissions.js';

export interface Session {
  authRequired: boolean;
  signedIn: boolean;
  name: string | null;
  grants: string[];
}

const current: Session = { authRequired: false, signedIn: false, name: null, grants: [] };
const listeners: Array<(s: Session) => void> = [];

export function session(): Readonly<Session> {
  return current;
}

export function updateSession(next: Partial<Session> & { csrf?: string | null }): void {
  const { csrf, ...rest } = next;
  Object.assign(current, rest);
  if (csrf !== undefined) setCsrf(csrf);
  for (const l of listeners) l(current);
}

export function signedOut(): void {
  updateSession({ signedIn: false, name: null, grants: [], csrf: null });
}

export function onSessionChange(listener: (s: Session) => void): void {
  listeners.push(listener);
}

/** May the signed-in principal do `permission` on `key` (null: server-wide)? Hides buttons only. */
export function can(permission: Permission, key: string | null): boolean {
  return isAllowed(current.grants, permission, key);
}

/** Must the page show the sign-in form before anything else? */
export function needsSignIn(): boolean {
  return current.authRequired && !current.signedIn;
}
