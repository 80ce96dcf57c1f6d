import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, sampleResources } from '../support/terraform-client.js';

/** `statelock state history`: every version, oldest first; `--json` is a documented, stable shape. */

interface VersionJson {
  seq: number;
  serial: number;
  lineage: string;
  md5: string;
  size: number;
  createdAt: string;
  lockId: string | null;
  operation: string | null;
  forced: string | null;
}

const KEY = 'acme/lesson-17/terraform.tfstate';

describe('statelock state history', () => {
  let server: RunningServer;
  const uploads: Buffer[] = [];
  const lockIds: string[] = [];
  before(async () => {
    server = await startServer();
    const address = `${server.url}/state/${KEY}`;
    const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
    // One apply with an intermediate snapshot (two writes under one lock), then a second apply.
    const first = await tf.apply([
      makeState({ serial: 1, lineage: 'x', resources: sampleResources().slice(0, 1) }),
      makeState({ serial: 1, lineage: 'x', resources: sampleResources() }),
    ]);
    const second = await tf.apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources(), outputs: { id: { value: 'v', type: 'string' } } })]);
    tf.close();
    uploads.push(...first.uploads, ...second.uploads);
    lockIds.push(first.lockId, first.lockId, second.lockId);
    // A forced overwrite, as `terraform state push -force` of the first version would do it.
    const push = await new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }).apply([uploads[0]!], { operation: 'state-push', verbatim: true });
    uploads.push(uploads[0]!);
    lockIds.push(push.lockId);
  });
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');

  test('--json: oldest first, exactly seq, serial, lineage, md5, size, createdAt, lockId, operation', async () => {
    const r = await cli('state', 'history', KEY, '--json');
    assert.equal(r.code, 0, r.stderr);
    const history = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    assert.equal(history.length, 4);
    const api = (await rawRequest(`${server.url}/api/v1/versions/${KEY}`)).json<{ items: VersionJson[] }>().items;
    const lineage = (JSON.parse(uploads[0]!.toString()) as { lineage: string }).lineage;
    history.forEach((v, i) => {
      assert.deepEqual(Object.keys(v), ['seq', 'serial', 'lineage', 'md5', 'size', 'createdAt', 'lockId', 'operation']);
      assert.equal(v.seq, i + 1);
      assert.equal(v.serial, [1, 2, 3, 1][i]);
      assert.equal(v.lineage, lineage);
      assert.equal(v.md5, md5(uploads[i]!));
      assert.equal(v.size, uploads[i]!.length);
      assert.equal(v.createdAt, api[i]!.createdAt);
      assert.equal(v.lockId, lockIds[i]);
      assert.equal(v.operation, i < 3 ? 'OperationTypeApply' : 'state-push');
    });
  });

  test('the table: SEQ, SERIAL, LINEAGE, MD5, SIZE, CREATED, LOCK ID, OPERATION, FORCED', async () => {
    const r = await cli('state', 'history', KEY);
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trimEnd().split('\n').map((l) => l.split(/ {2,}/));
    assert.deepEqual(header, ['SEQ', 'SERIAL', 'LINEAGE', 'MD5', 'SIZE', 'CREATED', 'LOCK ID', 'OPERATION', 'FORCED']);
    assert.deepEqual(rows.map((row) => [row[0], row[1], row[3], row[6], row[7], row[8]]), [
      ['1', '1', md5(uploads[0]!), lockIds[0], 'OperationTypeApply', '-'],
      ['2', '2', md5(uploads[1]!), lockIds[1], 'OperationTypeApply', '-'],
      ['3', '3', md5(uploads[2]!), lockIds[2], 'OperationTypeApply', '-'],
      ['4', '1', md5(uploads[3]!), lockIds[3], 'state-push', 'serial-lower'],
    ]);
    for (const row of rows) {
      assert.match(row[2]!, /^[0-9a-f]{8}$/);
      assert.match(row[4]!, /^[\d.]+ (B|KiB)$/);
      assert.match(row[5]!, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$/);
    }
  });

  test('an unknown key: exit 4', async () => {
    const r = await cli('state', 'history', 'acme/never/terraform.tfstate');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /no state stored at key acme\/never\/terraform\.tfstate/);
  });

  test('usage errors exit 2', async () => {
    assert.equal((await cli('state', 'history')).code, 2);
    assert.equal((await cli('state', 'history', KEY, 'extra')).code, 2);
  });
});
