/**
 * The dashboard's entry module: asks who is signed in (GET /ui/auth/whoami), builds the frame, and renders
 * the page the hash names. Every navigation aborts the previous page's requests and clears
 * `document.body.dataset.ready` until the new page has its data.
 */
import { isAbort, request, whenUnauthenticated } from './api.js';
import type { WhoAmI } from './api-types.js';
import { h } from './dom.js';
import { buildLayout } from './layout.js';
import { clearNotice, showError, showNotice } from './notice.js';
import type { PageContext, PageRenderer } from './page-context.js';
import { renderAudit } from './pages/audit.js';
import { renderLocks } from './pages/locks.js';
import { renderNotFound } from './pages/not-found.js';
import { renderOverview } from './pages/overview.js';
import { renderSignIn } from './pages/signin.js';
import { renderStateDetail } from './pages/state-detail.js';
import { renderStates } from './pages/states.js';
import { markBusy, markReady } from './ready.js';
import { hashes, parseHash, type RouteName } from './router.js';
import { needsSignIn, session, signedOut, updateSession } from './session.js';

const root = document.getElementById('app') ?? document.body.appendChild(h('div', { attrs: { id: 'app' } }));
let generation = 0;
let controller: AbortController | null = null;
/** Where to go after signing in: the page that sent the user to the form. */
let afterSignIn = hashes.overview();
/** Set when a request answered 401: the sign-in page says why it is shown. */
let sessionEnded = false;

const renderers: Record<RouteName, PageRenderer> = {
  overview: renderOverview,
  states: renderStates,
  state: renderStateDetail,
  locks: renderLocks,
  audit: renderAudit,
  signin: (ctx) => renderSignIn(ctx, () => go(afterSignIn === hashes.signin() ? hashes.overview() : afterSignIn)),
  'not-found': renderNotFound,
};

const layout = buildLayout(root, () => void signOut());

// A click on a route link starts a navigation before the hashchange event arrives: clear `ready` at once,
// so nobody waiting for the next page reads the one being left (same-route links included).
document.addEventListener(
  'click',
  (ev) => {
    const link = ev.target instanceof Element ? ev.target.closest('a[href^="#/"]') : null;
    if (link && link.getAttribute('href') !== location.hash && !(ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0)) markBusy();
  },
  true,
);

/** Navigates to `hash`, or renders again when the address already names it. */
function go(hash: string): void {
  markBusy();
  if (location.hash === hash || (location.hash === '' && hash === hashes.overview())) void navigate();
  else location.hash = hash;
}

function sendToSignIn(): void {
  const here = location.hash || hashes.overview();
  if (parseHash(here).name !== 'signin') afterSignIn = here;
  go(hashes.signin());
}

whenUnauthenticated(() => {
  generation++; // the page that got the 401 is no longer current: its failure is not shown
  signedOut();
  updateSession({ authRequired: true }); // a 401 means the server wants a token now (one may have been created since load)
  sessionEnded = true;
  sendToSignIn();
});

async function signOut(): Promise<void> {
  try {
    await request('/ui/auth/logout', { method: 'POST', signInOn401: false });
  } catch (err) {
    showError(err);
    return;
  }
  signedOut();
  afterSignIn = hashes.overview();
  go(hashes.signin());
}

async function navigate(opts: { keepNotice?: boolean } = {}): Promise<void> {
  const mine = ++generation;
  controller?.abort();
  const ctrl = new AbortController();
  controller = ctrl;
  markBusy();
  if (!opts.keepNotice) clearNotice();

  const route = parseHash(location.hash);
  if (route.name !== 'signin' && needsSignIn()) {
    sendToSignIn();
    return;
  }
  if (route.name === 'signin' && session().authRequired && session().signedIn) {
    go(hashes.overview());
    return;
  }
  if (route.name === 'signin' && sessionEnded) {
    sessionEnded = false;
    showNotice('error', 'Your session has ended (it expired, or its token was revoked): sign in again.');
  }
  layout.setActive(route.name);
  document.title = `${TITLES[route.name]}${route.key ? `: ${route.key}` : ''} · statelock`;

  const loading = h('p', { className: 'loading', attrs: { role: 'status' } }, 'Loading…');
  const pageArea = h('div', { className: `page page-${route.name}` });
  layout.main.replaceChildren(loading, pageArea);
  const isCurrent = () => mine === generation;
  const ctx: PageContext = {
    route,
    main: pageArea,
    signal: ctrl.signal,
    isCurrent,
    ready: () => {
      if (!isCurrent()) return;
      loading.remove();
      markReady(route.name);
    },
    busy: () => {
      if (isCurrent()) markBusy();
    },
    reload: () => navigate({ keepNotice: true }),
  };
  try {
    await renderers[route.name](ctx);
  } catch (err) {
    if (isAbort(err) || !isCurrent()) return;
    showError(err);
    ctx.ready();
  }
}

const TITLES: Record<RouteName, string> = { overview: 'Overview', states: 'States', state: 'State', locks: 'Locks', audit: 'Audit', signin: 'Sign in', 'not-found': 'Not found' };

async function boot(): Promise<void> {
  let who: WhoAmI;
  try {
    who = await request<WhoAmI>('/ui/auth/whoami', { signInOn401: false });
  } catch (err) {
    showError(err);
    layout.main.replaceChildren(h('p', { className: 'panel panel-warning' }, 'The dashboard could not ask the server who you are. Reload the page to try again.'));
    return;
  }
  updateSession({ authRequired: who.authRequired, signedIn: who.signedIn, name: who.name, grants: who.grants ?? [], csrf: who.csrf });
  window.addEventListener('hashchange', () => void navigate());
  await navigate();
}

void boot();
