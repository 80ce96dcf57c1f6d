/** Small labelled badges: colour plus a word, never colour alone. */
import { h } from '../dom.js';
import type { Props } from '../dom.js';
import type { Verdict } from '../api-types.js';

export function verdictBadge(verdict: Verdict, props: Props = {}): HTMLSpanElement {
  return h('span', { ...props, className: `badge verdict-${verdict}`, attrs: { ...props.attrs, title: VERDICT_MEANING[verdict] } }, verdict);
}

const VERDICT_MEANING: Record<Verdict, string> = {
  alive: 'alive: the holder’s session heartbeat is current',
  dead: 'dead: the holder’s session ended or its lease expired with no use since',
  unknown: 'unknown: no heartbeat evidence (plain Terraform sends none)',
};

export function badge(text: string, kind: string, props: Props = {}): HTMLSpanElement {
  return h('span', { ...props, className: `badge badge-${kind}` }, text);
}
