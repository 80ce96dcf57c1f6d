import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { checkValidImport, HttpBackendClient, makeEncryptedEnvelope, makeState, newLineage, sampleResources } from '../support/terraform-client.js';

/**
 * `statelock state push`: Terraform's `state push` flow through the http backend door (LOCK, GET,
 * CheckValidImport, POST ?ID=, UNLOCK) with the file's bytes unchanged, against a real server process.
 */

interface VersionJson {
  seq: number;
  serial: number;
  lineage: string;
  md5: string;
  size: number;
  lockId: string | null;
  operation: string | null;
  forced: string | null;
}
interface AuditJson {
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const OUTPUTS = { bucket_name: { value: 'lesson17-ab5c3665', type: 'string' } };

describe('statelock state push', () => {
  let server: RunningServer;
  let n = 0;
  const dir = tempDir('statelock-push-');
  before(async () => (server = await startServer()));
  after(async () => void (await server.stop()));

  const cli = (...args: string[]) => runCli(['--server', server.url, ...args]);
  const freshKey = () => `acme/push/k${++n}/terraform.tfstate`;
  const file = (name: string, bytes: Buffer) => {
    const path = join(dir, `${++n}-${name}`);
    writeFileSync(path, bytes);
    return path;
  };
  const terraform = (key: string) => {
    const address = `${server.url}/state/${key}`;
    return new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 50 }, { who: 'alice@build-07' });
  };
  /** `terraform apply` of the sample resources into `key`: Terraform picks the lineage; returns the stored bytes and header. */
  const applied = async (key: string, applies = 1) => {
    const tf = terraform(key);
    let last: Buffer | undefined;
    for (let i = 0; i < applies; i++) {
      const outputs = { ...OUTPUTS, apply: { value: `apply ${++n}.${i}`, type: 'string' } }; // always a change: Terraform skips no-op writes
      const r = await tf.apply([makeState({ serial: 1, lineage: 'ignored', resources: sampleResources(), outputs })]);
      last = r.uploads.at(-1)!;
    }
    tf.close();
    const doc = JSON.parse(last!.toString('utf8')) as { serial: number; lineage: string };
    return { bytes: last!, serial: doc.serial, lineage: doc.lineage };
  };
  const stored = async (key: string) => {
    const r = await rawRequest(`${server.url}/state/${key}`);
    return r.status === 200 ? r.body : null;
  };
  const versions = async (key: string) => (await rawRequest(`${server.url}/api/v1/versions/${key}`)).json<{ items: VersionJson[] }>().items;
  const audit = async (key: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}`)).json<{ items: AuditJson[] }>().items;
  const lockStatus = async (key: string) => (await rawRequest(`${server.url}/api/v1/locks/${key}`)).status;

  test('into an empty key: LOCK, GET, POST ?ID=, UNLOCK on the wire, the lock info as Terraform builds it, the bytes unchanged', async () => {
    const key = freshKey();
    const proxy = await recordingProxy(server.url);
    try {
      const lineage = newLineage();
      const bytes = makeState({ serial: 7, lineage, resources: sampleResources(), outputs: OUTPUTS });
      const r = await runCli(['--server', proxy.url, 'state', 'push', key, file('state.tfstate', bytes)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `pushed serial 7 (lineage ${lineage}) to ${key}\n`);

      assert.deepEqual(
        proxy.records.map((x) => [x.method, x.path, x.status]),
        [
          ['LOCK', `/state/${key}`, 200],
          ['GET', `/state/${key}`, 404],
          ['POST', `/state/${key}`, 200],
          ['UNLOCK', `/state/${key}`, 200],
        ],
      );
      const [lock, , post, unlock] = proxy.records as [Rec, Rec, Rec, Rec];
      const info = JSON.parse(lock.body.toString('utf8')) as Record<string, string>;
      assert.deepEqual(Object.keys(info), ['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path']);
      assert.match(info.ID!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(info.Operation, 'state-push');
      assert.equal(info.Info, '');
      assert.equal(info.Who, `${userInfo().username}@${hostname()}`);
      assert.equal(info.Version, PACKAGE_VERSION);
      assert.match(info.Created!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
      assert.ok(Math.abs(Date.parse(info.Created!) - Date.now()) < 10 * 60_000, `Created ${info.Created} is now`);
      assert.equal(info.Path, '');
      assert.equal(post.query.get('ID'), info.ID);
      assert.ok(post.body.equals(bytes), 'the POST body is the file, byte for byte');
      assert.ok(unlock.body.equals(lock.body), 'UNLOCK sends the LOCK body again');

      assert.ok((await stored(key))!.equals(bytes), 'no restamping: serial 7 and the file lineage are stored');
      const [v] = await versions(key);
      assert.deepEqual([v!.serial, v!.lineage, v!.lockId, v!.operation, v!.forced], [7, lineage, info.ID, 'state-push', null]);
      assert.equal(await lockStatus(key), 404, 'the lock is released');
    } finally {
      await proxy.close();
    }
  });

  describe('the checks of terraform state push, with its exact messages; nothing stored, the lock released', () => {
    const refusals = [
      {
        name: 'another lineage',
        make: (cur: { serial: number; lineage: string }) => ({ serial: cur.serial + 5, lineage: newLineage() }),
        message: (f: { serial: number; lineage: string }, cur: { serial: number; lineage: string }) =>
          `cannot import state with lineage "${f.lineage}" over unrelated state with lineage "${cur.lineage}"`,
      },
      {
        name: 'a lower serial',
        make: (cur: { serial: number; lineage: string }) => ({ serial: cur.serial - 1, lineage: cur.lineage }),
        message: (f: { serial: number; lineage: string }, cur: { serial: number; lineage: string }) => `cannot import state with serial ${f.serial} over newer state with serial ${cur.serial}`,
      },
      {
        name: 'the same serial with other content',
        make: (cur: { serial: number; lineage: string }) => ({ serial: cur.serial, lineage: cur.lineage }),
        message: (f: { serial: number; lineage: string }) => `cannot overwrite existing state with serial ${f.serial} with a different state that has the same serial`,
      },
    ];
    for (const refusal of refusals) {
      test(refusal.name, async () => {
        const key = freshKey();
        const cur = await applied(key, 2);
        const header = refusal.make(cur);
        const resources = sampleResources().slice(0, 2); // other content than what is stored
        const bytes = makeState({ ...header, resources, outputs: OUTPUTS });
        const before = await versions(key);

        const r = await cli('state', 'push', key, file('refused.tfstate', bytes));
        assert.equal(r.code, 1, r.stderr);
        const expected = refusal.message(header, cur);
        assert.equal(checkValidImport(bytes, cur.bytes), expected, 'the test emulation of Terraform gives the same message');
        assert.equal(r.stderr.split('\n')[0], `Failed to write state: ${expected}`);
        assert.equal(r.stdout, '');

        assert.ok((await stored(key))!.equals(cur.bytes), 'the stored state is untouched');
        assert.deepEqual(await versions(key), before);
        assert.equal(await lockStatus(key), 404);
        const actions = (await audit(key)).map((a) => a.action);
        assert.deepEqual(actions.slice(-2), ['lock.acquire', 'lock.release'], 'locked and released, nothing written');
      });
    }

    test('a destination with no resources and no outputs is always overwritten (another lineage, a lower serial)', async () => {
      const key = freshKey();
      const emptyLineage = newLineage();
      const tf = terraform(key);
      await tf.apply([makeState({ serial: 1, lineage: emptyLineage })], { verbatim: true });
      await tf.apply([makeState({ serial: 9, lineage: emptyLineage })], { verbatim: true });
      tf.close();
      const bytes = makeState({ serial: 3, lineage: newLineage(), resources: sampleResources() });
      const r = await cli('state', 'push', key, file('over-empty.tfstate', bytes));
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await stored(key))!.equals(bytes));
    });

    test('the same serial with the same bytes: unchanged, no new version', async () => {
      const key = freshKey();
      const cur = await applied(key);
      const r = await cli('state', 'push', key, file('same.tfstate', cur.bytes));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'unchanged: identical to the stored version\n');
      assert.equal((await versions(key)).length, 1);
    });

    test('a higher serial of the same lineage is a plain write', async () => {
      const key = freshKey();
      const cur = await applied(key);
      const bytes = makeState({ serial: cur.serial + 1, lineage: cur.lineage, resources: sampleResources().slice(1) });
      const r = await cli('state', 'push', key, file('next.tfstate', bytes));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `pushed serial ${cur.serial + 1} (lineage ${cur.lineage}) to ${key}\n`);
      assert.equal((await versions(key)).at(-1)!.forced, null);
      assert.equal((await audit(key)).filter((a) => a.action === 'state.write.forced').length, 0);
    });
  });

  test('--force: a backup goes back byte for byte over a newer state; audited as state.write.forced; the overwritten version kept', async () => {
    const key = freshKey();
    const backup = await applied(key);
    const pulled = await cli('state', 'pull', key, '-o', join(dir, `backup-${n}.tfstate`));
    assert.equal(pulled.code, 0, pulled.stderr);
    const backupFile = join(dir, `backup-${n}.tfstate`);
    assert.ok(readFileSync(backupFile).equals(backup.bytes));
    const newer = await applied(key, 2); // two more applies: serial 3

    const refused = await cli('state', 'push', key, backupFile);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^Failed to write state: cannot import state with serial ${backup.serial} over newer state with serial ${newer.serial}\n`));

    const r = await cli('state', 'push', key, backupFile, '--force');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `pushed serial ${backup.serial} (lineage ${backup.lineage}) to ${key}`);
    assert.match(lines[1]!, /forced overwrite \(serial-lower\) of serial 3/);
    assert.match(lines[1]!, /recorded in the audit trail as state\.write\.forced/);
    assert.match(lines[1]!, /the overwritten version is kept as seq 3/);

    assert.ok((await stored(key))!.equals(backup.bytes), 'the backup is the current state, byte for byte');
    const vs = await versions(key);
    assert.deepEqual(vs.map((v) => [v.seq, v.serial, v.forced]), [
      [1, 1, null],
      [2, 2, null],
      [3, 3, null],
      [4, 1, 'serial-lower'],
    ]);
    const forced = (await audit(key)).filter((a) => a.action === 'state.write.forced');
    assert.equal(forced.length, 1);
    assert.deepEqual(forced[0]!.detail.overwritten, { seq: 3, serial: 3, lineage: newer.lineage });
    assert.equal(forced[0]!.detail.operation, 'state-push');

    const history = await cli('state', 'history', key, '--json');
    const seqs = (JSON.parse(history.stdout) as Array<{ seq: number; md5: string }>).map((v) => v.seq);
    assert.deepEqual(seqs, [1, 2, 3, 4], 'history still has the overwritten version');
    const old = await cli('state', 'pull', key, '--seq', '3', '-o', join(dir, `old-${n}.tfstate`));
    assert.equal(old.code, 0, old.stderr);
    assert.ok(readFileSync(join(dir, `old-${n}.tfstate`)).equals(newer.bytes), 'the overwritten version is intact');

    // Terraform carries on from the pushed backup: its next write is serial + 1 of the backup.
    const next = await terraform(key).apply([makeState({ serial: 1, lineage: 'x', resources: sampleResources().slice(2) })]);
    const doc = JSON.parse(next.uploads[0]!.toString('utf8')) as { serial: number; lineage: string };
    assert.deepEqual([doc.serial, doc.lineage], [backup.serial + 1, backup.lineage]);
  });

  test('--force over an unrelated lineage is recorded as lineage-changed', async () => {
    const key = freshKey();
    const cur = await applied(key);
    const other = newLineage();
    const r = await cli('state', 'push', key, file('other.tfstate', makeState({ serial: 1, lineage: other, resources: sampleResources() })), '--force');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`forced overwrite \\(lineage-changed\\) of serial ${cur.serial} \\(lineage ${cur.lineage}\\)`));
    assert.equal((await versions(key)).at(-1)!.forced, 'lineage-changed');
  });

  test('a lock held by someone else: exit 3 showing the holder, nothing stored, their lock untouched', async () => {
    const key = freshKey();
    const cur = await applied(key);
    const holder = 'c0ffee00-1111-2222-3333-444455556666';
    const locked = await rawRequest(`${server.url}/state/${key}`, { method: 'LOCK', body: lockBody(holder, 'OperationTypeApply', 'bob@ci-runner-3') });
    assert.equal(locked.status, 200);
    try {
      const bytes = makeState({ serial: cur.serial + 1, lineage: cur.lineage, resources: sampleResources() });
      const r = await cli('state', 'push', key, file('blocked.tfstate', bytes));
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, new RegExp(`locked by ID "${holder}" \\(OperationTypeApply, bob@ci-runner-3`));
      assert.match(r.stderr, /Lock Info:\n {2}ID: +c0ffee00-1111-2222-3333-444455556666\n/);
      assert.match(r.stderr, /nothing was pushed/);
      assert.ok((await stored(key))!.equals(cur.bytes));
      assert.equal((await versions(key)).length, 1);
      const lock = (await rawRequest(`${server.url}/api/v1/locks/${key}`)).json<{ info: { ID: string } }>();
      assert.equal(lock.info.ID, holder, 'the holder still holds its lock');
    } finally {
      await rawRequest(`${server.url}/state/${key}`, { method: 'UNLOCK', body: lockBody(holder, 'OperationTypeApply', 'bob@ci-runner-3') });
    }
  });

  test('a write the server refuses (body over its limit): exit 1 with its reason, and the lock is still released', async () => {
    const small = await startServer({ args: ['--max-body-bytes', '4096'] });
    try {
      const key = freshKey();
      const bytes = makeState({ serial: 1, lineage: newLineage(), resources: sampleResources() });
      assert.ok(bytes.length > 4096);
      const r = await runCli(['--server', small.url, 'state', 'push', key, file('too-big.tfstate', bytes)]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /request body exceeds the limit of 4096 bytes/);
      assert.equal((await rawRequest(`${small.url}/state/${key}`)).status, 404, 'nothing stored');
      assert.equal((await rawRequest(`${small.url}/api/v1/locks/${key}`)).status, 404, 'the lock was released');
      const actions = (await rawRequest(`${small.url}/api/v1/audit?key=${encodeURIComponent(key)}`)).json<{ items: AuditJson[] }>().items;
      assert.deepEqual(actions.map((a) => [a.action, a.outcome]), [
        ['lock.acquire', 'ok'],
        ['lock.release', 'ok'],
      ]);
    } finally {
      await small.stop();
    }
  });

  test('FILE - reads stdin; an OpenTofu encrypted envelope is pushed opaquely', async () => {
    const key = freshKey();
    const envelope = makeEncryptedEnvelope({ serial: 4, lineage: newLineage() });
    const r = await runCli(['--server', server.url, 'state', 'push', key, '-'], { input: envelope });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await stored(key))!.equals(envelope));
  });

  test('a file that is not a state: exit 1 before anything is locked', async () => {
    const key = freshKey();
    const missing = await cli('state', 'push', key, join(dir, 'does-not-exist.tfstate'));
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /Error reading source state ".*does-not-exist\.tfstate": ENOENT/);
    const notJson = await cli('state', 'push', key, file('garbage.tfstate', Buffer.from('{"version": 4, "serial": ')));
    assert.equal(notJson.code, 1, notJson.stderr);
    assert.match(notJson.stderr, /Error reading source state ".*garbage\.tfstate": the file could not be parsed as JSON/);
    const noLineage = await cli('state', 'push', key, file('nolineage.tfstate', Buffer.from('{"version": 4, "serial": 1}\n')));
    assert.equal(noLineage.code, 1, noLineage.stderr);
    assert.match(noLineage.stderr, /"lineage" must be a string/);
    assert.deepEqual(await audit(key), [], 'no LOCK was sent');
  });

  test('usage errors exit 2', async () => {
    assert.equal((await cli('state', 'push', freshKey())).code, 2);
    assert.equal((await cli('state', 'push', freshKey(), 'a', 'b')).code, 2);
    assert.equal((await cli('state', 'push', freshKey(), 'a', '--bogus')).code, 2);
  });
});

interface Rec {
  method: string;
  path: string;
  query: URLSearchParams;
  body: Buffer;
  status: number;
}

/** An HTTP proxy in front of the server that records every exchange (method, path, query, request body, status). */
async function recordingProxy(target: string): Promise<{ url: string; records: Rec[]; close(): Promise<void> }> {
  const t = new URL(target);
  const records: Rec[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const { 'transfer-encoding': _te, ...headers } = req.headers;
      const up = httpRequest(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...headers, host: t.host, 'content-length': String(body.length) } },
        (r) => {
          const out: Buffer[] = [];
          r.on('data', (c: Buffer) => out.push(c));
          r.on('end', () => {
            const url = new URL(req.url ?? '/', 'http://proxy');
            records.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, body, status: r.statusCode ?? 0 });
            res.writeHead(r.statusCode ?? 502, r.headers);
            res.end(Buffer.concat(out));
          });
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    records,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
