import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page, Response } from 'playwright-core';
import { browserSkip, gotoRoute, launchBrowser, newWatchedContext, screenshot, waitReady, type WatchedContext } from '../support/browser.js';
import { waitUntil } from '../support/fake-terraform.js';
import { rawRequest, type RawResponse } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState } from '../support/terraform-client.js';

/**
 * The web dashboard end to end (docs/dashboard.md): a real `statelock serve` on loopback with a SQLite data
 * directory, states and locks made through the http backend exactly as Terraform makes them, and a real
 * Chromium signed in with tokens. What the page does is checked where it lands: through the API, with a
 * Bearer token, not only on the screen. Every page is watched for console errors, CSP violations and
 * requests off the loopback host (none allowed).
 */

const LINEAGE = '5d0b7a4e-8c1f-4e2a-9b3d-7f6e5d4c3b2a';
/** Diff and restore. */
const KEY = 'team/app/terraform.tfstate';
/** A lock taken by a plain Terraform (verdict unknown), force-unlocked in the UI. */
const LOCKED = 'team/network/terraform.tfstate';
/** A lock bound to a heartbeating session (verdict alive). */
const ALIVE = 'team/db/terraform.tfstate';
/** A lock the read-only principal looks at. */
const VIEWED = 'team/dns/terraform.tfstate';
const WHO = 'ci@runner-42';

const SECRET_1 = 'hunter2-version-one-Zq81';
const SECRET_2 = 'hunter2-version-two-Xw55';

const instance = (attributes: Record<string, unknown>, sensitive: string[] = []) => ({
  schema_version: 0,
  attributes,
  sensitive_attributes: sensitive.map((name) => [{ type: 'get_attr', value: name }]),
});
const resource = (type: string, name: string, instances: unknown[]) => ({ mode: 'managed', type, name, provider: 'provider["registry.terraform.io/hashicorp/aws"]', instances });

const V1_RESOURCES = [resource('aws_db_instance', 'db', [instance({ id: 'db-1', instance_class: 'db.t3.micro', master_password: SECRET_1, port: 5432 }, ['master_password'])])];
const V2_RESOURCES = [
  resource('aws_db_instance', 'db', [instance({ id: 'db-1', instance_class: 'db.t3.large', master_password: SECRET_2, port: 5432 }, ['master_password'])]),
  resource('aws_s3_bucket', 'logs', [instance({ id: 'acme-logs', bucket: 'acme-logs' })]),
];

interface Token {
  name: string;
  token: string;
}
interface LockJson {
  key: string;
  info: { ID: string };
  verdict: string;
}
interface AuditEntry {
  action: string;
  key: string;
  lockId: string | null;
  outcome: string;
  principal: string | null;
  detail: Record<string, unknown>;
}

let server: RunningServer;
let admin: Token;
let viewer: Token;
let browser: Browser | undefined;
const clients: HttpBackendClient[] = [];

