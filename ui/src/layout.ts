/** The page frame: header with navigation and the principal, the notice area, and the page's own area. */
import { h } from './dom.js';
import { noticeArea } from './notice.js';
import type { RouteName } from './router.js';
import { hashes } from './router.js';
import { onSessionChange, session, type Session } from './session.js';

export interface Layout {
  main: HTMLElement;
  setActive(route: RouteName): void;
}

const NAV: Array<{ route: RouteName; label: string; href: string; testid: string }> = [
  { route: 'overview', label: 'Overview', href: hashes.overview(), testid: 'nav-overview' },
  { route: 'states', label: 'States', href: hashes.states(), testid: 'nav-states' },
  { route: 'locks', label: 'Locks', href: hashes.locks(), testid: 'nav-locks' },
  { route: 'audit', label: 'Audit', href: hashes.audit(), testid: 'nav-audit' },
];

export function buildLayout(root: HTMLElement, onSignOut: () => void): Layout {
  const links = NAV.map((n) => ({ ...n, node: h('a', { testid: n.testid, attrs: { href: n.href } }, n.label) }));
  const nav = h('nav', { className: 'nav', attrs: { 'aria-label': 'Main' } }, h('ul', null, ...links.map((l) => h('li', null, l.node))));
  const whoami = h('span', { testid: 'whoami', className: 'whoami' });
  const signout = h('button', { testid: 'signout', className: 'link-button', attrs: { type: 'button' }, on: { click: onSignOut } }, 'Sign out');
  const who = h('div', { className: 'who' }, h('span', { className: 'who-label' }, 'Signed in as '), whoami, signout);
  const header = h('header', { className: 'top' }, h('a', { className: 'brand', attrs: { href: hashes.overview() } }, 'statelock'), nav, who);
  const main = h('main', { attrs: { id: 'main', tabindex: '-1' } });
  root.replaceChildren(h('a', { className: 'skip', attrs: { href: '#main' } }, 'Skip to content'), header, noticeArea(), main);

  // The skip link must not change the hash route.
  root.querySelector('.skip')!.addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });

  const show = (s: Session) => {
    const signed = s.signedIn;
    nav.hidden = !signed;
    who.hidden = !signed;
    whoami.textContent = s.name ?? '';
    signout.hidden = !s.authRequired;
  };
  onSessionChange(show);
  show(session());

  return {
    main,
    setActive(route: RouteName) {
      for (const l of links) {
        if (l.route === route) l.node.setAttribute('aria-current', 'page');
        else l.node.removeAttribute('aria-current');
      }
    },
  };
}
