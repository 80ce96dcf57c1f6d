/** `#/`: counts of states and locks, locks by verdict, and the last 24 hours' trouble (GET /api/v1/overview). */
import { ApiError, request } from '../api.js';
import type { Overview } from '../api-types.js';
import { h, routeLink } from '../dom.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';

function card(label: string, value: number, testid: string, opts: { href?: string; tone?: string; hint?: string } = {}): HTMLElement {
  const number = h('span', { className: 'card-value', testid }, String(value));
  const body = [h('span', { className: 'card-label' }, label), number, opts.hint ? h('span', { className: 'card-hint' }, opts.hint) : null];
  const tone = opts.tone && value > 0 ? ` tone-${opts.tone}` : '';
  if (opts.href) return h('li', { className: `card${tone}` }, h('a', { className: 'card-link', attrs: { href: opts.href } }, ...body));
  return h('li', { className: `card${tone}` }, ...body);
}

export async function renderOverview(ctx: PageContext): Promise<void> {
  let o: Overview;
  try {
    o = await request<Overview>('/api/v1/overview', { signal: ctx.signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      ctx.main.append(
        h('h1', null, 'Overview'),
        h(
          'div',
          { className: 'panel panel-warning', testid: 'overview-error' },
          h('p', null, 'The overview counts every state and lock on the server, so it needs the read permission on every key (a grant on "*"). Your token does not have it.'),
          h('p', null, 'Server message: ', err.message),
          h('p', null, 'You can still browse the states you may read: ', routeLink(hashes.states(), 'go to States'), '.'),
        ),
      );
      ctx.ready();
      return;
    }
    throw err;
  }
  const locks = o.locks;
  ctx.main.append(
    h('h1', null, 'Overview'),
    h('h2', null, 'States and locks'),
    h(
      'ul',
      { className: 'cards' },
      card('States', o.states, 'overview-states', { href: hashes.states() }),
      card('Locks held', locks.held, 'overview-locks-held', { href: hashes.locks() }),
      card('Alive', locks.alive, 'overview-alive', { tone: 'ok', hint: 'heartbeat current' }),
      card('Dead', locks.dead, 'overview-dead', { tone: 'bad', hint: 'holder gone: safe to recover', href: hashes.locks() }),
      card('Unknown', locks.unknown, 'overview-unknown', { tone: 'warn', hint: 'no heartbeat evidence' }),
      card('Stale', locks.stale, 'overview-stale', { tone: 'warn', hint: 'not alive, idle ≥ 15 min', href: hashes.locks() }),
    ),
    h('h2', null, 'Last 24 hours'),
    h(
      'ul',
      { className: 'cards' },
      card('Conflicts', o.last24h.conflicts, 'overview-conflicts', { tone: 'warn', hint: 'refused writes and LOCKs', href: hashes.audit({ action: 'lock.conflict' }) }),
      card('Forced unlocks', o.last24h.forcedUnlocks, 'overview-forced', { tone: 'warn', href: hashes.audit({ action: 'lock.force-unlock' }) }),
      card('Writes', o.last24h.writes, 'overview-writes', { href: hashes.audit({ action: 'state.write' }) }),
      card('Restores', o.last24h.restores, 'overview-restores', { href: hashes.audit({ action: 'state.restore' }) }),
    ),
  );
  ctx.ready();
}
