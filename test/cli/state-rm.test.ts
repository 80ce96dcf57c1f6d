import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, sampleResources } from '../support/terraform-client.js';

/** `statelock state rm`: soft delete, refused while locked; the versions stay. */

const KEY = 'acme/pr-42/terraform.tfstate';
const HOLDER = 'd00dfeed-aaaa-bbbb-cccc-ddddeeeeffff';

describe('statelock state rm', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
    const address = `${server.url}/state/${KEY}`;
    const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
    for (let i = 1; i <= 3; i++) await tf.apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources().slice(0, i) })]);
    tf.close();
  });
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);
  const listed = async () => (JSON.parse((await cli('state', 'list', '--json')).stdout) as Array<{ key: string }>).map((s) => s.key);

  test('refused while a lock is held: exit 3 showing the holder; nothing deleted', async () => {
    const body = lockBody(HOLDER, 'OperationTypeApply', 'carol@laptop');
    assert.equal((await rawRequest(`${server.url}/state/${KEY}`, { method: 'LOCK', body })).status, 200);
    try {
      const r = await cli('state', 'rm', KEY);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot delete ${KEY}: state ${KEY} is locked by ID "${HOLDER}" \\(OperationTypeApply, carol@laptop`));
      assert.match(r.stderr, /Lock Info:\n {2}ID: +d00dfeed-aaaa-bbbb-cccc-ddddeeeeffff\n[\s\S]* {2}Who: +carol@laptop\n/);
      assert.equal(r.stdout, '');
      assert.deepEqual(await listed(), [KEY]);
      assert.equal((await rawRequest(`${server.url}/state/${KEY}`)).status, 200);
    } finally {
      assert.equal((await rawRequest(`${server.url}/state/${KEY}`, { method: 'UNLOCK', body })).status, 200);
    }
  });

  test('deletes once free: gone from list and from Terraform, every version still in history', async () => {
    const before = (await cli('state', 'history', KEY, '--json')).stdout;
    const r = await cli('state', 'rm', KEY);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `Deleted ${KEY} (was serial 3, 3 versions).\nIts versions stay recoverable: statelock state history ${KEY}, then statelock state restore ${KEY} <serial>.\n`,
    );
    assert.deepEqual(await listed(), []);
    assert.equal((await rawRequest(`${server.url}/state/${KEY}`)).status, 404, 'Terraform sees no state');

    const history = await cli('state', 'history', KEY, '--json');
    assert.equal(history.code, 0, history.stderr);
    assert.equal(history.stdout, before, 'the versions are all still there');
    const table = await cli('state', 'history', KEY);
    assert.equal(table.stdout.split('\n').filter((l) => /^\d+ /.test(l)).length, 3);
    assert.match(table.stdout, new RegExp(`${KEY} has no live state \\(it was deleted\\); bring a version back with: statelock state restore ${KEY} <serial>`));
    const pulled = await cli('state', 'pull', KEY, '--serial', '2');
    assert.equal(pulled.code, 0, 'old versions stay readable');
  });

  test('not found (never existed, or already deleted): exit 4', async () => {
    const again = await cli('state', 'rm', KEY);
    assert.equal(again.code, 4, again.stderr);
    assert.match(again.stderr, /no state stored at key/);
    assert.equal((await cli('state', 'rm', 'acme/never')).code, 4);
  });

  test('usage errors exit 2', async () => {
    assert.equal((await cli('state', 'rm')).code, 2);
    assert.equal((await cli('state', 'rm', 'a', 'b')).code, 2);
  });
});
