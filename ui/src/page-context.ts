/** What a page gets from the app shell: where to render, its route, and the ready/busy signals tests wait for. */
import type { Route } from './router.js';

export interface PageContext {
  route: Route;
  /** The page's own area (emptied before the page runs). */
  main: HTMLElement;
  /** Aborted when the user navigates away: pass it to every request. */
  signal: AbortSignal;
  /** Is this page still the one shown? */
  isCurrent(): boolean;
  /** The page has finished loading its data: `document.body.dataset.ready = <route name>`. */
  ready(): void;
  /** The page is loading again (an in-page search, a next page): clears `ready`. */
  busy(): void;
  /** Renders the route again from scratch; the notice stays. Resolves when the new page is ready. */
  reload(): Promise<void>;
}

export type PageRenderer = (ctx: PageContext) => Promise<void>;
