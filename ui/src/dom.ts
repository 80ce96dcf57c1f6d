/**
 * Tiny DOM builders. Every text goes in through textContent and every attribute through setAttribute, so
 * state keys, lock info and audit details (all user-controlled) can never become markup. No innerHTML.
 */

export type Child = Node | string | number | null | undefined | false;

export interface Props {
  className?: string;
  /** data-testid: the stable hooks the end-to-end tests use. */
  testid?: string;
  /** Plain attributes (never `style` or `on…`: the page's CSP and this helper keep markup data-free). */
  attrs?: Record<string, string | number | boolean | null | undefined>;
  /** data-* attributes, by their dataset name. */
  data?: Record<string, string | number | boolean>;
  on?: { [K in keyof HTMLElementEventMap]?: (ev: HTMLElementEventMap[K]) => void };
}

const FORBIDDEN_ATTR = /^(on|style$|srcdoc$)/i;

function applyProps(node: Element, props: Props | null | undefined): void {
  if (!props) return;
  if (props.className) node.setAttribute('class', props.className);
  if (props.testid) node.setAttribute('data-testid', props.testid);
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (FORBIDDEN_ATTR.test(name)) throw new Error(`refusing to set attribute ${name}`);
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const [name, value] of Object.entries(props.data ?? {})) (node as HTMLElement).dataset[name] = String(value);
  for (const [event, handler] of Object.entries(props.on ?? {})) node.addEventListener(event, handler as EventListener);
}

function append(node: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** An HTML element: `h('a', { attrs: { href } }, 'text')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  applyProps(node, props);
  append(node, children);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, built with the DOM (no markup strings). */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (FORBIDDEN_ATTR.test(name)) throw new Error(`refusing to set attribute ${name}`);
    node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

/** Replaces every child of `node`. */
export function replaceChildren(node: Element, ...children: Child[]): void {
  node.textContent = '';
  append(node, children);
}

/** A link to one of the dashboard's own routes. */
export function routeLink(hash: string, text: Child, props: Props = {}): HTMLAnchorElement {
  return h('a', { ...props, attrs: { ...props.attrs, href: hash } }, text);
}

/** Only http(s) URLs are ever rendered as links (a `javascript:` URL in lock info must stay text). */
export function safeHttpUrl(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** An external link that opens in a new tab without handing it this page. */
export function externalLink(url: string, text: Child): HTMLAnchorElement {
  return h('a', { attrs: { href: url, target: '_blank', rel: 'noopener noreferrer' } }, text);
}

/** A table inside a horizontally scrolling wrapper, so a wide table never widens the page; on a phone its rows become cards. */
export function scrollingTable(table: HTMLTableElement): HTMLDivElement {
  table.classList.add('cards-on-phone'); // narrow screens show each row as a card of labelled cells (td[data-label])
  return h('div', { className: 'table-wrap' }, table);
}

/** `<th scope="col">` cells. */
export function headerRow(...cells: Child[]): HTMLTableSectionElement {
  return h('thead', null, h('tr', null, ...cells.map((c) => (c instanceof HTMLTableCellElement ? c : h('th', { attrs: { scope: 'col' } }, c)))));
}

/** A `<td>` with a label used by the card layout on narrow screens. */
export function cell(label: string, ...children: Child[]): HTMLTableCellElement {
  return h('td', { data: { label } }, ...children);
}

/** A definition list of label → value pairs, skipping empty values. */
export function facts(pairs: Array<[string, Child]>, props: Props = {}): HTMLDListElement {
  const dl = h('dl', { className: 'facts', ...props });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === false || value === '') continue;
    dl.append(h('dt', null, label), h('dd', null, value));
  }
  return dl;
}