/** The API as the CLI calls it: Bearer token (admin unless told). */
function api(method: string, path: string, opts: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  const token = opts.token === undefined ? admin.token : opts.token;
  return rawRequest(`${server.url}${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
}
function ok<T>(r: RawResponse, what: string): T {
  assert.ok(r.status >= 200 && r.status < 300, `${what}: ${r.status} ${r.text}`);
  return r.json<T>();
}
async function heldLock(key: string): Promise<LockJson | null> {
  const r = await api('GET', `/api/v1/locks/${key}`);
  if (r.status === 404) return null;
  return ok<LockJson>(r, `GET lock ${key}`);
}
async function audit(key: string, action: string): Promise<AuditEntry[]> {
  return ok<{ items: AuditEntry[] }>(await api('GET', `/api/v1/audit?key=${encodeURIComponent(key)}&action=${action}`), 'audit').items;
}
/** The current version's seq, from the content the API serves. */
async function currentSeq(key: string): Promise<number> {
  const r = await api('GET', `/api/v1/content/${key}`);
  assert.equal(r.status, 200, r.text);
  return Number(r.headers['x-statelock-seq']);
}

/** A Terraform process configured with `backend "http"` on this key, authenticated with the admin token. */
function terraform(key: string, lockQuery = ''): HttpBackendClient {
  const address = `${server.url}/state/${key}`;
  const client = new HttpBackendClient(
    { address, lockAddress: `${address}${lockQuery}`, unlockAddress: address, username: 'terraform', password: admin.token, retryWaitMinMs: 10, retryWaitMaxMs: 50 },
    { flavor: 'terraform', who: WHO },
  );
  clients.push(client);
  return client;
}

/** `terraform apply` writing each state while it holds the lock (POST ?ID=…, Content-MD5), then unlocking. */
async function apply(key: string, states: Buffer[]): Promise<void> {
  const tf = terraform(key);
  await tf.lock('OperationTypeApply');
  for (const s of states) await tf.write(s);
  await tf.unlock();
}

const stateRoute = (key: string) => `#/state/${encodeURIComponent(key)}`;
const byTestId = (page: Page, id: string, attrs: Record<string, string> = {}) =>
  page.locator(`[data-testid="${id}"]${Object.entries(attrs).map(([k, v]) => `[${k}="${v.replace(/"/g, '\\"')}"]`).join('')}`);
const text = async (page: Page, id: string) => ((await byTestId(page, id).first().textContent()) ?? '').trim();
const number = async (page: Page, id: string) => {
  const t = await text(page, id);
  assert.match(t, /^\d+$/, `${id} shows a number, not ${JSON.stringify(t)}`);
  return Number(t);
};
const APP_ROUTES = ['overview', 'states', 'state', 'locks', 'audit'];

/** Signs in through the form; resolves once a page of the dashboard rendered. */
async function signIn(page: Page, token: string): Promise<void> {
  await gotoRoute(page, server.url, '#/', 'signin');
  await byTestId(page, 'signin-token').fill(token);
  await byTestId(page, 'signin-submit').click();
  await waitReady(page, APP_ROUTES);
}

/** What the page's own fetch gets (same origin, the session cookie, any headers given). */
function pageFetch(page: Page, path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return page.evaluate(
    async ([p, i]) => {
      const r = await fetch(p, { ...i, credentials: 'same-origin' });
      return { status: r.status, body: await r.text() };
    },
    [path, init] as const,
  );
}
const errorCode = (body: string) => (JSON.parse(body) as { error?: { code?: string } }).error?.code;

describe('the dashboard in a real browser', { skip: browserSkip() }, () => {
  let adminCtx: WatchedContext;
  let page: Page;

  before(async () => {
    server = await startServer();
    // The first token is created without one (loopback, no token yet) and must be an admin.
    admin = ok<Token>(await api('POST', '/api/v1/tokens', { token: null, body: JSON.stringify({ name: 'admin', allow: ['*:admin'] }) }), 'create admin');
    viewer = ok<Token>(await api('POST', '/api/v1/tokens', { body: JSON.stringify({ name: 'viewer', allow: ['*:read'] }) }), 'create viewer');
    assert.equal((await api('GET', '/api/v1/states', { token: null })).status, 401, 'tokens are required from now on');

    await apply(KEY, [makeState({ serial: 1, lineage: LINEAGE, resources: V1_RESOURCES }), makeState({ serial: 2, lineage: LINEAGE, resources: V2_RESOURCES })]);
    for (const key of [LOCKED, ALIVE, VIEWED]) await apply(key, [makeState({ serial: 1, lineage: `lineage-${key}`, resources: [] })]);
    const versions = ok<{ items: Array<{ seq: number; serial: number }> }>(await api('GET', `/api/v1/versions/${KEY}`), 'versions');
    assert.deepEqual(versions.items.map((v) => [v.seq, v.serial]), [[1, 1], [2, 2]]);

    browser = await launchBrowser();
    adminCtx = await newWatchedContext(browser, { viewport: { width: 1280, height: 860 } });
    page = await adminCtx.newPage();
  });

  /** Each test starts on a new tab of the signed-in context: what a failed test left open (a dialog) cannot spill over. */
  async function freshPage(): Promise<void> {
    await page.close();
    adminCtx.reset();
    page = await adminCtx.newPage();
  }

  after(async () => {
    for (const c of clients) c.close();
    await browser?.close();
    await server?.stop();
  });

  test('sign-in: a wrong token is refused on the form; the admin token signs in to an HttpOnly SameSite=Strict cookie the page cannot read', async () => {
    await gotoRoute(page, server.url, '#/', 'signin');
    adminCtx.allowHttpError(401, /\/ui\/auth\/login$/);
    await byTestId(page, 'signin-token').fill('slk_AAAAAAAAAAAAAAAA_' + 'x'.repeat(43));
    await byTestId(page, 'signin-submit').click();
    await byTestId(page, 'signin-error').waitFor();
    assert.deepEqual(await adminCtx.context.cookies(server.url), [], 'no cookie for a wrong token');

    await byTestId(page, 'signin-token').fill(admin.token);
    await byTestId(page, 'signin-submit').click();
    await waitReady(page, APP_ROUTES);
    assert.match(await text(page, 'whoami'), /admin/);
    const cookies = await adminCtx.context.cookies(server.url);
    const session = cookies.find((c) => c.name === 'statelock_session');
    assert.ok(session, `a session cookie was set: ${JSON.stringify(cookies)}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/');
    // The token is gone from the page once signed in: not in the DOM, the storages or document.cookie.
    const visible = await page.evaluate(() => [document.documentElement.outerHTML, document.cookie, JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage })].join('\n'));
    assert.ok(!visible.includes(admin.token), 'the token is not kept by the page');
    assert.ok(!visible.includes('statelock_session'), 'the session cookie is HttpOnly');
    adminCtx.assertClean();
  });

  let lockId = '';
  test('locks page and overview show a lock Terraform holds', async () => {
    await freshPage();
    lockId = await terraform(LOCKED).lock('OperationTypeApply');
    assert.equal((await heldLock(LOCKED))?.info.ID, lockId);

    await gotoRoute(page, server.url, '#/locks', 'locks');
    const row = byTestId(page, 'lock-row', { 'data-key': LOCKED });
    assert.equal(await row.count(), 1, 'one row for the held lock');
    assert.equal(await row.getAttribute('data-verdict'), 'unknown', 'plain Terraform sends no heartbeat');
    assert.equal(await row.getAttribute('data-stale'), 'false');
    assert.equal(await row.locator('[data-testid="lock-row-age"]').count(), 1);
    assert.notEqual(((await row.locator('[data-testid="lock-row-age"]').textContent()) ?? '').trim(), '', 'the age is shown');
    await screenshot(page, 'locks');

    await gotoRoute(page, server.url, '#/', 'overview');
    const held = await number(page, 'overview-locks-held');
    assert.ok(held >= 1, `overview-locks-held ${held}`);
    const overview = ok<{ states: number; locks: { held: number; unknown: number } }>(await api('GET', '/api/v1/overview'), 'overview');
    assert.equal(held, overview.locks.held, 'the page shows what the API counts');
    assert.equal(await number(page, 'overview-states'), overview.states);
    assert.equal(await number(page, 'overview-unknown'), overview.locks.unknown);
    await screenshot(page, 'overview');
    adminCtx.assertClean();
  });

  test('force-unlock: the dialog shows the checklist and submits only once the typed ID matches; the lock is gone and audited as admin', async () => {
    await freshPage();
    assert.ok(lockId, 'the previous test took the lock');
    await gotoRoute(page, server.url, stateRoute(LOCKED), 'state');
    assert.match(await text(page, 'state-title'), new RegExp(LOCKED.replace(/[.]/g, '\\.')));
    await byTestId(page, 'lock-panel').waitFor();
    assert.match(await text(page, 'lock-id'), new RegExp(lockId));
    assert.match(await text(page, 'lock-verdict'), /unknown/);
    assert.match(await text(page, 'lock-holder'), new RegExp(WHO));
    assert.notEqual(await text(page, 'lock-age'), '', 'the lock age is shown');

    await byTestId(page, 'force-unlock-open').click();
    await byTestId(page, 'force-unlock-dialog').waitFor();
    await byTestId(page, 'force-unlock-checklist').waitFor();
    assert.notEqual(await text(page, 'force-unlock-checklist'), '', 'the checklist says what to check before unlocking');
    const input = byTestId(page, 'force-unlock-confirm-input');
    const submit = byTestId(page, 'force-unlock-submit');
    assert.equal(await submit.isDisabled(), true, 'disabled before anything is typed');
    await input.fill('00000000-0000-4000-8000-000000000000');
    assert.equal(await submit.isDisabled(), true, 'disabled for a wrong ID');
    await input.fill(lockId.slice(0, -1));
    assert.equal(await submit.isDisabled(), true, 'disabled for a prefix of the ID');
    assert.equal((await heldLock(LOCKED))?.info.ID, lockId, 'typing unlocks nothing');
    await input.fill(lockId);
    assert.equal(await submit.isEnabled(), true, 'enabled once the ID matches');
    await screenshot(page, 'force-unlock-dialog');
    await submit.click();

    await waitUntil('the lock to be released', async () => (await heldLock(LOCKED)) === null);
    const trail = await audit(LOCKED, 'lock.force-unlock');
    assert.equal(trail.length, 1, JSON.stringify(trail));
    assert.equal(trail[0]!.principal, 'admin');
    assert.equal(trail[0]!.lockId, lockId);
    assert.equal(trail[0]!.outcome, 'ok');
    await byTestId(page, 'no-lock').waitFor();
    await byTestId(page, 'notice', { 'data-kind': 'ok' }).waitFor();
    assert.match(await text(page, 'notice'), new RegExp(lockId), 'the notice names the lock that was removed');
    await screenshot(page, 'force-unlocked');
    adminCtx.assertClean();
  });

  test('force-unlock of an alive holder: refused with HOLDER_ALIVE and the lock kept; with the override it is released', async () => {
    await freshPage();
    const session = ok<{ id: string }>(await api('POST', '/api/v1/sessions', { body: JSON.stringify({ key: ALIVE, ttlSeconds: 30 }) }), 'create session');
    const id = await terraform(ALIVE, `?session=${encodeURIComponent(session.id)}`).lock('OperationTypeApply');
    ok(await api('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/heartbeat`), 'heartbeat');
    assert.equal((await heldLock(ALIVE))?.verdict, 'alive');

    await gotoRoute(page, server.url, stateRoute(ALIVE), 'state');
    assert.match(await text(page, 'lock-id'), new RegExp(id));
    assert.match(await text(page, 'lock-verdict'), /alive/);
    await byTestId(page, 'force-unlock-open').click();
    await byTestId(page, 'force-unlock-dialog').waitFor();
    const override = byTestId(page, 'force-unlock-even-if-alive');
    assert.equal(await override.isChecked(), false, 'the override is off by default');
    await byTestId(page, 'force-unlock-confirm-input').fill(id);
    adminCtx.allowHttpError(409, /\/api\/v1\/locks\//);
    await byTestId(page, 'force-unlock-submit').click();
    await byTestId(page, 'force-unlock-error').waitFor();
    assert.match(await text(page, 'force-unlock-error'), /HOLDER_ALIVE|holder is alive/);
    assert.equal((await heldLock(ALIVE))?.info.ID, id, 'the alive holder keeps its lock');
    assert.deepEqual((await audit(ALIVE, 'lock.force-unlock')).filter((e) => e.outcome === 'ok'), []);
    await screenshot(page, 'force-unlock-alive-refused');

    ok(await api('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/heartbeat`), 'heartbeat');
    if (!(await byTestId(page, 'force-unlock-dialog').isVisible())) await byTestId(page, 'force-unlock-open').click();
    await byTestId(page, 'force-unlock-confirm-input').fill(id);
    await override.check();
    await byTestId(page, 'force-unlock-submit').click();
    await waitUntil('the alive lock to be released with the override', async () => (await heldLock(ALIVE)) === null);
    const forced = (await audit(ALIVE, 'lock.force-unlock')).filter((e) => e.outcome === 'ok');
    assert.equal(forced.length, 1, JSON.stringify(forced));
    assert.equal(forced[0]!.principal, 'admin');
    assert.equal(forced[0]!.detail.evenIfAlive, true, 'the override is on the record');
    await byTestId(page, 'no-lock').waitFor();
    adminCtx.assertClean();
  });

  test('diff of versions 1 → 2: the changed and the added resource, the changed attribute, the sensitive value masked', async () => {
    await freshPage();
    // Everything the page receives from the server, to check that the secret never even reaches it.
    const received: Array<Promise<string>> = [];
    const onResponse = (r: Response) => void received.push(r.text().catch(() => ''));
    page.on('response', onResponse);
    await gotoRoute(page, server.url, stateRoute(KEY), 'state');
    assert.equal(await byTestId(page, 'version-row').count(), 2);
    await byTestId(page, 'history-chart').waitFor();
    await byTestId(page, 'diff-from').selectOption('1');
    await byTestId(page, 'diff-to').selectOption('2');
    await byTestId(page, 'diff-show').click();
    await byTestId(page, 'diff-result').waitFor();
    const changed = byTestId(page, 'diff-resource', { 'data-change': 'changed', 'data-address': 'aws_db_instance.db' });
    await changed.waitFor();
    const attrNames = (await changed.locator('[data-testid="diff-attribute"]').allTextContents()).map((t) => t.trim());
    assert.ok(attrNames.includes('instance_class'), `a diff-attribute names instance_class: ${JSON.stringify(attrNames)}`);
    assert.ok(attrNames.includes('master_password'), `the changed sensitive attribute is listed: ${JSON.stringify(attrNames)}`);
    assert.ok(!attrNames.includes('port') && !attrNames.includes('id'), `unchanged attributes are not listed as changed: ${JSON.stringify(attrNames)}`);
    const changedText = (await changed.textContent()) ?? '';
    assert.match(changedText, /db\.t3\.micro/, 'the value before');
    assert.match(changedText, /db\.t3\.large/, 'the value after');
    assert.match(changedText, /\(sensitive\)/, 'the sensitive attribute is shown masked, in the resource that changed');
    assert.equal(await byTestId(page, 'diff-resource', { 'data-change': 'added', 'data-address': 'aws_s3_bucket.logs' }).count(), 1);
    assert.equal(await byTestId(page, 'diff-resource', { 'data-change': 'changed' }).count(), 1, 'only the database changed');
    const html = await page.content();
    assert.ok(!html.includes(SECRET_1) && !html.includes(SECRET_2) && !html.includes('hunter2'), 'the sensitive value is not on the page');
    page.off('response', onResponse);
    const bodies = await Promise.all(received);
    assert.ok(bodies.length >= 3, `the page fetched its data (${bodies.length} responses)`);
    assert.ok(!bodies.some((b) => b.includes('hunter2')), 'no response the page received carries the sensitive value');
    await screenshot(page, 'diff');
    adminCtx.assertClean();
  });

  test('restore of version 1: a new current version with version 1\'s resources and a higher serial, audited', async () => {
    await freshPage();
    assert.equal(await currentSeq(KEY), 2);
    await gotoRoute(page, server.url, stateRoute(KEY), 'state');
    // Leaving the page (Back, a link) closes an open dialog: it never acts on a page no longer shown.
    await byTestId(page, 'restore-open', { 'data-seq': '1' }).click();
    await byTestId(page, 'restore-dialog').waitFor();
    await page.evaluate(() => (location.hash = '#/states'));
    await waitReady(page, 'states');
    assert.equal(await page.locator('dialog').count(), 0, 'the dialog closed with the navigation');
    assert.equal(await currentSeq(KEY), 2, 'and restored nothing');
    await gotoRoute(page, server.url, stateRoute(KEY), 'state');
    await byTestId(page, 'restore-open', { 'data-seq': '1' }).click();
    await byTestId(page, 'restore-dialog').waitFor();
    await screenshot(page, 'restore-dialog');
    await byTestId(page, 'restore-submit').click();
    await waitUntil('the restore to make a new version', async () => (await currentSeq(KEY)) === 3);
    const r = await api('GET', `/api/v1/content/${KEY}`);
    const restored = r.json<{ serial: number; lineage: string; resources: unknown[] }>();
    assert.deepEqual(restored.resources, V1_RESOURCES);
    assert.ok(restored.serial > 2, `serial ${restored.serial} is above the last written one`);
    assert.equal(restored.lineage, LINEAGE);
    const trail = await audit(KEY, 'state.restore');
    assert.equal(trail.length, 1, JSON.stringify(trail));
    assert.equal(trail[0]!.principal, 'admin');
    await waitUntil('the timeline to show the new version', async () => (await byTestId(page, 'version-row').count()) === 3);
    await byTestId(page, 'notice', { 'data-kind': 'ok' }).waitFor();
    adminCtx.assertClean();
  });

  let viewedId = '';
  test('states: the total, the lock badge and the prefix search; audit: the filters find the force-unlock', async () => {
    await freshPage();
    viewedId = await terraform(VIEWED).lock('OperationTypeApply');
    const all = ok<{ total: number }>(await api('GET', '/api/v1/states?count=true'), 'states');
    await gotoRoute(page, server.url, '#/states', 'states');
    assert.equal(await number(page, 'states-total'), all.total);
    assert.equal(await byTestId(page, 'state-row').count(), all.total);
    assert.equal(await byTestId(page, 'state-row', { 'data-key': VIEWED }).locator('[data-testid="state-lock-badge"]').count(), 1, 'the locked state has the badge');
    assert.equal(await byTestId(page, 'state-row', { 'data-key': KEY }).locator('[data-testid="state-lock-badge"]').count(), 0, 'a free state has none');
    await byTestId(page, 'states-search').fill('team/d');
    await waitReady(page, 'states');
    const keys = await byTestId(page, 'state-row').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.key));
    assert.deepEqual(keys, [ALIVE, VIEWED]);
    assert.equal(await number(page, 'states-total'), 2);

    await gotoRoute(page, server.url, '#/audit', 'audit');
    await byTestId(page, 'audit-filter-key').fill(LOCKED);
    await byTestId(page, 'audit-filter-action').selectOption('lock.force-unlock');
    await page.evaluate(() => {
      delete document.body.dataset.ready;
    });
    await byTestId(page, 'audit-apply').click();
    await waitReady(page, 'audit');
    const rows = byTestId(page, 'audit-row');
    assert.equal(await rows.count(), (await audit(LOCKED, 'lock.force-unlock')).length);
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().getAttribute('data-action'), 'lock.force-unlock');
    assert.match((await rows.first().textContent()) ?? '', /admin/, 'the principal is shown');
    await screenshot(page, 'audit');
    adminCtx.assertClean();
  });

  test('permissions and CSRF: no CSRF header refused; a read-only principal sees no actions and the API refuses them', async () => {
    await freshPage();
    await gotoRoute(page, server.url, '#/', 'overview');
    const seq = await currentSeq(KEY);
    // As admin, a change without the session's CSRF header is refused.
    adminCtx.allowHttpError(403, /\/api\/v1\//);
    const noCsrf = await pageFetch(page, `/api/v1/restore/${KEY}?seq=2`, { method: 'POST' });
    assert.equal(noCsrf.status, 403, noCsrf.body);
    assert.equal(errorCode(noCsrf.body), 'CSRF_REJECTED');
    assert.equal(await currentSeq(KEY), seq, 'nothing restored');

    assert.ok(viewedId, 'the previous test took the lock');
    await byTestId(page, 'signout').click();
    await waitReady(page, 'signin');
    const afterSignOut = JSON.parse((await pageFetch(page, '/ui/auth/whoami')).body) as { signedIn: boolean };
    assert.equal(afterSignOut.signedIn, false);
    assert.equal((await adminCtx.context.cookies(server.url)).some((c) => c.name === 'statelock_session' && c.value !== ''), false, 'the cookie is cleared');

    await signIn(page, viewer.token);
    assert.match(await text(page, 'whoami'), /viewer/);
    await gotoRoute(page, server.url, stateRoute(VIEWED), 'state');
    assert.match(await text(page, 'lock-id'), new RegExp(viewedId), 'the lock is shown');
    assert.equal(await byTestId(page, 'force-unlock-open').count(), 0, 'no force-unlock for a read-only principal');
    await gotoRoute(page, server.url, stateRoute(KEY), 'state');
    assert.ok((await byTestId(page, 'version-row').count()) >= 3, 'the versions are shown');
    assert.equal(await byTestId(page, 'restore-open').count(), 0, 'no restore for a read-only principal');
    await screenshot(page, 'read-only');

    const csrf = (JSON.parse((await pageFetch(page, '/ui/auth/whoami')).body) as { csrf: string }).csrf;
    assert.ok(csrf, 'a signed-in session has a CSRF token');
    const restore = await pageFetch(page, `/api/v1/restore/${KEY}?seq=1`, { method: 'POST', headers: { 'X-Statelock-CSRF': csrf } });
    assert.equal(restore.status, 403, restore.body);
    assert.equal(errorCode(restore.body), 'FORBIDDEN');
    assert.equal(await currentSeq(KEY), seq, 'nothing restored');
    const unlock = await pageFetch(page, `/api/v1/locks/${VIEWED}?id=${encodeURIComponent(viewedId)}`, { method: 'DELETE', headers: { 'X-Statelock-CSRF': csrf } });
    assert.equal(unlock.status, 403, unlock.body);
    assert.equal(errorCode(unlock.body), 'FORBIDDEN');
    assert.equal((await heldLock(VIEWED))?.info.ID, viewedId, 'the lock is still held');
    adminCtx.assertClean();
  });

  test('phone layout (390×844): the States and Locks pages do not scroll sideways', async () => {
    assert.ok(browser);
    const phone = await newWatchedContext(browser, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    try {
      const p = await phone.newPage();
      await signIn(p, admin.token);
      const width = () => p.evaluate(() => document.documentElement.scrollWidth);

      await gotoRoute(p, server.url, '#/states', 'states');
      assert.ok((await byTestId(p, 'state-row').count()) >= 4, 'the states are listed');
      const statesWidth = await width();
      await screenshot(p, 'phone-states');
      assert.ok(statesWidth <= 390, `States page is ${statesWidth} px wide on a 390 px screen`);

      assert.ok(await heldLock(VIEWED), 'a lock is held, so the Locks page has a row');
      await gotoRoute(p, server.url, '#/locks', 'locks');
      assert.equal(await byTestId(p, 'lock-row', { 'data-key': VIEWED }).count(), 1);
      const locksWidth = await width();
      await screenshot(p, 'phone-locks');
      assert.ok(locksWidth <= 390, `Locks page is ${locksWidth} px wide on a 390 px screen`);
      phone.assertClean('phone');
    } finally {
      await phone.close();
    }
  });
});
