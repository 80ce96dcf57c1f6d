import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, sampleResources } from '../support/terraform-client.js';

/** `statelock state list`: live states by key, as a table or as the API's summaries. */

interface Summary {
  key: string;
  serial: number;
  lineage: string;
  size: number;
  updatedAt: string;
  versions: number;
  locked: boolean;
}

const APP = 'acme/app/terraform.tfstate';
const NET = 'acme/net/terraform.tfstate';
const OTHER = 'zeta/terraform.tfstate';
const GONE = 'acme/gone/terraform.tfstate';

describe('statelock state list', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
    const apply = async (key: string, times: number) => {
      const address = `${server.url}/state/${key}`;
      const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
      for (let i = 0; i < times; i++) {
        await tf.apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources().slice(0, 2 + i), outputs: { n: { value: i, type: 'number' } } })]);
      }
      tf.close();
    };
    await apply(APP, 3);
    await apply(NET, 1);
    await apply(OTHER, 2);
    await apply(GONE, 1);
    assert.equal((await rawRequest(`${server.url}/api/v1/states/${GONE}`, { method: 'DELETE' })).status, 200);
    assert.equal((await rawRequest(`${server.url}/state/${NET}`, { method: 'LOCK', body: lockBody('held-by-bob', 'OperationTypeApply', 'bob@ci') })).status, 200);
  });
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);
  const api = async (query = '') => (await rawRequest(`${server.url}/api/v1/states${query}`)).json<{ items: Summary[] }>().items;

  test('--json: the array of the API state summaries, by key; deleted keys left out', async () => {
    const r = await cli('state', 'list', '--json');
    assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(r.stdout) as Summary[];
    assert.deepEqual(listed, await api());
    assert.deepEqual(listed.map((s) => s.key), [APP, NET, OTHER]);
    const app = listed[0]!;
    assert.deepEqual(Object.keys(app), ['key', 'serial', 'lineage', 'size', 'updatedAt', 'versions', 'locked', 'seq', 'writer']);
    assert.deepEqual([app.serial, app.versions, app.locked], [3, 3, false]);
    assert.equal(listed[1]!.locked, true);
  });

  test('a prefix (positional or --prefix) narrows the list', async () => {
    for (const args of [['acme/'], ['--prefix', 'acme/']]) {
      const r = await cli('state', 'list', ...args, '--json');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual((JSON.parse(r.stdout) as Summary[]).map((s) => s.key), [APP, NET]);
    }
    const none = await cli('state', 'list', 'nothing/', '--json');
    assert.deepEqual(JSON.parse(none.stdout), []);
  });

  test('the table: KEY, SERIAL, LINEAGE (short), SIZE, UPDATED, VERSIONS, LOCKED', async () => {
    const r = await cli('state', 'list');
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trimEnd().split('\n').map((l) => l.split(/ {2,}/));
    assert.deepEqual(header, ['KEY', 'SERIAL', 'LINEAGE', 'SIZE', 'UPDATED', 'VERSIONS', 'LOCKED']);
    const summaries = await api();
    assert.equal(rows.length, summaries.length);
    rows.forEach((row, i) => {
      const s = summaries[i]!;
      assert.equal(row[0], s.key);
      assert.equal(row[1], String(s.serial));
      assert.equal(row[2], s.lineage.slice(0, 8));
      assert.equal(row[3], `${(s.size / 1024).toFixed(1)} KiB`);
      assert.match(row[4]!, /^\d+(s|m\d\ds) ago$/);
      assert.equal(row[5], String(s.versions));
      assert.equal(row[6], s.locked ? 'yes' : 'no');
    });
  });

  test('nothing under a prefix says so, exit 0', async () => {
    const r = await cli('state', 'list', 'nothing/');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'No states under "nothing/".\n');
  });

  test('usage errors exit 2', async () => {
    assert.equal((await cli('state', 'list', 'a/', 'b/')).code, 2);
    assert.equal((await cli('state', 'list', 'a/', '--prefix', 'b/')).code, 2);
    assert.equal((await cli('state', 'list', '--bogus')).code, 2);
  });
});
