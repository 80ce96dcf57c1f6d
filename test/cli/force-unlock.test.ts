import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runAnswering, runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, newLineage } from '../support/terraform-client.js';

/**
 * `statelock force-unlock <key> <LOCK_ID> [--force]`, run as the real binary against a real server, on
 * locks taken the way `terraform apply` takes them.
 */

const WHO = 'engineer@MacBook-Pro.local';
const PROMPT =
  'Do you really want to force-unlock?\n' +
  '  statelock will remove the lock on the remote state.\n' +
  '  This will allow local Terraform commands to modify this state, even though it\n' +
  "  may still be in use. Only 'yes' will be accepted to confirm.\n" +
  '\n' +
  '  Enter a value: ';

interface AuditPage {
  items: Array<{ action: string; lockId: string | null; outcome: string }>;
}


describe('statelock force-unlock', () => {
  let server: RunningServer;
  let n = 0;
  const clients: HttpBackendClient[] = [];
  before(async () => (server = await startServer()));
  after(async () => {
    for (const c of clients) c.close();
    await server.stop();
  });

  /** A "terraform apply" that took the lock on a fresh key, wrote an intermediate state, and died. */
  async function crashedApply(who = WHO): Promise<{ key: string; id: string; client: HttpBackendClient }> {
    const key = `cli/force-unlock/k${++n}/terraform.tfstate`;
    const client = newClient(key, who);
    const id = await client.lock('OperationTypeApply');
    await client.write(makeState({ serial: 1, lineage: newLineage() }));
    return { key, id, client };
  }
  function newClient(key: string, who = WHO): HttpBackendClient {
    const address = `${server.url}/state/${key}`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 50 }, { flavor: 'terraform', who });
    clients.push(client);
    return client;
  }
  const heldId = async (key: string): Promise<string | null> => {
    const res = await rawRequest(`${server.url}/api/v1/locks/${key}`);
    if (res.status === 404) return null;
    assert.equal(res.status, 200, res.text);
    return res.json<{ info: { ID: string } }>().info.ID;
  };
  const forceUnlocks = async (key: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}&action=lock.force-unlock`)).json<AuditPage>().items;
  const cli = (args: string[], input?: string) => runCli(['--server', server.url, 'force-unlock', ...args], input === undefined ? {} : { input });

  test("answered yes: Terraform's prompt on stderr, the lock entry first, the lock released and audited, a new lock can be taken", async () => {
    const { key, id } = await crashedApply();
    const r = await cli([key, id], 'yes\n');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stderr.startsWith(PROMPT), `stderr:\n${r.stderr}`);
    // What is being unlocked is shown before the question.
    assert.match(r.stdout, new RegExp(`^  ID: +${id}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  Who: +${WHO}$`, 'm'));
    assert.match(r.stdout, /^ {2}Age: +\S+ \(acquired \S+\)$/m);
    assert.match(r.stdout, /^ {2}Last activity: +\S+ ago/m);
    assert.match(r.stdout, /statelock state has been successfully unlocked!\n\nThe state has been unlocked, and Terraform commands should now be able to\nobtain a new lock on the remote state\.\n$/);
    assert.equal(await heldId(key), null);
    const audit = await forceUnlocks(key);
    assert.deepEqual(
      audit.map((a) => [a.lockId, a.outcome]),
      [[id, 'ok']],
    );
    // Terraform can lock again.
    const next = newClient(key);
    const again = await next.lock('OperationTypePlan');
    assert.equal(await heldId(key), again);
  });

  for (const [what, input] of [
    ['answered no', 'no\n'],
    ['answered "y" (only yes confirms)', 'y\n'],
    ['answered YES (only yes confirms)', 'YES\n'],
    ['stdin at end of input without a line', ''],
  ] as const) {
    test(`${what}: "force-unlock cancelled.", exit 1, the lock still held and nothing audited`, async () => {
      const { key, id } = await crashedApply();
      const r = await cli([key, id], input);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.ok(r.stderr.startsWith(PROMPT), r.stderr);
      assert.match(r.stderr, /^force-unlock cancelled\.$/m);
      assert.doesNotMatch(r.stdout, /successfully unlocked/);
      assert.equal(await heldId(key), id);
      assert.deepEqual(await forceUnlocks(key), []);
    });
  }

  test("a LOCK_ID that is not the holder's: exit 3 without a prompt, the holder's ID and Lock Info shown, the lock still held", async () => {
    const { key, id } = await crashedApply();
    const wrong = '00000000-0000-0000-0000-000000000000';
    const r = await cli([key, wrong], 'yes\n');
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, /Do you really want/);
    assert.ok(r.stderr.includes(`LOCK_ID "${wrong}" is not the ID of the lock held on ${key}: the holder is ID "${id}"`), r.stderr);
    assert.match(r.stderr, new RegExp(`Lock Info:\\n  ID: +${id}\\n`));
    assert.match(r.stderr, new RegExp(`^  Who: +${WHO}$`, 'm'));
    assert.equal(await heldId(key), id);
    // --force does not get around it either.
    const forced = await cli([key, wrong, '--force']);
    assert.equal(forced.code, 3, forced.stderr);
    assert.equal(await heldId(key), id);
  });

  test('the lock changes holder while the prompt waits: the server refuses the old ID (exit 3) and the new holder is shown and keeps its lock', async () => {
    const { key, id, client } = await crashedApply();
    let newId = '';
    const r = await runAnswering(['--server', server.url, 'force-unlock', key, id], 'yes\n', async () => {
      // The "dead" holder was alive after all: it finishes, and a colleague's plan takes the lock.
      await client.unlock();
      newId = await newClient(key, 'colleague@build-07').lock('OperationTypePlan');
    });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.ok(r.stderr.includes(`it is now held by ID "${newId}", not "${id}"`), r.stderr);
    assert.match(r.stderr, new RegExp(`Lock Info:\\n  ID: +${newId}\\n`));
    assert.match(r.stderr, /^ {2}Who: +colleague@build-07$/m);
    assert.doesNotMatch(r.stdout, /successfully unlocked/);
    assert.equal(await heldId(key), newId);
    assert.deepEqual(
      (await forceUnlocks(key)).map((a) => [a.lockId, a.outcome]),
      [[id, 'refused']],
    );
  });

  test('the lock is released by its holder while the prompt waits: exit 4, nothing unlocked', async () => {
    const { key, id, client } = await crashedApply();
    const r = await runAnswering(['--server', server.url, 'force-unlock', key, id], 'yes\n', () => client.unlock());
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /was released by someone else meanwhile/);
    assert.deepEqual(await forceUnlocks(key), []);
  });

  test("--force (and Terraform's -force) skips the prompt and unlocks", async () => {
    for (const flag of ['--force', '-force']) {
      const { key, id } = await crashedApply();
      const r = await cli([key, id, flag]);
      assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /Do you really want|Enter a value/);
      assert.match(r.stdout, /statelock state has been successfully unlocked!/);
      assert.equal(await heldId(key), null);
      assert.deepEqual(
        (await forceUnlocks(key)).map((a) => [a.lockId, a.outcome]),
        [[id, 'ok']],
      );
    }
  });

  test('a holder whose statelock run session is alive: refused (exit 3) unless --even-if-alive, which is audited', async () => {
    const key = `cli/force-unlock/k${++n}/terraform.tfstate`;
    const sid = (
      await rawRequest(`${server.url}/api/v1/sessions`, { method: 'POST', body: JSON.stringify({ key, ttlSeconds: 60, holder: { host: 'build-07' } }) })
    ).json<{ id: string }>().id;
    const address = `${server.url}/state/${key}?session=${sid}`;
    const holder = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { flavor: 'terraform', who: WHO });
    clients.push(holder);
    const id = await holder.lock('OperationTypeApply');
    const refused = await cli([key, id, '--force']);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /refusing to force-unlock .*the holder is alive/);
    assert.equal(await heldId(key), id, 'still held');
    const forced = await cli([key, id, '--force', '--even-if-alive']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await heldId(key), null);
    const heartbeat = await rawRequest(`${server.url}/api/v1/sessions/${sid}/heartbeat`, { method: 'POST' });
    assert.equal(heartbeat.status, 409, 'the session that lost its lock is over: its wrapper learns it on the next heartbeat');
    const entry = (await forceUnlocks(key)).at(-1)!;
    const detail = (entry as unknown as { detail: { evenIfAlive?: boolean; verdict?: string } }).detail;
    assert.deepEqual([entry.outcome, detail.evenIfAlive, detail.verdict], ['ok', true, 'alive']);
  });

  test('no lock held on the key: exit 4 and a clear message, no prompt', async () => {
    const key = `cli/force-unlock/free${++n}/terraform.tfstate`;
    const r = await cli([key, '00000000-0000-0000-0000-000000000000'], 'yes\n');
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.equal(r.stderr, `statelock: no lock is held on ${key}: there is nothing to force-unlock.\n`);
    assert.equal(r.stdout, '');
  });

  test('missing or extra arguments, or an unknown option: exit 2 and the usage', async () => {
    for (const args of [[], ['cli/force-unlock/x/terraform.tfstate'], ['a/terraform.tfstate', 'id', 'extra'], ['a/terraform.tfstate', 'id', '--bogus']]) {
      const r = await cli(args, 'yes\n');
      assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
    const r = await cli(['only-a-key/terraform.tfstate']);
    assert.match(r.stderr, /usage: statelock force-unlock <key> <LOCK_ID> \[--force\]/);
  });
});
