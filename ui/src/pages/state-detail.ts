/**
 * `#/state/<key>`: the current version and lock (GET /api/v1/states/<key>), the last 100 versions with their
 * resource counts (GET /api/v1/versions/<key>?after=N-100&limit=100&resources=true), a size/resource chart,
 * a diff between any two of them (GET /api/v1/diff/<key>?from=&to=&values=true), downloads, restore and force-unlock.
 */
import { ApiError, isAbort, keyPath, request, withQuery } from '../api.js';
import type { Diff, Lock, Page, StateDetail, Version } from '../api-types.js';
import { badge } from '../components/badges.js';
import { diffView } from '../components/diff-view.js';
import { openForceUnlockDialog } from '../components/force-unlock-dialog.js';
import { historyChart } from '../components/history-chart.js';
import { lockFacts } from '../components/lock-facts.js';
import { openRestoreDialog } from '../components/restore-dialog.js';
import { cell, facts, h, headerRow, replaceChildren, routeLink, scrollingTable } from '../dom.js';
import { formatBytes, formatRelative, formatTime } from '../format.js';
import { showError, showNotice } from '../notice.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';
import { can } from '../session.js';

const TIMELINE = 100;

export async function renderStateDetail(ctx: PageContext): Promise<void> {
  const key = ctx.route.key!;
  let detail: StateDetail;
  try {
    detail = await request<StateDetail>(keyPath('states', key), { signal: ctx.signal });
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 403 || err.status === 400)) {
      ctx.main.append(h('h1', { testid: 'state-title', className: 'key-title' }, key), h('p', { className: 'panel panel-warning' }, err.message), h('p', null, routeLink(hashes.states(), 'Back to States')));
      showError(err);
      ctx.ready();
      return;
    }
    throw err;
  }
  const n = detail.versions;
  const page = await request<Page<Version>>(keyPath('versions', key), { query: { after: Math.max(0, n - TIMELINE), limit: TIMELINE, resources: true }, signal: ctx.signal });
  const versions = [...page.items].sort((a, b) => b.seq - a.seq); // newest first
  const current = detail.current;

  ctx.main.append(
    h('p', { className: 'breadcrumb' }, routeLink(hashes.states(), 'States'), ' / '),
    h('h1', { testid: 'state-title', className: 'key-title' }, key),
    facts(
      [
        ['Current', `seq ${current.seq}, serial ${current.serial}`],
        ['Lineage', h('code', null, current.lineage)],
        ['Size', formatBytes(current.size)],
        ['Last write', h('span', null, h('time', { attrs: { datetime: current.createdAt, title: formatTime(current.createdAt) } }, formatRelative(current.createdAt)), ` by ${current.clientAddr}`)],
        ['Versions', String(n)],
        ['Audit', routeLink(hashes.audit({ key }), 'this key’s audit trail')],
      ],
      { className: 'facts summary-facts' },
    ),
    lockPanel(ctx, key, detail.lock, current),
    historySection(versions, n),
    diffSection(ctx, key, versions),
    versionsSection(ctx, key, versions, current, detail.lock !== null, n),
  );
  ctx.ready();
}

function lockPanel(ctx: PageContext, key: string, lock: Lock | null, current: Version): HTMLElement {
  if (!lock) {
    return h('section', { testid: 'lock-panel', className: 'panel lock-panel free', attrs: { 'aria-labelledby': 'lock-h' } }, h('h2', { attrs: { id: 'lock-h' } }, 'Lock'), h('p', { testid: 'no-lock' }, 'Not locked: nobody holds this state.'));
  }
  const actions = h('div', { className: 'actions' });
  if (can('force-unlock', key)) {
    actions.append(
      h(
        'button',
        {
          testid: 'force-unlock-open',
          className: 'danger',
          attrs: { type: 'button' },
          on: {
            click: () =>
              openForceUnlockDialog(key, lock, current, ctx, () => {
                showNotice('ok', `Force-unlocked ${key} (lock ID ${String(lock.info.ID ?? '')}). Next: run terraform apply -refresh-only, then terraform plan, then apply the remaining changes.`);
                void ctx.reload();
              }),
          },
        },
        'Force-unlock…',
      ),
    );
  } else {
    actions.append(h('p', { className: 'muted' }, 'Your grants do not include force-unlock on this key.'));
  }
  const tone = lock.verdict === 'dead' ? ' dead' : lock.stale ? ' stale' : lock.verdict === 'alive' ? ' alive' : '';
  return h('section', { testid: 'lock-panel', className: `panel lock-panel${tone}`, attrs: { 'aria-labelledby': 'lock-h' } }, h('h2', { attrs: { id: 'lock-h' } }, 'Locked'), lockFacts(lock), actions);
}

function historySection(versions: Version[], n: number): HTMLElement {
  const shown = versions.length < n ? ` (the last ${versions.length} of ${n} versions)` : '';
  return h('section', { className: 'history', attrs: { 'aria-labelledby': 'history-h' } }, h('h2', { attrs: { id: 'history-h' } }, `Size and resources${shown}`), historyChart(versions));
}

