import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type RunningServer } from './support/server-process.js';
import { lockBody, rawRequest, stateBody, type RawResponse } from './support/http.js';

/**
 * The API the dashboard reads besides the CLI's: the overview, counted listings, resource counts per
 * version, diffs with masked values, downloads, stale locks and the trail newest first — against a real
 * server process, set up through the http backend as Terraform does.
 */

const LINEAGE = '0c9d3e4f-aaaa-bbbb-cccc-000000000001';
const KEY = 'team/app/terraform.tfstate';
const instance = (attributes: Record<string, unknown>, sensitive: string[] = []) => ({
  schema_version: 0,
  attributes,
  sensitive_attributes: sensitive.map((name) => [{ type: 'get_attr', value: name }]),
});
const resource = (type: string, name: string, instances: unknown[]) => ({ mode: 'managed', type, name, provider: 'provider["registry.terraform.io/hashicorp/aws"]', instances });

const V1 = stateBody(1, LINEAGE, { resources: [resource('aws_db_instance', 'db', [instance({ instance_class: 'db.t3.micro', master_password: 'pw-version-one', port: 5432 }, ['master_password'])])] });
const V2 = stateBody(2, LINEAGE, {
  resources: [
    resource('aws_db_instance', 'db', [instance({ instance_class: 'db.t3.large', master_password: 'pw-version-two', port: 5432 }, ['master_password'])]),
    resource('aws_s3_bucket', 'logs', [{ ...instance({ bucket: 'logs-1' }), index_key: 0 }, { ...instance({ bucket: 'logs-2' }), index_key: 1 }]),
  ],
});

let server: RunningServer;
const api = (path: string, opts: Parameters<typeof rawRequest>[1] = {}) => rawRequest(`${server.url}${path}`, opts);
const json = <T>(r: RawResponse): T => {
  assert.ok(r.status < 300, `${r.status} ${r.text}`);
  return r.json<T>();
};

interface Overview {
  states: number;
  locks: { held: number; alive: number; dead: number; unknown: number; stale: number };
  last24h: { conflicts: number; forcedUnlocks: number; writes: number; restores: number };
}

before(async () => {
  server = await startServer();
  assert.equal((await api(`/state/${KEY}?ID=w1`, { method: 'LOCK', body: lockBody('w1') })).status, 200);
  for (const body of [V1, V2]) assert.equal((await api(`/state/${KEY}?ID=w1`, { method: 'POST', body })).status, 200);
  assert.equal((await api(`/state/${KEY}?ID=w1`, { method: 'UNLOCK', body: lockBody('w1') })).status, 200);
  for (const k of ['team/other/a', 'team/other/b', 'solo']) assert.equal((await api(`/state/${k}`, { method: 'POST', body: stateBody(1, `L-${k}`) })).status, 200);
});
after(async () => {
  await server?.stop();
});

