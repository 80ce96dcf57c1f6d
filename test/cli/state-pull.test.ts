import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, STATELOCK_BIN, tempDir, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeEncryptedEnvelope, makeState, newLineage, sampleResources } from '../support/terraform-client.js';

/** `statelock state pull`: the stored bytes, byte for byte, of the current version or of one serial. */

/** Runs the CLI and keeps stdout as bytes (runCli decodes it as text, which would hide a byte change). */
function runCliBytes(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STATELOCK_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

describe('statelock state pull', () => {
  let server: RunningServer;
  const dir = tempDir('statelock-pull-');
  const key = 'acme/lesson-17/terraform.tfstate';
  /** What Terraform uploaded, in order: serials 1, 2, 3. */
  const uploads: Buffer[] = [];
  before(async () => {
    server = await startServer();
    const address = `${server.url}/state/${key}`;
    const tf = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address }, { who: 'alice@build-07' });
    for (const note of ['première ✓', 'zweite 🚀', 'third \u2028 line']) {
      const r = await tf.apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources(), outputs: { note: { value: note, type: 'string' } } })]);
      uploads.push(r.uploads[0]!);
    }
    tf.close();
  });
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCliBytes(['--server', server.url, ...args]);

  test('the current version to stdout, byte for byte', async () => {
    assert.equal(uploads.length, 3);
    const r = await cli('state', 'pull', key);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(uploads[2]!), 'stdout is the stored bytes');
    assert.equal(r.stderr, '');
  });

  test('--serial N: that version, byte for byte', async () => {
    for (const serial of [1, 2, 3]) {
      const r = await cli('state', 'pull', key, '--serial', String(serial));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(uploads[serial - 1]!), `serial ${serial}`);
    }
    const bySeq = await cli('state', 'pull', key, '--seq', '2');
    assert.ok(bySeq.stdout.equals(uploads[1]!));
  });

  test('-o FILE writes the bytes to FILE and says what it wrote', async () => {
    const path = join(dir, 'pulled.tfstate');
    const r = await cli('state', 'pull', key, '--serial', '1', '-o', path);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(path).equals(uploads[0]!));
    assert.match(r.stdout.toString(), new RegExp(`^wrote serial 1 \\(seq 1, [\\d.]+ KiB\\) of ${key} to ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n$`));
  });

  test('an OpenTofu encrypted envelope comes back exactly as stored', async () => {
    const k = 'acme/tofu/terraform.tfstate';
    const envelope = makeEncryptedEnvelope({ serial: 3, lineage: newLineage() });
    assert.equal((await rawRequest(`${server.url}/state/${k}`, { method: 'POST', body: envelope })).status, 200);
    const r = await cli('state', 'pull', k);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(envelope));
  });

  test('not found: exit 4 (no such key, no such serial)', async () => {
    const none = await runCli(['--server', server.url, 'state', 'pull', 'acme/nothing-here']);
    assert.equal(none.code, 4, none.stderr);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /no state stored at key acme\/nothing-here/);
    const noSerial = await runCli(['--server', server.url, 'state', 'pull', key, '--serial', '99']);
    assert.equal(noSerial.code, 4, noSerial.stderr);
    assert.match(noSerial.stderr, /has no version with serial 99/);
  });

  test('usage errors exit 2', async () => {
    for (const args of [['state', 'pull'], ['state', 'pull', key, '--serial', 'two'], ['state', 'pull', key, '--serial', '1', '--seq', '1'], ['state', 'pull', key, 'extra']]) {
      const r = await runCli(['--server', server.url, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('an unreachable server: exit 1 naming it', async () => {
    const r = await runCli(['--server', 'http://127.0.0.1:1', 'state', 'pull', key]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the statelock server at http:\/\/127\.0\.0\.1:1/);
  });
});