function versionLabel(v: Version): string {
  return `seq ${v.seq} · serial ${v.serial} · ${formatTime(v.createdAt)}`;
}

function diffSection(ctx: PageContext, key: string, versions: Version[]): HTMLElement {
  const select = (id: string, testid: string, selected: number | undefined) =>
    h('select', { testid, attrs: { id } }, ...versions.map((v) => h('option', { attrs: { value: String(v.seq), selected: v.seq === selected } }, versionLabel(v))));
  const from = select('diff-from', 'diff-from', (versions[1] ?? versions[0])?.seq);
  const to = select('diff-to', 'diff-to', versions[0]?.seq);
  const output = h('div', { className: 'diff-output', attrs: { 'aria-live': 'polite' } });
  const show = h('button', { testid: 'diff-show', attrs: { type: 'submit' } }, 'Show diff');
  const form = h(
    'form',
    { className: 'toolbar diff-form' },
    h('span', { className: 'field' }, h('label', { attrs: { for: 'diff-from' } }, 'From'), from),
    h('span', { className: 'field' }, h('label', { attrs: { for: 'diff-to' } }, 'To'), to),
    show,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      ctx.busy();
      show.disabled = true;
      replaceChildren(output, h('p', { className: 'muted' }, 'Comparing…'));
      try {
        const d = await request<Diff>(keyPath('diff', key), { query: { from: from.value, to: to.value, values: true }, signal: ctx.signal });
        if (!ctx.isCurrent()) return;
        replaceChildren(output, diffView(d));
      } catch (err) {
        if (isAbort(err) || !ctx.isCurrent()) return;
        replaceChildren(output);
        showError(err);
      } finally {
        show.disabled = false;
        if (ctx.isCurrent()) ctx.ready();
      }
    })();
  });
  return h('section', { className: 'diff-section', attrs: { 'aria-labelledby': 'diff-h' } }, h('h2', { attrs: { id: 'diff-h' } }, 'Compare versions'), versions.length ? form : h('p', { className: 'muted' }, 'No versions to compare.'), output);
}

function versionsSection(ctx: PageContext, key: string, versions: Version[], current: Version, locked: boolean, n: number): HTMLElement {
  const mayRestore = can('restore', key);
  const rows = versions.map((v) => {
    const flags = [
      v.seq === current.seq ? badge('current', 'current') : null,
      v.forced ? badge(`forced: ${v.forced}`, 'forced', { attrs: { title: 'This write overwrote a version the consistency rules would have protected' } }) : null,
      v.encrypted ? badge('encrypted', 'encrypted') : null,
    ];
    const download = h('a', { testid: 'download-version', attrs: { href: withQuery(keyPath('content', key), { seq: v.seq, download: true }), download: '', 'aria-label': `Download version ${v.seq}` } }, 'Download');
    const restore = mayRestore
      ? h(
          'button',
          {
            testid: 'restore-open',
            data: { seq: v.seq },
            attrs: { type: 'button', 'aria-label': `Restore version ${v.seq}` },
            on: {
              click: () =>
                openRestoreDialog(key, v, current, locked, ctx, (answer) => {
                  showNotice('ok', `Restored version seq ${v.seq} of ${key}: written as the new version seq ${answer.restored.seq} with serial ${answer.restored.serial}.`);
                  void ctx.reload();
                }),
            },
          },
          'Restore…',
        )
      : null;
    return h(
      'tr',
      { testid: 'version-row', data: { seq: v.seq }, className: v.forced ? 'forced' : '' },
      cell('Seq', String(v.seq)),
      cell('Serial', String(v.serial)),
      cell('Written', h('time', { className: 'nowrap', attrs: { datetime: v.createdAt, title: formatRelative(v.createdAt) } }, formatTime(v.createdAt))),
      cell('Size', formatBytes(v.size)),
      cell('Resources', v.resources === null || v.resources === undefined ? '—' : String(v.resources)),
      cell('Operation', v.operation ?? '—'),
      cell('Client', v.clientAddr),
      cell('Flags', ...flags),
      cell('Actions', h('span', { className: 'row-actions' }, download, restore)),
    );
  });
  const more = versions.length < n ? h('p', { className: 'hint' }, `Showing the last ${versions.length} of ${n} versions. Older ones stay available through the API (GET /api/v1/versions/<key>).`) : null;
  return h(
    'section',
    { className: 'versions', attrs: { 'aria-labelledby': 'versions-h' } },
    h('h2', { attrs: { id: 'versions-h' } }, 'Versions, newest first'),
    scrollingTable(h('table', { className: 'data versions' }, headerRow('Seq', 'Serial', 'Written', 'Size', 'Resources', 'Operation', 'Client', 'Flags', 'Actions'), h('tbody', null, ...rows))),
    more,
  );
}