describe('dashboard API', () => {
  test('overview: states, locks by verdict, and the last 24 h of conflicts (a retried LOCK counts once), forced unlocks, writes and restores', async () => {
    const o0 = json<Overview>(await api('/api/v1/overview'));
    assert.equal(o0.states, 4);
    assert.deepEqual(o0.locks, { held: 0, alive: 0, dead: 0, unknown: 0, stale: 0 });
    assert.equal(o0.last24h.writes, 5);
    assert.equal(o0.last24h.conflicts, 0);

    assert.equal((await api('/state/solo', { method: 'LOCK', body: lockBody('holder-1') })).status, 200);
    // Terraform's -lock-timeout retries LOCK with the same ID: one conflict, not three.
    for (let i = 0; i < 3; i++) assert.equal((await api('/state/solo', { method: 'LOCK', body: lockBody('waiter-A') })).status, 423);
    assert.equal((await api('/state/solo', { method: 'LOCK', body: lockBody('waiter-B') })).status, 423);
    // A write that breaks the serial rule is a conflict too.
    assert.equal((await api('/state/team/other/a', { method: 'POST', body: stateBody(1, 'someone-else') })).status, 409);
    const o1 = json<Overview>(await api('/api/v1/overview'));
    assert.equal(o1.last24h.conflicts, 3, 'waiter-A once, waiter-B once, the refused write once');
    assert.deepEqual(o1.locks, { held: 1, alive: 0, dead: 0, unknown: 1, stale: 0 });
    const trail = json<{ items: Array<{ action: string; lockId: string; detail: Record<string, unknown> }> }>(await api('/api/v1/audit?key=solo&action=lock.conflict'));
    assert.deepEqual(trail.items.map((e) => e.lockId), ['waiter-A', 'waiter-B']);
    assert.equal(trail.items[0]!.detail.holderId, 'holder-1', 'the conflict names the holder it ran into');

    assert.equal((await api('/api/v1/locks/solo?id=holder-1', { method: 'DELETE' })).status, 200);
    assert.equal((await api(`/api/v1/restore/${KEY}?seq=1`, { method: 'POST' })).status, 200);
    const o2 = json<Overview>(await api('/api/v1/overview'));
    assert.equal(o2.last24h.forcedUnlocks, 1);
    assert.equal(o2.last24h.restores, 1);
    assert.equal(o2.locks.held, 0);
  });

  test('a waiting LOCK is one conflict however many holders it waits behind: the first one is named', async () => {
    const unlock = (id: string) => api('/state/relay', { method: 'UNLOCK', body: lockBody(id) });
    assert.equal((await api('/state/relay', { method: 'LOCK', body: lockBody('relay-holder-1') })).status, 200);
    assert.equal((await api('/state/relay', { method: 'LOCK', body: lockBody('relay-waiter') })).status, 423);
    assert.equal((await unlock('relay-holder-1')).status, 200);
    assert.equal((await api('/state/relay', { method: 'LOCK', body: lockBody('relay-holder-2') })).status, 200);
    // Terraform's -lock-timeout retry, now behind another holder.
    assert.equal((await api('/state/relay', { method: 'LOCK', body: lockBody('relay-waiter') })).status, 423);
    const trail = json<{ items: Array<{ lockId: string; detail: Record<string, unknown> }> }>(await api('/api/v1/audit?key=relay&action=lock.conflict'));
    assert.deepEqual(
      trail.items.map((e) => [e.lockId, e.detail.holderId]),
      [['relay-waiter', 'relay-holder-1']],
    );
    assert.equal((await unlock('relay-holder-2')).status, 200);
  });

  test('states: count=true adds the total under the prefix; each state names its seq and writer', async () => {
    const page = json<{ items: Array<{ key: string; seq: number; writer: string }>; next: string | null; total: number }>(await api('/api/v1/states?prefix=team/&limit=2&count=true'));
    assert.equal(page.total, 3);
    assert.equal(page.items.length, 2);
    assert.ok(page.next);
    assert.equal(page.items[0]!.writer, '127.0.0.1');
    const without = json<Record<string, unknown>>(await api('/api/v1/states?prefix=team/'));
    assert.equal('total' in without, false);
    assert.equal((await api('/api/v1/states?count=maybe')).status, 400);
  });

  test('versions: resources=true counts the resource instances of each version', async () => {
    const page = json<{ items: Array<{ seq: number; resources: number | null }> }>(await api(`/api/v1/versions/${KEY}?resources=true`));
    assert.deepEqual(page.items.slice(0, 2).map((v) => [v.seq, v.resources]), [
      [1, 1],
      [2, 3],
    ]);
    const plain = json<{ items: Array<Record<string, unknown>> }>(await api(`/api/v1/versions/${KEY}`));
    assert.equal('resources' in plain.items[0]!, false);
  });

  test('diff: values=true shows before and after, the sensitive password masked', async () => {
    const r = await api(`/api/v1/diff/${KEY}?from=1&to=2&values=true`);
    const d = json<{ resources: Array<{ address: string; change: string; values?: Record<string, { before: unknown; after: unknown }> }> }>(r);
    const db = d.resources.find((x) => x.address === 'aws_db_instance.db')!;
    assert.deepEqual(db.values, { instance_class: { before: 'db.t3.micro', after: 'db.t3.large' }, master_password: { before: '(sensitive)', after: '(sensitive)' } });
    assert.deepEqual(d.resources.filter((x) => x.change === 'added').map((x) => x.address), ['aws_s3_bucket.logs[0]', 'aws_s3_bucket.logs[1]']);
    assert.ok(!r.text.includes('pw-version'), 'no password in the answer');
  });

  test('content: download=true answers an attachment named after the key and version', async () => {
    const r = await api(`/api/v1/content/${KEY}?seq=1&download=true`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-disposition'], 'attachment; filename="team_app_terraform.tfstate.v1.serial1.tfstate"');
    assert.equal(r.text, V1);
    assert.equal((await api(`/api/v1/content/${KEY}?seq=1`)).headers['content-disposition'], undefined);
  });

  test('locks: idleSeconds and stale', async () => {
    assert.equal((await api('/state/team/other/b', { method: 'LOCK', body: lockBody('idle-1') })).status, 200);
    const locks = json<{ items: Array<{ key: string; idleSeconds: number; stale: boolean; verdict: string }> }>(await api('/api/v1/locks'));
    const held = locks.items.find((l) => l.key === 'team/other/b')!;
    assert.equal(held.verdict, 'unknown');
    assert.equal(held.stale, false, 'idle for seconds, not 15 minutes');
    assert.ok(held.idleSeconds >= 0 && held.idleSeconds < 60);
    assert.equal((await api('/state/team/other/b', { method: 'UNLOCK', body: lockBody('idle-1') })).status, 200);
  });

  test('audit: order=desc pages newest first with before=', async () => {
    const asc = json<{ items: Array<{ id: number }> }>(await api('/api/v1/audit?limit=1000')).items.map((e) => e.id);
    const first = json<{ items: Array<{ id: number }>; next: string | null }>(await api('/api/v1/audit?order=desc&limit=3'));
    assert.deepEqual(first.items.map((e) => e.id), asc.slice(-3).reverse());
    const second = json<{ items: Array<{ id: number }> }>(await api(`/api/v1/audit?order=desc&limit=3&before=${first.next}`));
    assert.deepEqual(second.items.map((e) => e.id), asc.slice(-6, -3).reverse());
    assert.equal((await api('/api/v1/audit?order=sideways')).status, 400);
  });

  test('overview needs read on *; a token limited to a prefix gets 403 (listings stay filtered)', async () => {
    const admin = json<{ token: string }>(await api('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ name: 'admin', allow: ['*:admin'] }) }));
    const team = json<{ token: string }>(
      await api('/api/v1/tokens', { method: 'POST', headers: { Authorization: `Bearer ${admin.token}` }, body: JSON.stringify({ name: 'team', allow: ['team/*:read'] }) }),
    );
    const asTeam = { Authorization: `Bearer ${team.token}` };
    const refused = await api('/api/v1/overview', { headers: asTeam });
    assert.equal(refused.status, 403);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'FORBIDDEN');
    const reader = json<{ token: string }>(
      await api('/api/v1/tokens', { method: 'POST', headers: { Authorization: `Bearer ${admin.token}` }, body: JSON.stringify({ name: 'reader', allow: ['*:read'] }) }),
    );
    assert.equal((await api('/api/v1/overview', { headers: { Authorization: `Bearer ${reader.token}` } })).status, 200);
    const listed = json<{ items: Array<{ key: string }>; total: number | null }>(await api('/api/v1/states?count=true', { headers: asTeam }));
    assert.ok(listed.items.every((s) => s.key.startsWith('team/')));
    assert.equal(listed.total, null, 'no total that would count keys the token cannot read');
    const underTeam = json<{ total: number | null }>(await api('/api/v1/states?count=true&prefix=team/other/', { headers: asTeam }));
    assert.equal(underTeam.total, 2, 'a prefix the grant covers wholly is counted');
  });
});
