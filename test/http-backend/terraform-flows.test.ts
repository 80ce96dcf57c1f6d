import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import {
  HttpBackendClient,
  ImportError,
  LockError,
  makeEncryptedEnvelope,
  makeState,
  newLineage,
  parseStateFile,
  sampleResources,
  type BackendConfig,
  type Flavor,
} from '../support/terraform-client.js';

interface VersionsPage {
  items: Array<{ seq: number; serial: number; lineage: string; lockId: string | null; operation: string | null; forced: string | null }>;
}
interface AuditPage {
  items: Array<{ action: string; lockId: string | null; outcome: string; detail: Record<string, unknown> }>;
}

/**
 * Terraform's and OpenTofu's request sequences, replayed by a client that sends what they send
 * (test/support/terraform-client.ts), against the real server process.
 */
for (const flavor of ['terraform', 'opentofu'] as const satisfies readonly Flavor[]) {
  describe(`${flavor} through backend "http"`, () => {
    let server: RunningServer;
    let n = 0;
    before(async () => (server = await startServer()));
    after(async () => void (await server.stop()));

    /** A backend block for a fresh key, and a client process for it. */
    const setup = (overrides: Partial<BackendConfig> = {}, who = 'alice@build-07') => {
      const key = `flows/${flavor}/lesson-17/k${++n}/terraform.tfstate`;
      const address = `${server.url}/state/${key}`;
      const config: BackendConfig = { address, lockAddress: address, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 50, ...overrides };
      return { key, config, client: new HttpBackendClient(config, { flavor, who }) };
    };
    const versions = async (key: string) => (await rawRequest(`${server.url}/api/v1/versions/${key}`)).json<VersionsPage>().items;
    const audit = async (key: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}`)).json<AuditPage>().items;
    const lockOf = async (key: string) => rawRequest(`${server.url}/api/v1/locks/${key}`);
    const stored = async (key: string) => (await rawRequest(`${server.url}/state/${key}`)).body;
    /** Like Terraform, the first write into an empty key picks a new lineage: read what was stored. */
    const storedLineage = async (key: string) => parseStateFile(await stored(key)).lineage;

    test('init on an empty key: GET answers 404, which the client reads as "no state"', async () => {
      const { client } = setup();
      const result = await client.init();
      assert.equal(result.remote, null);
      assert.ok(client.log.length >= 1);
      assert.ok(client.log.every((r) => r.method === 'GET' && r.status === 404));
    });

    test('plan: LOCK, GET, UNLOCK; the lock is free afterwards', async () => {
      const { key, client } = setup();
      await client.apply([makeState({ serial: 1, lineage: newLineage(), flavor })]);
      client.log.length = 0;
      await client.plan();
      assert.deepEqual(
        client.log.filter((r) => r.method !== 'GET').map((r) => [r.method, r.status]),
        [
          ['LOCK', 200],
          ['UNLOCK', 200],
        ],
      );
      assert.equal((await lockOf(key)).status, 404);
      const actions = (await audit(key)).map((a) => a.action);
      assert.deepEqual(actions.slice(-2), ['lock.acquire', 'lock.release']);
    });

    test('apply with intermediate writes: serial 1, 2, 3 under one lock ID, each kept as a version', async () => {
      const { key, client } = setup();
      const lineage = newLineage();
      const states = [1, 2, 3].map((serial) => makeState({ serial, lineage, flavor, resources: serial > 1 ? sampleResources() : [], outputs: { step: { value: serial, type: 'number' } } }));
      const result = await client.apply(states);
      assert.equal(result.uploads.length, 3);
      const vs = await versions(key);
      assert.deepEqual(vs.map((v) => v.serial), [1, 2, 3]);
      assert.ok(vs.every((v) => v.lockId === result.lockId && v.operation === 'OperationTypeApply'));
      assert.deepEqual(await stored(key), result.uploads[2], 'GET returns the last write byte for byte');
      const writes = client.log.filter((r) => r.method === 'POST');
      assert.ok(writes.every((w) => w.url.includes(`ID=${result.lockId}`)), 'every write carries ?ID=');
    });

    test('a second client’s LOCK during the apply gets 423 with the holder’s ID and Created, and -lock=false writes are refused', async () => {
      const { key, config, client } = setup();
      await client.apply([makeState({ serial: 1, lineage: newLineage(), flavor })]);
      const lineage = await storedLineage(key);
      const applying = new HttpBackendClient(config, { flavor, who: 'ci@runner-1' });
      await applying.get();
      const id = await applying.lock('OperationTypeApply');
      await applying.get();
      await applying.write(makeState({ serial: 2, lineage, flavor, resources: sampleResources() }));

      const second = new HttpBackendClient(config, { flavor, who: 'bob@laptop' });
      await assert.rejects(second.lock('OperationTypePlan'), (err: unknown) => {
        assert.ok(err instanceof LockError);
        assert.equal(err.message, `HTTP remote state already locked: ID=${id}`);
        assert.equal(err.holder?.ID, id);
        assert.equal(err.holder?.Who, 'ci@runner-1');
        assert.equal(err.holder?.Created, JSON.parse(applying.lockBody!.toString()).Created);
        assert.match(err.goErrorText(), /Lock Info:\n {2}ID: {8}/);
        return true;
      });

      const before_ = await stored(key);
      const sneaky = await second.apply([makeState({ serial: 3, lineage, flavor })], { lock: false, verbatim: true }).then(
        () => null,
        (e: Error) => e,
      );
      assert.ok(sneaky, 'the -lock=false write must fail');
      assert.match(sneaky.message, /HTTP error: 423/);
      assert.deepEqual(await stored(key), before_, 'nothing stored');

      await applying.write(makeState({ serial: 3, lineage, flavor, resources: sampleResources() }));
      await applying.unlock();
      assert.deepEqual((await versions(key)).map((v) => v.serial), [1, 2, 3]);
    });

    test('-lock-timeout: a waiting client polls with the same lock body and gets the lock once it is released', async () => {
      const { key, config } = setup();
      const holder = new HttpBackendClient(config, { flavor });
      await holder.lock('OperationTypeApply');
      const waiter = new HttpBackendClient(config, { flavor });
      const waiting = waiter.lockWithTimeout('OperationTypeApply', 5_000, { backoffScaleMs: 20 });
      // Release only after the waiter has been refused at least once.
      while (!waiter.log.some((r) => r.method === 'LOCK' && r.status === 423)) await new Promise((r) => setImmediate(r));
      await holder.unlock();
      const id = await waiting;
      const lockBodies = new Set(waiter.log.filter((r) => r.method === 'LOCK').map((r) => r.requestBody.toString()));
      assert.equal(lockBodies.size, 1, 'every retry sends the identical body');
      assert.equal((await lockOf(key)).json<{ info: { ID: string } }>().info.ID, id);
      await waiter.unlock();
    });

    test('a retried LOCK with the same ID (its first answer lost) succeeds', async () => {
      const { key, config, client } = setup();
      const id = await client.lock('OperationTypeApply');
      const retry = await rawRequest(config.lockAddress!, { method: 'LOCK', body: client.lockBody! });
      assert.equal(retry.status, 200);
      assert.equal((await lockOf(key)).json<{ info: { ID: string } }>().info.ID, id);
      await client.unlock();
    });

    test('state push without -force: the client refuses a stale file; a newer one lands', async () => {
      const { key, client } = setup();
      await client.apply([1, 2, 3].map((serial) => makeState({ serial, lineage: 'ignored', flavor, outputs: { s: { value: serial, type: 'number' } } })));
      const lineage = await storedLineage(key);
      const stale = makeState({ serial: 1, lineage, flavor, outputs: { s: { value: 'old', type: 'string' } } });
      await assert.rejects(client.statePush(stale), (e: unknown) => e instanceof ImportError && e.reason === 'cannot import state with serial 1 over newer state with serial 3');
      assert.equal((await lockOf(key)).status, 404, 'the lock was released after the refusal');
      await client.statePush(makeState({ serial: 7, lineage, flavor, outputs: { s: { value: 'new', type: 'string' } } }));
      assert.equal(parseStateFile(await stored(key)).serial, 8, 'Terraform uploads file serial + 1');
    });

    test('state push -force of an old backup: stored as a forced overwrite, audited, nothing lost', async () => {
      const { key, client } = setup();
      await client.apply([1, 2, 3, 4, 5].map((serial) => makeState({ serial, lineage: 'ignored', flavor, outputs: { s: { value: serial, type: 'number' } } })));
      const lineage = await storedLineage(key);
      const backup = makeState({ serial: 2, lineage, flavor, outputs: { s: { value: 'backup', type: 'string' } } });
      const pushed = await client.statePush(backup, { force: true });
      assert.equal(parseStateFile(await stored(key)).serial, 3, 'file serial + 1, lower than the stored 5');
      const vs = await versions(key);
      assert.equal(vs.length, 6);
      assert.deepEqual([vs[5]!.forced, vs[5]!.operation, vs[5]!.lockId], ['serial-lower', 'state-push', pushed.lockId]);
      const forced = (await audit(key)).filter((a) => a.action === 'state.write.forced');
      assert.equal(forced.length, 1);
      assert.deepEqual(forced[0]!.detail.overwritten, { seq: 5, serial: 5, lineage });
      assert.equal(parseStateFile((await rawRequest(`${server.url}/api/v1/content/${key}?seq=5`)).body).serial, 5, 'the overwritten version is still there');
    });

    test('state push -force of an unrelated lineage is a forced overwrite too', async () => {
      const { key, client } = setup();
      await client.apply([makeState({ serial: 4, lineage: newLineage(), flavor })]);
      const other = newLineage();
      await client.statePush(makeState({ serial: 9, lineage: other, flavor }), { force: true });
      const top = parseStateFile(await stored(key));
      assert.deepEqual([top.lineage, top.serial], [other, 10]);
      assert.equal((await versions(key)).at(-1)!.forced, 'lineage-changed');
    });

    test('force-unlock as the CLI sends it releases a dead holder’s lock and is audited', async () => {
      const { key, config } = setup();
      const crashed = new HttpBackendClient(config, { flavor, who: 'engineer@MacBook-Pro.local' });
      const id = await crashed.lock('OperationTypeApply'); // then the process is killed: no UNLOCK ever comes
      const operator = new HttpBackendClient(config, { flavor });
      const result = await operator.forceUnlock(id);
      const unlock = result.client.log.find((r) => r.method === 'UNLOCK')!;
      if (flavor === 'terraform') assert.equal(unlock.requestBody.length, 0, 'Terraform sends an empty body');
      else assert.equal(JSON.parse(unlock.requestBody.toString()).ID, id, 'OpenTofu sends the ID');
      assert.equal(unlock.status, 200);
      assert.equal((await lockOf(key)).status, 404);
      const entry = (await audit(key)).at(-1)!;
      assert.deepEqual([entry.action, entry.lockId, entry.outcome], ['lock.force-unlock', id, 'ok']);
      assert.equal(entry.detail.who, 'engineer@MacBook-Pro.local');
    });

    test('unlocking with someone else’s ID is a 409 and the lock stays', async () => {
      const { key, config } = setup();
      const holder = new HttpBackendClient(config, { flavor });
      const id = await holder.lock('OperationTypeApply');
      const wrong = await rawRequest(config.unlockAddress!, { method: 'UNLOCK', body: JSON.stringify({ ID: 'not-the-holder', Operation: '', Info: '', Who: '', Version: '', Created: '0001-01-01T00:00:00Z', Path: '' }) });
      assert.equal(wrong.status, 409);
      assert.equal(JSON.parse(wrong.text).ID, id, 'the 409 shows the holder');
      assert.equal((await lockOf(key)).status, 200);
      await holder.unlock();
      assert.equal((await rawRequest(config.unlockAddress!, { method: 'UNLOCK', body: holder.lockBody ?? '{"ID":"x"}' })).status, 200, 'unlocking a free lock succeeds');
    });

    test('init -migrate-state into an empty key: a new lineage at serial 1', async () => {
      const { key, client } = setup();
      const source = makeState({ serial: 12, lineage: newLineage(), flavor, resources: sampleResources() });
      const result = await client.migrateInto(source);
      assert.equal(result.uploads.length, 1);
      const top = parseStateFile(await stored(key));
      assert.equal(top.serial, 1);
      assert.notEqual(top.lineage, parseStateFile(source).lineage);
      assert.equal((await versions(key))[0]!.operation, 'migration destination state');
    });

    test('init -migrate-state into a non-empty key: the source lineage at source serial + 1, a forced overwrite', async () => {
      const { key, client } = setup();
      await client.apply([1, 2, 3, 4, 5, 6].map((serial) => makeState({ serial, lineage: 'dest-lineage', flavor, outputs: { s: { value: serial, type: 'number' } } })));
      const sourceLineage = newLineage();
      await client.migrateInto(makeState({ serial: 2, lineage: sourceLineage, flavor, resources: sampleResources() }));
      const top = parseStateFile(await stored(key));
      assert.deepEqual([top.lineage, top.serial], [sourceLineage, 3]);
      const last = (await versions(key)).at(-1)!;
      assert.deepEqual([last.forced, last.operation], ['lineage-changed', 'migration destination state']);
      assert.equal((await versions(key)).length, 7, 'the destination’s history is kept');
    });

    test('the GitLab convention: lock_method=POST and unlock_method=DELETE on /lock/<key>', async () => {
      const key = `flows/${flavor}/gitlab/k${++n}`;
      const config: BackendConfig = {
        address: `${server.url}/state/${key}`,
        lockAddress: `${server.url}/lock/${key}`,
        unlockAddress: `${server.url}/lock/${key}`,
        lockMethod: 'POST',
        unlockMethod: 'DELETE',
        retryWaitMinMs: 10,
      };
      const client = new HttpBackendClient(config, { flavor });
      const lineage = newLineage();
      const result = await client.apply([makeState({ serial: 1, lineage, flavor }), makeState({ serial: 2, lineage, flavor })]);
      assert.equal((await versions(key)).every((v) => v.lockId === result.lockId), true);
      const holder = new HttpBackendClient(config, { flavor });
      const id = await holder.lock('OperationTypeApply');
      await assert.rejects(new HttpBackendClient(config, { flavor }).lock('OperationTypePlan'), (e: unknown) => e instanceof LockError && e.holder?.ID === id);
      await holder.unlock();
      assert.equal((await lockOf(key)).status, 404);
    });
  });
}

describe('OpenTofu client-side encryption through backend "http"', () => {
  let server: RunningServer;
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));

  test('encrypted envelopes are stored and returned byte for byte, with serial and lineage enforced', async () => {
    const address = `${server.url}/state/tofu/encrypted/terraform.tfstate`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { flavor: 'opentofu' });
    const lineage = newLineage();
    const envelopes = [1, 2].map((serial) => makeEncryptedEnvelope({ serial, lineage, plaintext: makeState({ serial, lineage, flavor: 'opentofu' }) }));
    await client.apply(envelopes, { verbatim: true });
    assert.deepEqual(await client.get(), envelopes[1]);
    const stale = makeEncryptedEnvelope({ serial: 1, lineage });
    await assert.rejects(client.apply([stale], { verbatim: true }), /HTTP error: 409/);
  });
});
