/**
 * `#/audit?key=&action=&since=`: the audit trail newest first (GET /api/v1/audit?order=desc&limit=100 with
 * key/action/since), older entries through the `before=` cursor.
 */
import { ApiError, isAbort, request } from '../api.js';
import { AUDIT_ACTIONS, type AuditEntry, type Page } from '../api-types.js';
import { cell, h, headerRow, routeLink, scrollingTable } from '../dom.js';
import { compactValue, formatRelative, formatTime, fromLocalInput, toLocalInput } from '../format.js';
import { showError } from '../notice.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';

const PAGE_SIZE = 100;

function auditRow(e: AuditEntry): HTMLTableRowElement {
  const detail = Object.keys(e.detail ?? {}).length ? compactValue(e.detail, 240) : '';
  return h(
    'tr',
    { testid: 'audit-row', className: `outcome-${e.outcome}`, data: { action: e.action, id: e.id } },
    cell('Time', h('time', { className: 'nowrap', attrs: { datetime: e.at, title: formatRelative(e.at) } }, formatTime(e.at))),
    cell('Action', h('span', { className: `nowrap action action-${e.action.replace(/\./g, '-')}` }, e.action)),
    cell('Key', e.key && !e.action.startsWith('token.') ? routeLink(hashes.state(e.key), e.key, { className: 'key' }) : e.key),
    cell('Lock ID', e.lockId ? h('code', { className: 'lock-id' }, e.lockId) : ''),
    cell('Outcome', h('span', { className: `badge outcome outcome-${e.outcome}` }, e.outcome)),
    cell('Principal', e.principal ?? ''),
    cell('Client', h('span', { attrs: { title: e.userAgent } }, e.clientAddr)),
    cell('Detail', detail ? h('code', { className: 'detail', attrs: { title: compactValue(e.detail, 4000) } }, detail) : ''),
  );
}

export async function renderAudit(ctx: PageContext): Promise<void> {
  const params = ctx.route.params;
  const key = params.get('key') ?? '';
  const action = params.get('action') ?? '';
  const since = params.get('since') ?? '';

  const keyInput = h('input', { testid: 'audit-filter-key', attrs: { id: 'audit-key', type: 'text', value: key, placeholder: 'exact state key', autocomplete: 'off', spellcheck: 'false' } });
  const actionSelect = h(
    'select',
    { testid: 'audit-filter-action', attrs: { id: 'audit-action' } },
    h('option', { attrs: { value: '' } }, 'any action'),
    ...AUDIT_ACTIONS.map((a) => h('option', { attrs: { value: a, selected: a === action } }, a)),
  );
  const sinceInput = h('input', { testid: 'audit-filter-since', attrs: { id: 'audit-since', type: 'datetime-local', value: toLocalInput(since || null), step: 60 } });
  const apply = h('button', { testid: 'audit-apply', attrs: { type: 'submit' } }, 'Apply');
  const form = h(
    'form',
    { className: 'toolbar filters' },
    h('span', { className: 'field' }, h('label', { attrs: { for: 'audit-key' } }, 'Key'), keyInput),
    h('span', { className: 'field' }, h('label', { attrs: { for: 'audit-action' } }, 'Action'), actionSelect),
    h('span', { className: 'field' }, h('label', { attrs: { for: 'audit-since' } }, 'Since'), sinceInput),
    apply,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = hashes.audit({ key: keyInput.value.trim(), action: actionSelect.value, since: fromLocalInput(sinceInput.value) });
    ctx.busy(); // the new trail is coming: clear `ready` before the hashchange arrives
    if (location.hash === next) void ctx.reload();
    else location.hash = next;
  });

  const tbody = h('tbody');
  const older = h('button', { testid: 'audit-older', attrs: { type: 'button', hidden: true } }, 'Older');
  const count = h('span', { testid: 'audit-count' }, '0');
  ctx.main.append(
    h('h1', null, 'Audit trail'),
    form,
    h('p', { className: 'summary' }, count, ' entries shown, newest first', key ? ` for ${key}` : '', '.'),
    scrollingTable(h('table', { className: 'data audit' }, headerRow('Time', 'Action', 'Key', 'Lock ID', 'Outcome', 'Principal', 'Client', 'Detail'), tbody)),
    h('div', { className: 'pager' }, older),
  );

  let before: number | null = null;
  let shown = 0;
  async function load(): Promise<void> {
    const page = await request<Page<AuditEntry>>('/api/v1/audit', {
      query: { order: 'desc', limit: PAGE_SIZE, key: key || undefined, action: action || undefined, since: since || undefined, before: before ?? undefined },
      signal: ctx.signal,
    });
    if (!ctx.isCurrent()) return;
    tbody.append(...page.items.map(auditRow));
    shown += page.items.length;
    count.textContent = String(shown);
    if (shown === 0 && !tbody.firstChild) tbody.append(h('tr', { className: 'empty' }, h('td', { attrs: { colspan: 8 } }, 'No audit entries match.')));
    before = page.next === null || page.next === undefined || page.next === '' ? null : Number(page.next);
    older.hidden = before === null || Number.isNaN(before);
  }
  older.addEventListener('click', () => {
    void (async () => {
      ctx.busy();
      older.disabled = true;
      try {
        await load();
      } catch (err) {
        if (!isAbort(err) && ctx.isCurrent()) showError(err);
      } finally {
        older.disabled = false;
        if (ctx.isCurrent()) ctx.ready();
      }
    })();
  });

  try {
    await load();
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      showError(err);
      tbody.append(
        h(
          'tr',
          { className: 'empty' },
          h('td', { attrs: { colspan: 8 } }, 'The whole trail needs the admin permission on "*". Filter by a key you may read to see its trail.'),
        ),
      );
      ctx.ready();
      return;
    }
    throw err;
  }
  ctx.ready();
}
