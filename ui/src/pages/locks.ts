/**
 * `#/locks`: every held lock (GET /api/v1/locks?limit=1000, following `next` for a few pages), sortable by
 * age, oldest first by default. Dead and stale locks are highlighted by colour and by a word.
 */
import { request } from '../api.js';
import type { Lock, Page } from '../api-types.js';
import { badge, verdictBadge } from '../components/badges.js';
import { infoText } from '../components/lock-facts.js';
import { cell, h, replaceChildren, routeLink, scrollingTable } from '../dom.js';
import { formatAge, formatTime } from '../format.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';

const PAGE_LIMIT = 1000;
const MAX_PAGES = 5;

function lockRow(l: Lock): HTMLTableRowElement {
  const classes = [l.verdict === 'dead' ? 'dead' : '', l.stale ? 'stale' : ''].filter(Boolean).join(' ');
  return h(
    'tr',
    { testid: 'lock-row', className: classes, data: { key: l.key, verdict: l.verdict, stale: l.stale ? 'true' : 'false' } },
    cell('Key', routeLink(hashes.state(l.key), l.key, { className: 'key' })),
    cell('Lock ID', h('code', { className: 'lock-id' }, String(l.info.ID ?? ''))),
    cell('Operation', infoText(l, 'Operation')),
    cell('Who', infoText(l, 'Who')),
    h('td', { testid: 'lock-row-age', className: 'nowrap', data: { label: 'Age', seconds: l.ageSeconds }, attrs: { title: `acquired ${formatTime(l.acquiredAt)}` } }, formatAge(l.ageSeconds)),
    cell('Idle', h('span', { className: 'nowrap' }, formatAge(l.idleSeconds))),
    cell(
      'Verdict',
      h('span', { className: 'verdict-line' }, verdictBadge(l.verdict), l.stale ? badge('stale', 'stale', { attrs: { title: 'not known to be alive, and idle for 15 minutes or more' } }) : null),
      typeof l.evidence.reason === 'string' ? h('span', { className: 'reason small' }, l.evidence.reason) : null,
    ),
    cell('Held through', l.holds.join(', ')),
  );
}

export async function renderLocks(ctx: PageContext): Promise<void> {
  const locks: Lock[] = [];
  let after: string | null = null;
  let truncated = false;
  for (let i = 0; i < MAX_PAGES; i++) {
    const page: Page<Lock> = await request<Page<Lock>>('/api/v1/locks', { query: { limit: PAGE_LIMIT, after }, signal: ctx.signal });
    locks.push(...page.items);
    after = typeof page.next === 'string' && page.next ? page.next : null;
    if (!after) break;
    if (i === MAX_PAGES - 1) truncated = true;
  }

  let oldestFirst = true;
  const sortButton = h('button', { testid: 'locks-sort-age', className: 'sort', attrs: { type: 'button' } });
  const ageHeader = h('th', { attrs: { scope: 'col' } }, sortButton);
  const tbody = h('tbody');
  const th = (text: string) => h('th', { attrs: { scope: 'col' } }, text);
  const table = h('table', { className: 'data locks' }, h('thead', null, h('tr', null, th('Key'), th('Lock ID'), th('Operation'), th('Who'), ageHeader, th('Idle'), th('Verdict'), th('Held through'))), tbody);

  function render(): void {
    const sorted = [...locks].sort((a, b) => (oldestFirst ? b.ageSeconds - a.ageSeconds : a.ageSeconds - b.ageSeconds) || (a.key < b.key ? -1 : 1));
    sortButton.textContent = `Age ${oldestFirst ? '▼' : '▲'}`;
    sortButton.setAttribute('aria-label', `Age, sorted ${oldestFirst ? 'oldest first' : 'newest first'}; click to reverse`);
    ageHeader.setAttribute('aria-sort', oldestFirst ? 'descending' : 'ascending');
    sortButton.dataset.order = oldestFirst ? 'oldest-first' : 'newest-first';
    replaceChildren(tbody, ...(sorted.length ? sorted.map(lockRow) : [h('tr', { className: 'empty' }, h('td', { attrs: { colspan: 8 } }, 'No locks are held.'))]));
  }
  sortButton.addEventListener('click', () => {
    oldestFirst = !oldestFirst;
    render();
  });
  render();

  const dead = locks.filter((l) => l.verdict === 'dead').length;
  const stale = locks.filter((l) => l.stale).length;
  ctx.main.append(
    h('h1', null, 'Locks'),
    h('p', { className: 'summary' }, h('span', { testid: 'locks-count' }, String(locks.length)), ` held`, dead ? `, ${dead} dead` : '', stale ? `, ${stale} stale` : '', truncated ? ` (showing the first ${locks.length})` : '', '.'),
    h('p', { className: 'hint' }, 'Dead: the holder’s session ended or its lease expired with nothing using the lock since. Stale: not known to be alive and idle for 15 minutes or more. Open a key to recover its lock.'),
    scrollingTable(table),
  );
  ctx.ready();
}
