/** Any hash the dashboard does not know. */
import { h, routeLink } from '../dom.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';

export async function renderNotFound(ctx: PageContext): Promise<void> {
  ctx.main.append(h('h1', null, 'Not found'), h('p', null, 'The dashboard has no page at this address. ', routeLink(hashes.overview(), 'Go to the overview'), '.'));
  ctx.ready();
}
