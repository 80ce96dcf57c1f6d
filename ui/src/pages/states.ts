/**
 * `#/states?prefix=P&after=C`: one page of 50 states at a time (GET /api/v1/states?prefix=&after=&limit=50&count=true),
 * searched by key prefix and paged with the `next` cursor. Never lists everything: a server may hold 100,000 keys.
 */
import { isAbort, request } from '../api.js';
import type { StatePage, StateSummary } from '../api-types.js';
import { badge } from '../components/badges.js';
import { cell, h, headerRow, replaceChildren, routeLink, scrollingTable } from '../dom.js';
import { formatBytes, formatRelative, formatTime } from '../format.js';
import { showError } from '../notice.js';
import type { PageContext } from '../page-context.js';
import { hashes, replaceHash } from '../router.js';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 300;

function stateRow(s: StateSummary): HTMLTableRowElement {
  return h(
    'tr',
    { testid: 'state-row', data: { key: s.key }, className: s.locked ? 'locked' : '' },
    cell('Key', routeLink(hashes.state(s.key), s.key, { className: 'key' })),
    cell('Lock', s.locked ? badge('locked', 'locked', { testid: 'state-lock-badge', attrs: { title: 'A lock is held on this state' } }) : h('span', { className: 'muted' }, 'free')),
    cell('Serial', String(s.serial)),
    cell('Size', formatBytes(s.size)),
    cell('Last write', h('time', { attrs: { datetime: s.updatedAt, title: formatTime(s.updatedAt) } }, formatRelative(s.updatedAt))),
    cell('Writer', s.writer),
  );
}

export async function renderStates(ctx: PageContext): Promise<void> {
  let prefix = ctx.route.params.get('prefix') ?? '';
  let after = ctx.route.params.get('after') ?? '';
  let next: string | null = null;
  let loadCount = 0;
  let inFlight: AbortController | null = null;

  const search = h('input', {
    testid: 'states-search',
    attrs: { id: 'states-search', type: 'search', value: prefix, placeholder: 'e.g. lesson-17/', autocomplete: 'off', spellcheck: 'false' },
  });
  const total = h('span', { testid: 'states-total' }, '…');
  const totalLine = h('p', { className: 'summary' }, total, ' states', h('span', { className: 'summary-prefix' }));
  const tbody = h('tbody');
  const table = h('table', { className: 'data states' }, headerRow('Key', 'Lock', 'Serial', 'Size', 'Last write', 'Writer'), tbody);
  const first = h('button', { testid: 'states-first', attrs: { type: 'button' }, on: { click: () => void go('') } }, 'First page');
  const nextButton = h('button', { testid: 'states-next', attrs: { type: 'button' }, on: { click: () => next && void go(next) } }, 'Next page');
  const pager = h('div', { className: 'pager' }, first, nextButton);

  let timer: number | undefined;
  search.addEventListener('input', () => {
    window.clearTimeout(timer);
    ctx.busy(); // a new search is coming: tests must not read the old rows as its answer
    timer = window.setTimeout(() => void setPrefix(search.value), SEARCH_DELAY_MS);
  });
  const form = h(
    'form',
    {
      className: 'toolbar',
      attrs: { role: 'search' },
      on: {
        submit: (ev) => {
          ev.preventDefault();
          window.clearTimeout(timer);
          void setPrefix(search.value);
        },
      },
    },
    h('label', { attrs: { for: 'states-search' } }, 'Key prefix'),
    search,
  );
  ctx.signal.addEventListener('abort', () => window.clearTimeout(timer));

  ctx.main.append(h('h1', null, 'States'), form, totalLine, scrollingTable(table), pager);

  async function setPrefix(value: string): Promise<void> {
    if (value === prefix && after === '' && loadCount > 0) {
      ctx.ready();
      return;
    }
    prefix = value;
    await go('');
  }

  async function go(cursor: string): Promise<void> {
    after = cursor;
    replaceHash(hashes.states(prefix, after));
    await load();
  }

  async function load(): Promise<void> {
    const mine = ++loadCount;
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    const abortWithPage = () => controller.abort();
    ctx.signal.addEventListener('abort', abortWithPage);
    ctx.busy();
    first.disabled = true;
    nextButton.disabled = true;
    try {
      const page = await request<StatePage>('/api/v1/states', { query: { prefix, after, limit: PAGE_SIZE, count: true }, signal: controller.signal });
      if (mine !== loadCount || !ctx.isCurrent()) return;
      next = typeof page.next === 'string' && page.next ? page.next : null;
      total.textContent = page.total === undefined || page.total === null ? '?' : String(page.total);
      replaceChildren(totalLine.querySelector('.summary-prefix')!, prefix ? ` under the prefix “${prefix}”` : '', after ? ' (a later page)' : '');
      replaceChildren(tbody, ...(page.items.length ? page.items.map(stateRow) : [h('tr', { className: 'empty' }, h('td', { attrs: { colspan: 6 } }, next ? 'None of the states on this page are readable with your grants; try the next page.' : prefix ? 'No states under this prefix.' : 'No states yet.'))]));
      first.disabled = after === '';
      nextButton.disabled = next === null;
      ctx.ready();
    } catch (err) {
      if (isAbort(err) || mine !== loadCount || !ctx.isCurrent()) return;
      showError(err);
      first.disabled = after === '';
      ctx.ready();
    } finally {
      ctx.signal.removeEventListener('abort', abortWithPage);
    }
  }

  await load();
}
