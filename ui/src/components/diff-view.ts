/** A diff between two versions (GET /api/v1/diff/<key>?values=true): resources and outputs, values as the server masked them. */
import type { Diff, OutputChange, ResourceChange } from '../api-types.js';
import { h, type Child } from '../dom.js';
import { compactValue } from '../format.js';

const SIGN: Record<ResourceChange['change'], string> = { added: '+', removed: '−', changed: '~' };

function changeBadge(change: ResourceChange['change']): HTMLSpanElement {
  return h('span', { className: `badge change-${change}`, attrs: { title: change } }, `${SIGN[change]} ${change}`);
}

function value(v: unknown, side: 'before' | 'after'): HTMLElement {
  const text = compactValue(v, 160);
  return h('code', { className: `value value-${side}${text === '(sensitive)' ? ' sensitive' : ''}`, attrs: { title: compactValue(v, 2000) } }, text);
}

function beforeAfter(before: unknown, after: unknown, hasBefore = true, hasAfter = true): Child {
  return h('span', { className: 'before-after' }, hasBefore ? value(before, 'before') : h('span', { className: 'muted' }, '(none)'), h('span', { className: 'arrow', attrs: { 'aria-label': 'becomes' } }, ' → '), hasAfter ? value(after, 'after') : h('span', { className: 'muted' }, '(none)'));
}

function resourceItem(r: ResourceChange): HTMLLIElement {
  const attrs = r.attributes ?? [];
  return h(
    'li',
    { testid: 'diff-resource', className: `diff-item change-${r.change}`, data: { address: r.address, change: r.change } },
    h('div', { className: 'diff-head' }, changeBadge(r.change), h('code', { className: 'address' }, r.address)),
    attrs.length
      ? h(
          'ul',
          { className: 'diff-attributes' },
          ...attrs.map((name) => {
            const v = r.values?.[name];
            return h('li', null, h('span', { testid: 'diff-attribute', className: 'attr-name' }, name), v ? beforeAfter(v.before, v.after) : null);
          }),
        )
      : null,
  );
}

function outputItem(o: OutputChange): HTMLLIElement {
  return h(
    'li',
    { testid: 'diff-output', className: `diff-item change-${o.change}`, data: { name: o.name, change: o.change } },
    h('div', { className: 'diff-head' }, changeBadge(o.change), h('code', { className: 'address' }, `output.${o.name}`), o.sensitive ? h('span', { className: 'badge badge-sensitive' }, 'sensitive') : null),
    'before' in o || 'after' in o ? h('div', { className: 'diff-attributes' }, beforeAfter(o.before, o.after, 'before' in o, 'after' in o)) : null,
  );
}

export function diffView(d: Diff): HTMLElement {
  const s = d.summary;
  const from = d.from ? `seq ${d.from.seq} (serial ${d.from.serial})` : 'nothing';
  return h(
    'div',
    { testid: 'diff-result', className: 'diff' },
    h(
      'p',
      { className: 'summary', testid: 'diff-summary' },
      `From ${from} to seq ${d.to.seq} (serial ${d.to.serial}): `,
      h('span', { className: 'count-added' }, `${s.added} added`),
      ', ',
      h('span', { className: 'count-changed' }, `${s.changed} changed`),
      ', ',
      h('span', { className: 'count-removed' }, `${s.removed} removed`),
      d.outputs.length ? `; ${d.outputs.length} output${d.outputs.length === 1 ? '' : 's'} changed` : '',
      '.',
    ),
    d.resources.length ? h('h3', null, 'Resources') : null,
    d.resources.length ? h('ul', { className: 'diff-list' }, ...d.resources.map(resourceItem)) : null,
    d.outputs.length ? h('h3', null, 'Outputs') : null,
    d.outputs.length ? h('ul', { className: 'diff-list' }, ...d.outputs.map(outputItem)) : null,
    !d.resources.length && !d.outputs.length ? h('p', { className: 'muted' }, 'No differences in resources or outputs.') : null,
    h('p', { className: 'hint' }, 'Sensitive values are masked by the server as “(sensitive)”.'),
  );
}
