import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeEncryptedEnvelope, makeState, newLineage, sampleResources } from '../support/terraform-client.js';

/** `statelock state restore`: roll forward — the old content as a new version with the next serial. */

interface VersionJson {
  seq: number;
  serial: number;
  lineage: string;
  operation: string | null;
}
type StateDoc = Record<string, unknown> & { serial: number; lineage: string };

describe('statelock state restore', () => {
  let server: RunningServer;
  let n = 0;
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);
  const terraform = (key: string) => {
    const address = `${server.url}/state/${key}`;
    return new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
  };
  /** A key with three versions written by terraform apply (serials 1, 2, 3); returns what was uploaded. */
  const threeApplies = async () => {
    const key = `acme/restore/k${++n}/terraform.tfstate`;
    const tf = terraform(key);
    const uploads: Buffer[] = [];
    for (let i = 1; i <= 3; i++) uploads.push((await tf.apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources().slice(0, i + 1) })])).uploads[0]!);
    tf.close();
    return { key, uploads };
  };
  const current = async (key: string) => (await rawRequest(`${server.url}/state/${key}`)).body;
  const versions = async (key: string) => (await rawRequest(`${server.url}/api/v1/versions/${key}`)).json<{ items: VersionJson[] }>().items;
  const doc = (b: Buffer) => JSON.parse(b.toString('utf8')) as StateDoc;

  test('writes the old content as serial current + 1 with the current lineage; the replaced version is kept; Terraform carries on', async () => {
    const { key, uploads } = await threeApplies();
    const lineage = doc(uploads[0]!).lineage;
    const r = await cli('state', 'restore', key, '1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `Restored serial 1 of ${key} as serial 4 (seq 4, lineage ${lineage}).\nThe version it replaced, seq 3 (serial 3), is kept: statelock state history ${key}\n`,
    );
    assert.deepEqual(doc(await current(key)), { ...doc(uploads[0]!), serial: 4 }, 'the content of serial 1, as serial 4');
    assert.deepEqual((await versions(key)).map((v) => [v.seq, v.serial, v.lineage, v.operation]), [
      [1, 1, lineage, 'OperationTypeApply'],
      [2, 2, lineage, 'OperationTypeApply'],
      [3, 3, lineage, 'OperationTypeApply'],
      [4, 4, lineage, 'restore'],
    ]);
    const replaced = await cli('state', 'pull', key, '--seq', '3');
    assert.equal(replaced.stdout, uploads[2]!.toString('utf8'), 'the replaced version is intact');

    const next = await terraform(key).apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources() })]);
    assert.deepEqual([doc(next.uploads[0]!).serial, doc(next.uploads[0]!).lineage], [5, lineage], 'serials keep increasing');
  });

  test('restoring twice keeps serials increasing and every version', async () => {
    const { key } = await threeApplies();
    assert.equal((await cli('state', 'restore', key, '2')).code, 0);
    const r = await cli('state', 'restore', key, '3');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /as serial 5 \(seq 5,/);
    assert.match(r.stdout, /seq 4 \(serial 4\), is kept/);
    assert.deepEqual((await versions(key)).map((v) => v.serial), [1, 2, 3, 4, 5]);
  });

  test('refused while someone else holds the lock (exit 3, nothing written); allowed with their --lock-id', async () => {
    const { key } = await threeApplies();
    const holder = newLineage();
    const body = lockBody(holder, 'OperationTypeApply', 'dave@ci');
    assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body })).status, 200);
    try {
      const r = await cli('state', 'restore', key, '1');
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot restore ${key}: state ${key} is locked by ID "${holder}"`));
      assert.match(r.stderr, /Lock Info:/);
      assert.equal((await versions(key)).length, 3);
      const mine = await cli('state', 'restore', key, '1', '--lock-id', holder);
      assert.equal(mine.code, 0, mine.stderr);
      assert.equal((await versions(key)).length, 4);
    } finally {
      await rawRequest(`${server.url}/state/${key}`, { method: 'UNLOCK', body });
    }
  });

  test('a deleted key comes back with the version’s own serial and lineage', async () => {
    const { key, uploads } = await threeApplies();
    assert.equal((await cli('state', 'rm', key)).code, 0);
    const r = await cli('state', 'restore', key, '2');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Restored serial 2 of ${key} as serial 2 \\(seq 4, `));
    assert.match(r.stdout, /had no live state; nothing was replaced/);
    assert.deepEqual(doc(await current(key)), doc(uploads[1]!));
    assert.ok((JSON.parse((await cli('state', 'list', '--json')).stdout) as Array<{ key: string }>).some((s) => s.key === key));
  });

  test('--seq names a version by seq', async () => {
    const { key } = await threeApplies();
    const r = await cli('state', 'restore', key, '--seq', '2');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Restored seq 2 of .* as serial 4 \(seq 4,/);
  });

  test('an OpenTofu encrypted version cannot be restored: exit 1 with the reason', async () => {
    const key = `acme/restore/k${++n}/terraform.tfstate`;
    const lineage = newLineage();
    for (const serial of [1, 2]) {
      assert.equal((await rawRequest(`${server.url}/state/${key}`, { method: 'POST', body: makeEncryptedEnvelope({ serial, lineage }) })).status, 200);
    }
    const r = await cli('state', 'restore', key, '1');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /OpenTofu encrypted state/);
  });

  test('not found: exit 4; usage errors: exit 2', async () => {
    const { key } = await threeApplies();
    const r = await cli('state', 'restore', key, '9');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /has no version with serial 9/);
    assert.equal((await cli('state', 'restore', 'acme/never', '1')).code, 4);
    assert.equal((await cli('state', 'restore', key)).code, 2);
    assert.equal((await cli('state', 'restore', key, 'one')).code, 2);
    assert.equal((await cli('state', 'restore', key, '1', '--seq', '1')).code, 2);
  });
});
