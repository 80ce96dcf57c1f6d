import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { startServer, type RunningServer } from './support/server-process.js';
import { makeEncryptedEnvelope, sampleResources } from './support/terraform-client.js';

interface ErrorBody {
  error: { code: string; message: string; holder?: { ID: string } };
}

/** The API's writing routes: force-unlock, soft delete, roll-forward restore, and diff. */
describe('JSON API actions', () => {
  let server: RunningServer;
  let n = 0;
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));
  const url = (path: string) => `${server.url}${path}`;
  const fresh = async (serials: number[], lineage = 'L') => {
    const key = `actions/k${++n}`;
    for (const s of serials) assert.equal((await rawRequest(url(`/state/${key}`), { method: 'POST', body: stateBody(s, lineage, { outputs: { n: { value: s, type: 'number' } } }) })).status, 200);
    return key;
  };
  const audit = async (key: string) => (await rawRequest(url(`/api/v1/audit?key=${key}`))).json<{ items: Array<{ action: string; outcome: string; lockId: string | null; detail: Record<string, unknown> }> }>().items;

  describe('DELETE /api/v1/locks/<key>?id=', () => {
    test("force-unlocks with the holder's ID, audited", async () => {
      const key = await fresh([1]);
      await rawRequest(url(`/state/${key}`), { method: 'LOCK', body: lockBody('held-1') });
      const res = await rawRequest(url(`/api/v1/locks/${key}?id=held-1`), { method: 'DELETE' });
      assert.equal(res.status, 200);
      assert.equal(res.json<{ previous: { info: { ID: string } } }>().previous.info.ID, 'held-1');
      assert.equal((await rawRequest(url(`/api/v1/locks/${key}`))).status, 404);
      const last = (await audit(key)).at(-1)!;
      assert.deepEqual([last.action, last.outcome, last.lockId, last.detail.how], ['lock.force-unlock', 'ok', 'held-1', 'force-unlock through the API']);
    });
    test("another ID is a 409 showing the holder; the lock stays; the refusal is audited", async () => {
      const key = await fresh([1]);
      await rawRequest(url(`/state/${key}`), { method: 'LOCK', body: lockBody('held-2') });
      const res = await rawRequest(url(`/api/v1/locks/${key}?id=wrong`), { method: 'DELETE' });
      assert.equal(res.status, 409);
      assert.equal(res.json<ErrorBody>().error.code, 'LOCK_ID_MISMATCH');
      assert.equal(res.json<ErrorBody>().error.holder?.ID, 'held-2');
      assert.equal((await rawRequest(url(`/api/v1/locks/${key}`))).status, 200);
      assert.deepEqual((await audit(key)).at(-1)!.outcome, 'refused');
    });
    test('no lock is a 404; no id is a 400', async () => {
      const key = await fresh([1]);
      assert.equal((await rawRequest(url(`/api/v1/locks/${key}?id=x`), { method: 'DELETE' })).json<ErrorBody>().error.code, 'LOCK_NOT_FOUND');
      assert.equal((await rawRequest(url(`/api/v1/locks/${key}`), { method: 'DELETE' })).status, 400);
    });
  });

  describe('DELETE /api/v1/states/<key>', () => {
    test('soft-deletes; a second delete is 404; refused with 423 while locked', async () => {
      const key = await fresh([1, 2]);
      await rawRequest(url(`/state/${key}`), { method: 'LOCK', body: lockBody('d') });
      assert.equal((await rawRequest(url(`/api/v1/states/${key}`), { method: 'DELETE' })).status, 423);
      await rawRequest(url(`/state/${key}`), { method: 'UNLOCK', body: lockBody('d') });
      assert.equal((await rawRequest(url(`/api/v1/states/${key}`), { method: 'DELETE' })).status, 200);
      assert.equal((await rawRequest(url(`/api/v1/states/${key}`), { method: 'DELETE' })).status, 404);
      assert.equal((await rawRequest(url(`/api/v1/versions/${key}`))).json<{ items: unknown[] }>().items.length, 2);
    });
  });

  describe('POST /api/v1/restore/<key>', () => {
    test('rolls an old version forward as serial current + 1 with the current lineage; nothing is lost', async () => {
      const key = await fresh([1, 2, 3]);
      const old = (await rawRequest(url(`/api/v1/content/${key}?serial=1`))).json<Record<string, unknown>>();
      const res = await rawRequest(url(`/api/v1/restore/${key}?serial=1`), { method: 'POST' });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(
        (({ seq, serial, lineage, operation }) => ({ seq, serial, lineage, operation }))(res.json<{ restored: { seq: number; serial: number; lineage: string; operation: string } }>().restored),
        { seq: 4, serial: 4, lineage: 'L', operation: 'restore' },
      );
      const now = (await rawRequest(url(`/state/${key}`))).json<Record<string, unknown>>();
      assert.deepEqual({ ...now, serial: 1 }, old, 'the content is the old version with a new serial');
      const vs = (await rawRequest(url(`/api/v1/versions/${key}`))).json<{ items: Array<{ serial: number }> }>().items;
      assert.deepEqual(vs.map((v) => v.serial), [1, 2, 3, 4]);
      const entry = (await audit(key)).at(-1)!;
      assert.deepEqual([entry.action, entry.detail.fromSerial, entry.detail.replacedSeq], ['state.restore', 1, 3]);
      // Terraform can keep going from the restored state.
      assert.equal((await rawRequest(url(`/state/${key}`), { method: 'POST', body: stateBody(5, 'L') })).status, 200);
    });
    test('never reuses a serial: after a forced push took the serial down, restore goes above every serial of the lineage', async () => {
      const key = await fresh([1, 2, 3]);
      await rawRequest(url(`/state/${key}`), { method: 'LOCK', body: lockBody('push', 'state-push') });
      assert.equal((await rawRequest(url(`/state/${key}?ID=push`), { method: 'POST', body: stateBody(1, 'L', { pushed: true }) })).status, 200);
      await rawRequest(url(`/state/${key}`), { method: 'UNLOCK', body: lockBody('push', 'state-push') });
      const res = await rawRequest(url(`/api/v1/restore/${key}?seq=2`), { method: 'POST' });
      const body = res.json<{ restored: { serial: number }; replaced: { seq: number; serial: number } }>();
      assert.equal(body.restored.serial, 4, 'above serial 3, not current (1) + 1 = 2, which version 2 already has');
      assert.deepEqual(body.replaced, { seq: 4, serial: 1 });
    });
    test('refused with 423 while another holds the lock, allowed with lockId', async () => {
      const key = await fresh([1, 2]);
      await rawRequest(url(`/state/${key}`), { method: 'LOCK', body: lockBody('r') });
      assert.equal((await rawRequest(url(`/api/v1/restore/${key}?seq=1`), { method: 'POST' })).status, 423);
      assert.equal((await rawRequest(url(`/api/v1/restore/${key}?seq=1&lockId=r`), { method: 'POST' })).status, 200);
    });
    test('a deleted key comes back with the version’s own serial and lineage', async () => {
      const key = await fresh([7], 'orig');
      await rawRequest(url(`/api/v1/states/${key}`), { method: 'DELETE' });
      assert.equal((await rawRequest(url(`/api/v1/restore/${key}?seq=1`), { method: 'POST' })).status, 200);
      const doc = (await rawRequest(url(`/state/${key}`))).json<{ serial: number; lineage: string }>();
      assert.deepEqual([doc.serial, doc.lineage], [7, 'orig']);
    });
    test('unknown version 404, missing version 400, encrypted 422', async () => {
      const key = await fresh([1]);
      assert.equal((await rawRequest(url(`/api/v1/restore/${key}?serial=99`), { method: 'POST' })).json<ErrorBody>().error.code, 'VERSION_NOT_FOUND');
      assert.equal((await rawRequest(url(`/api/v1/restore/${key}`), { method: 'POST' })).status, 400);
      const enc = `actions/enc${++n}`;
      for (const serial of [1, 2]) await rawRequest(url(`/state/${enc}`), { method: 'POST', body: makeEncryptedEnvelope({ serial, lineage: 'E' }) });
      assert.equal((await rawRequest(url(`/api/v1/restore/${enc}?seq=1`), { method: 'POST' })).json<ErrorBody>().error.code, 'RESTORE_ENCRYPTED');
      assert.equal((await rawRequest(url(`/api/v1/diff/${enc}`))).json<ErrorBody>().error.code, 'DIFF_ENCRYPTED');
    });
  });

  describe('GET /api/v1/diff/<key>', () => {
    test('defaults to previous → current and names changed resources by address', async () => {
      const key = `actions/diff${++n}`;
      const resources = sampleResources() as Array<Record<string, unknown>>;
      await rawRequest(url(`/state/${key}`), { method: 'POST', body: stateBody(1, 'D', { resources: resources.slice(0, 1) }) });
      await rawRequest(url(`/state/${key}`), { method: 'POST', body: stateBody(2, 'D', { resources }) });
      const d = (await rawRequest(url(`/api/v1/diff/${key}`))).json<{ from: { serial: number }; to: { serial: number }; resources: Array<{ address: string; change: string }>; summary: { added: number } }>();
      assert.deepEqual([d.from.serial, d.to.serial], [1, 2]);
      assert.ok(d.summary.added >= 3, JSON.stringify(d));
      assert.ok(d.resources.some((r) => r.address === 'aws_s3_object.marker[1]' && r.change === 'added'), JSON.stringify(d.resources));
      const first = (await rawRequest(url(`/api/v1/diff/${key}?to=1`))).json<{ from: null; summary: { added: number } }>();
      assert.deepEqual([first.from, first.summary.added], [null, 1]);
      const back = (await rawRequest(url(`/api/v1/diff/${key}?fromSerial=2&toSerial=1`))).json<{ summary: { removed: number } }>();
      assert.ok(back.summary.removed >= 3);
    });
  });
});
