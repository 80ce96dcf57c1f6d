import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

/**
 * A real Chromium for the dashboard's end-to-end tests: Debian's `chromium` package (CI installs it, see
 * .ci/run), driven by playwright-core. Nothing is downloaded: `npx playwright install` is never needed.
 *
 * Every page is watched: console errors, uncaught exceptions and Content-Security-Policy violations are
 * collected, and every request to a host that is not loopback is refused and recorded (the dashboard
 * promises to work air-gapped: no CDN, no web fonts). Tests assert that nothing was collected.
 */

export const CHROMIUM_PATH = process.env.STATELOCK_CHROMIUM || '/usr/bin/chromium';

/** Where screenshots go (test-artifacts/ is gitignored); this file is dist/test/support/browser.js. */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../../test-artifacts/ui/', import.meta.url));

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * The `skip` option for a browser suite: a reason to skip when Chromium is missing on a developer's
 * machine, false otherwise. Under CI (env CI set) a missing Chromium is a defect, not a reason to skip:
 * then this is false and {@link launchBrowser} fails the suite.
 */
export function browserSkip(): string | false {
  if (existsSync(CHROMIUM_PATH)) return false;
  if (process.env.CI || process.env.STATELOCK_REQUIRE_CHROMIUM) return false;
  return `no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set STATELOCK_CHROMIUM); CI is not set, so the browser tests are skipped`;
}

/** Launches headless Chromium with a fresh temporary profile (playwright makes and removes it). */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`CI (or STATELOCK_REQUIRE_CHROMIUM) is set but there is no Chromium at ${CHROMIUM_PATH}: .ci/run installs Debian's chromium for the dashboard's end-to-end tests, so a missing browser is a defect`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function isLoopbackUrl(raw: string): boolean {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return false;
  }
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
  return (u.protocol === 'http:' || u.protocol === 'https:') && (LOOPBACK_HOSTS.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname));
}

/** What went wrong on the pages of one context. */
export interface Problems {
  /** Console errors (CSP violations are among them), uncaught page errors. */
  errors: string[];
  /** Requests to a host that is not loopback (each was refused). */
  offHost: string[];
}

export interface WatchedContext {
  context: BrowserContext;
  problems: Problems;
  /** A new page of this context, watched. */
  newPage(): Promise<Page>;
  /**
   * Allows failed-resource console messages ("Failed to load resource: … status of 409") for URLs matching
   * `url` with that status: an error response the test provokes on purpose is not a page error.
   */
  allowHttpError(status: number, url: RegExp): void;
  /** Throws when anything was collected since the last call (and starts collecting afresh). */
  assertClean(what?: string): void;
  /** Forgets what was collected and allowed (what a failed test left behind is not the next test's). */
  reset(): void;
  close(): Promise<void>;
}

/**
 * A new browser context whose pages are watched (see the module comment). Requests to non-loopback hosts
 * are aborted and recorded.
 */
export async function newWatchedContext(browser: Browser, options: BrowserContextOptions = {}): Promise<WatchedContext> {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(10_000);
  const problems: Problems = { errors: [], offHost: [] };
  const allowed: Array<{ status: number; url: RegExp }> = [];
  // Recorded when the request is made, refused before it leaves the machine.
  context.on('request', (req) => {
    if (!isLoopbackUrl(req.url())) problems.offHost.push(`${req.method()} ${req.url()}`);
  });
  await context.route((url) => !isLoopbackUrl(url.href), (route) => route.abort('blockedbyclient'));
  // A CSP violation is logged as a console error by Chromium; the event is reported too, in case it is not.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const watch = (page: Page) => {
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      const where = msg.location().url;
      const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      if (failed && allowed.some((a) => a.status === Number(failed[1]) && a.url.test(where))) return;
      problems.errors.push(`console error: ${text}${where ? ` (${where})` : ''}`);
    });
    page.on('pageerror', (err) => problems.errors.push(`uncaught: ${err.stack ?? err.message}`));
  };
  context.on('page', watch);
  return {
    context,
    problems,
    newPage: () => context.newPage(),
    allowHttpError: (status, url) => allowed.push({ status, url }),
    assertClean(what = 'the page') {
      const errors = problems.errors.splice(0);
      const offHost = problems.offHost.splice(0);
      allowed.length = 0;
      const lines = [...errors, ...offHost.map((r) => `request off the loopback host: ${r}`)];
      if (lines.length) throw new Error(`${what}: ${lines.length} problem(s):\n  ${lines.join('\n  ')}`);
    },
    reset() {
      problems.errors.length = 0;
      problems.offHost.length = 0;
      allowed.length = 0;
    },
    close: () => context.close(),
  };
}

/** Saves a full-page screenshot to test-artifacts/ui/<name>.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Resolves once the dashboard says the route has rendered (`document.body.dataset.ready`). */
export async function waitReady(page: Page, route: string | string[], timeoutMs = 10_000): Promise<string> {
  const routes = Array.isArray(route) ? route : [route];
  const handle = await page.waitForFunction((rs) => {
    const r = document.body?.dataset.ready;
    return r !== undefined && rs.includes(r) ? r : false;
  }, routes, { timeout: timeoutMs });
  return (await handle.jsonValue()) as string;
}

/**
 * Goes to a dashboard route (`#/…`) of the server at `base` and waits until it rendered. The ready mark
 * is cleared first, so a mark left by the previous page is not mistaken for the new one.
 */
export async function gotoRoute(page: Page, base: string, hash: string, ready: string | string[]): Promise<string> {
  const target = `${base}/ui/${hash}`;
  const current = page.url();
  if (current.startsWith(`${base}/ui/`)) {
    await page.evaluate(() => {
      delete document.body.dataset.ready;
    });
    if (current === target) await page.reload();
    else await page.evaluate((h) => (location.hash = h), hash);
  } else {
    await page.goto(target);
  }
  return waitReady(page, ready);
}
