import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, Agent, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody } from './support/http.js';
import { startServer, tempDir, type RunningServer } from './support/server-process.js';
import { HttpBackendClient, ImportError, LockError } from './support/terraform-client.js';
import { findExecutable } from '../src/cli/child-process-guard.js';

/**
 * Cross-check against the REAL `terraform` binary: the project's other tests emulate Terraform's
 * wire protocol (test/support/terraform-client.ts); this suite runs the real CLI against the real
 * statelock process, with only built-in resources (`terraform_data`, outputs) so nothing is
 * downloaded. Terraform talks to statelock through a small recording proxy in this file, so the
 * requests the real binary sends can be compared with what the emulation sends.
 */

/* ------------------------------------------------------------------ */
/* Finding the binary                                                  */
/* ------------------------------------------------------------------ */


const terraformBin = findExecutable('terraform');

/* ------------------------------------------------------------------ */
/* Running terraform                                                   */
/* ------------------------------------------------------------------ */

const COMMAND_TIMEOUT_MS = 60_000;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Workspace {
  dir: string;
  /** Environment for every terraform command in this workspace: nothing of the user's leaks in. */
  env: NodeJS.ProcessEnv;
}

const createdDirs: string[] = [];

/** A fresh working directory with its own HOME and TF_DATA_DIR (removed when the suite ends). */
function newWorkspace(): Workspace {
  const dir = tempDir('statelock-real-tf-');
  createdDirs.push(dir);
  const home = join(dir, '.home');
  mkdirSync(home);
  // Built from scratch on purpose: an inherited TF_CLI_CONFIG_FILE, TF_CLI_ARGS*, TF_LOG, TF_HTTP_*,
  // TF_PLUGIN_CACHE_DIR or *_PROXY would change what Terraform does.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    TMPDIR: dir,
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    TF_DATA_DIR: join(dir, '.tfdata'),
  };
  return { dir, env };
}

interface Running {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  done: Promise<RunResult>;
}

/** Starts `terraform <args>` (always -no-color) in the workspace; killed after COMMAND_TIMEOUT_MS. */
function startTerraform(ws: Workspace, args: string[]): Running {
  const proc = spawn(terraformBin!, args, { cwd: ws.dir, env: ws.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<RunResult>((resolve, reject) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return { proc, stdout: () => out, stderr: () => err, done };
}

async function terraform(ws: Workspace, ...args: string[]): Promise<RunResult> {
  return startTerraform(ws, args).done;
}

/** Runs terraform and asserts the exit code, showing its output when it differs. */
async function terraformOk(ws: Workspace, expectedCode: number, ...args: string[]): Promise<RunResult> {
  const r = await terraform(ws, ...args);
  assert.equal(r.code, expectedCode, `terraform ${args.join(' ')} exited ${r.code} (signal ${r.signal}); expected ${expectedCode}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

/** Terraform wraps diagnostics at 78 columns when not on a terminal: compare with whitespace collapsed. */
const flat = (s: string) => s.replace(/\s+/g, ' ');

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) return true;
  return Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor);
}

/* ------------------------------------------------------------------ */
/* Configurations                                                      */
/* ------------------------------------------------------------------ */

function backendBlock(address: string): string {
  return `terraform {
  backend "http" {
    address        = "${address}"
    lock_address   = "${address}"
    unlock_address = "${address}"
  }
}
`;
}

/** A few built-in resources: one plain, one with count = 2, one with for_each; and an output. */
function resourcesConfig(singleInput = 'one'): string {
  return `resource "terraform_data" "single" {
  input = "${singleInput}"
}

resource "terraform_data" "counted" {
  count = 2
  input = "counted-\${count.index}"
}

resource "terraform_data" "each" {
  for_each = toset(["a", "b"])
  input    = "each-\${each.key}"
}

output "summary" {
  value = {
    single  = terraform_data.single.output
    counted = terraform_data.counted[*].output
    each    = { for k, r in terraform_data.each : k => r.output }
  }
}
`;
}

/* ------------------------------------------------------------------ */
/* A recording proxy between terraform and statelock                   */
/* ------------------------------------------------------------------ */

interface WireEntry {
  method: string;
  /** Path and query as sent, e.g. `/state/real-tf/apply?ID=…`. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** Header names in wire order and spelling. */
  rawHeaderNames: string[];
  body: Buffer;
  status: number;
}

interface RecordingProxy {
  url: string;
  log: WireEntry[];
  close(): Promise<void>;
}

/** Forwards every request to `target` unchanged (custom methods and bodies included) and records it. */
async function startProxy(target: string): Promise<RecordingProxy> {
  const t = new URL(target);
  const agent = new Agent({ keepAlive: true });
  const log: WireEntry[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
      if (body.length > 0 || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) headers['content-length'] = String(body.length);
      const upstream = httpRequest(
        { host: t.hostname, port: Number(t.port), method: req.method, path: req.url, headers, agent },
        (up) => {
          const upChunks: Buffer[] = [];
          up.on('data', (c: Buffer) => upChunks.push(c));
          up.on('end', () => {
            const upBody = Buffer.concat(upChunks);
            const url = req.url ?? '/';
            const q = url.indexOf('?');
            log.push({
              method: req.method ?? '',
              url,
              path: q < 0 ? url : url.slice(0, q),
              query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)),
              headers: req.headers,
              rawHeaderNames: req.rawHeaders.filter((_, i) => i % 2 === 0),
              body,
              status: up.statusCode ?? 0,
            });
            const outHeaders: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(up.headers)) {
              if (v !== undefined && !['transfer-encoding', 'connection', 'keep-alive', 'content-length'].includes(k)) outHeaders[k] = v;
            }
            outHeaders['content-length'] = String(upBody.length);
            res.writeHead(up.statusCode ?? 502, outHeaders);
            res.end(upBody);
          });
        },
      );
      upstream.on('error', (e) => {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${e.message}`);
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/* ------------------------------------------------------------------ */
/* statelock's API, as the assertions read it                          */
/* ------------------------------------------------------------------ */

interface VersionItem {
  seq: number;
  serial: number;
  lineage: string;
  lockId: string | null;
  operation: string | null;
  forced: string | null;
}
interface AuditItem {
  id: number;
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}
/** terraform_data's input/output are dynamic values, stored as `{ value, type }`. */
function dynamicValue(attr: unknown): unknown {
  return typeof attr === 'object' && attr !== null && 'value' in attr ? (attr as { value: unknown }).value : attr;
}
const singleInput = (state: StateV4) => dynamicValue(state.resources.find((x) => x.name === 'single')!.instances[0]!.attributes['input']);

interface StateV4 {
  version: number;
  terraform_version: string;
  serial: number;
  lineage: string;
  outputs: Record<string, { value: unknown; type: unknown }>;
  resources: Array<{ mode: string; type: string; name: string; provider: string; instances: Array<{ index_key?: string | number; attributes: Record<string, unknown> }> }>;
}

/** `type.name[index]` of every instance, sorted: what a state's resources amount to. */
function instanceAddresses(state: StateV4): string[] {
  const out: string[] = [];
  for (const r of state.resources) {
    if (r.mode !== 'managed') continue;
    for (const i of r.instances) {
      const idx = i.index_key === undefined ? '' : typeof i.index_key === 'number' ? `[${i.index_key}]` : `["${i.index_key}"]`;
      out.push(`${r.type}.${r.name}${idx}`);
    }
  }
  return out.sort();
}

const EXPECTED_INSTANCES = [
  'terraform_data.counted[0]',
  'terraform_data.counted[1]',
  'terraform_data.each["a"]',
  'terraform_data.each["b"]',
  'terraform_data.single',
];

/* ------------------------------------------------------------------ */
/* The suite                                                           */
/* ------------------------------------------------------------------ */

describe('real terraform against statelock (backend "http")', { skip: terraformBin ? false : 'terraform is not on PATH: the real-Terraform cross-check needs it' }, () => {
  let server: RunningServer;
  let proxy: RecordingProxy;
  let tfVersion = '';
  let n = 0;

  before(async () => {
    const v = spawnSync(terraformBin!, ['version', '-json'], { env: newWorkspace().env, encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    assert.equal(v.status, 0, `terraform version -json failed: ${v.stderr}`);
    tfVersion = (JSON.parse(v.stdout) as { terraform_version: string }).terraform_version;
    server = await startServer();
    proxy = await startProxy(server.url);
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
    for (const dir of createdDirs) rmSync(dir, { recursive: true, force: true });
    if (server) rmSync(server.dataDir, { recursive: true, force: true });
  });

  const freshKey = (name: string) => `real-tf/${name}-${++n}/terraform.tfstate`;
  /** Where terraform is pointed: through the recording proxy. */
  const address = (key: string) => `${proxy.url}/state/${key}`;
  const api = (path: string) => `${server.url}${path}`;
  const versions = async (key: string) => {
    const res = await rawRequest(api(`/api/v1/versions/${key}`));
    if (res.status === 404) return [];
    assert.equal(res.status, 200, res.text);
    return res.json<{ items: VersionItem[] }>().items;
  };
  const audit = async (key: string, afterId = 0) =>
    (await rawRequest(api(`/api/v1/audit?key=${encodeURIComponent(key)}&after=${afterId}`))).json<{ items: AuditItem[] }>().items.filter((a) => a.id > afterId);
  const lastAuditId = async (key: string) => (await audit(key)).reduce((m, a) => Math.max(m, a.id), 0);
  const storedText = async (key: string) => {
    const res = await rawRequest(api(`/state/${key}`));
    return res.status === 404 ? null : res.text;
  };
  const storedState = async (key: string) => {
    const text = await storedText(key);
    assert.ok(text !== null, `no state stored at ${key}`);
    return JSON.parse(text) as StateV4;
  };
  const lockHeld = async (key: string) => (await rawRequest(api(`/api/v1/locks/${key}`))).status === 200;
  const refusedLocks = async () => {
    const text = (await rawRequest(api('/metrics'))).text;
    const m = /^statelock_lock_attempts_total\{result="refused"\} (\d+)$/m.exec(text);
    return m ? Number(m[1]) : 0;
  };
  /** The requests terraform sent for `key` (through the proxy), from proxy log position `from` on. */
  const wire = (key: string, from = 0) => proxy.log.slice(from).filter((e) => e.path === `/state/${key}`);
  /** `METHOD[?ID] status` per request. */
  const shape = (entries: WireEntry[]) => entries.map((e) => `${e.method}${e.query.has('ID') ? '?ID' : ''} ${e.status}`);

  /** A workspace whose config uses the http backend at `key`, initialised. */
  const initialised = async (key: string, config = resourcesConfig()) => {
    const ws = newWorkspace();
    writeFileSync(join(ws.dir, 'backend.tf'), backendBlock(address(key)));
    writeFileSync(join(ws.dir, 'main.tf'), config);
    await terraformOk(ws, 0, 'init', '-no-color');
    return ws;
  };
  /** …and applied once. */
  const applied = async (key: string) => {
    const ws = await initialised(key);
    await terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color');
    return ws;
  };
  /** Someone else's lock, taken through the API as another CI runner would. */
  const takeForeignLock = async (key: string, id: string) => {
    const body = lockBody(id, 'OperationTypeApply', 'ci@runner-1', new Date().toISOString());
    const res = await rawRequest(api(`/state/${key}`), { method: 'LOCK', body });
    assert.equal(res.status, 200, res.text);
    return body;
  };

  test('1. init with backend "http" (address, lock_address, unlock_address) on an empty key: exit 0, only GETs', async () => {
    const key = freshKey('init');
    const mark = proxy.log.length;
    const ws = newWorkspace();
    writeFileSync(join(ws.dir, 'backend.tf'), backendBlock(address(key)));
    writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig());
    const r = await terraformOk(ws, 0, 'init', '-no-color');
    assert.match(r.stdout, /Successfully configured the backend "http"!/);
    assert.match(r.stdout, /Terraform has been successfully initialized!/);
    const sent = wire(key, mark);
    assert.ok(sent.length >= 1, 'init reads the state');
    assert.deepEqual(new Set(shape(sent)), new Set(['GET 404']), `init sent ${shape(sent).join(', ')}`);
    assert.deepEqual(await audit(key), []);
    assert.equal(await storedText(key), null);
  });

  test('2. apply with count and for_each: exit 0; versions written under an OperationTypeApply lock; v4 state matches; audit acquire/write/release', async () => {
    const key = freshKey('apply');
    const ws = await initialised(key);
    const mark = proxy.log.length;
    const r = await terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color');
    assert.match(r.stdout, /Apply complete! Resources: 5 added, 0 changed, 0 destroyed\./);

    const trail = await audit(key);
    const acquire = trail.find((a) => a.action === 'lock.acquire');
    assert.ok(acquire, 'the apply took the lock');
    assert.equal(acquire.detail['operation'], 'OperationTypeApply');
    assert.equal(acquire.detail['version'], tfVersion);
    assert.deepEqual(
      trail.map((a) => `${a.action} ${a.outcome}`),
      ['lock.acquire ok', ...trail.filter((a) => a.action === 'state.write').map(() => 'state.write ok'), 'lock.release ok'],
    );
    assert.ok(trail.some((a) => a.action === 'state.write'));
    assert.ok(trail.every((a) => a.lockId === acquire.lockId));

    const vs = await versions(key);
    assert.ok(vs.length >= 1);
    for (const v of vs) {
      assert.equal(v.operation, 'OperationTypeApply');
      assert.equal(v.lockId, acquire.lockId);
      assert.equal(v.forced, null);
    }
    const state = await storedState(key);
    assert.equal(state.version, 4);
    assert.equal(state.terraform_version, tfVersion);
    assert.equal(state.serial, vs.at(-1)!.serial);
    assert.equal(state.lineage, vs.at(-1)!.lineage);
    assert.deepEqual(instanceAddresses(state), EXPECTED_INSTANCES);
    assert.deepEqual(state.outputs['summary']!.value, { single: 'one', counted: ['counted-0', 'counted-1'], each: { a: 'each-a', b: 'each-b' } });
    for (const r_ of state.resources) assert.equal(r_.provider, 'provider["terraform.io/builtin/terraform"]');

    // On the wire: every write carried the lock ID; LOCK and UNLOCK bodies are byte-identical.
    const sent = wire(key, mark);
    const posts = sent.filter((e) => e.method === 'POST');
    assert.ok(posts.length >= 1);
    for (const p of posts) assert.equal(p.query.get('ID'), acquire.lockId);
    const lock = sent.find((e) => e.method === 'LOCK')!;
    const unlock = sent.find((e) => e.method === 'UNLOCK')!;
    assert.equal(unlock.body.toString(), lock.body.toString());
    // The lock info as Terraform marshals it: Go struct order, RFC 3339 (nano) UTC Created, Path "".
    const info = JSON.parse(lock.body.toString()) as Record<string, string>;
    assert.deepEqual(Object.keys(info), ['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path']);
    assert.equal(info['ID'], acquire.lockId);
    assert.match(info['ID']!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.deepEqual([info['Operation'], info['Info'], info['Version'], info['Path']], ['OperationTypeApply', '', tfVersion, '']);
    assert.match(info['Created']!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$/);
    // The state upload: 2-space-indented JSON with a trailing newline, stored and served byte for byte.
    const uploaded = posts.at(-1)!.body.toString();
    assert.equal(uploaded, JSON.stringify(JSON.parse(uploaded), null, 2) + '\n');
    assert.equal(await storedText(key), uploaded);
    assert.equal(posts.at(-1)!.headers['content-md5'], createHash('md5').update(posts.at(-1)!.body).digest('base64'));
  });

  test('3. plan: exit 0; the lock is taken (OperationTypePlan) and released, nothing written', async () => {
    const key = freshKey('plan');
    const ws = await applied(key);
    const before_ = await lastAuditId(key);
    const versionsBefore = (await versions(key)).length;
    const r = await terraformOk(ws, 0, 'plan', '-no-color');
    assert.match(r.stdout, /No changes\. Your infrastructure matches the configuration\./);
    const trail = await audit(key, before_);
    assert.deepEqual(trail.map((a) => `${a.action} ${a.outcome}`), ['lock.acquire ok', 'lock.release ok']);
    assert.equal(trail[0]!.detail['operation'], 'OperationTypePlan');
    assert.equal(trail[0]!.lockId, trail[1]!.lockId);
    assert.equal((await versions(key)).length, versionsBefore);
    assert.equal(await lockHeld(key), false);
  });

  test('4. lock contention: -lock-timeout=0s fails with the 423 as a lock error; -lock-timeout=30s waits and succeeds once the lock is released', async () => {
    const key = freshKey('contention');
    const ws = await applied(key);
    const holderId = 'c1c1c1c1-0000-4000-8000-000000000001';
    const holderBody = await takeForeignLock(key, holderId);

    const mark = proxy.log.length;
    const refused0 = await refusedLocks();
    const r = await terraformOk(ws, 1, 'plan', '-lock-timeout=0s', '-no-color');
    const err = flat(r.stderr);
    assert.match(err, /Error: Error acquiring the state lock/);
    assert.ok(err.includes(`Error message: HTTP remote state already locked: ID=${holderId} Lock Info:`), r.stderr);
    assert.ok(err.includes('Terraform acquires a state lock to protect the state from being written by multiple users at the same time.'), r.stderr);
    if (versionAtLeast(tfVersion, 1, 15)) {
      // ≥ 1.15 shows the holder's lock info, decoded from statelock's 423 body.
      assert.ok(err.includes(`ID: ${holderId}`), r.stderr);
      assert.ok(err.includes('Who: ci@runner-1'), r.stderr);
    } else {
      // 1.3–1.14 attach the *requester's own* lock info: the holder's ID is only in the first line.
      assert.ok(err.includes('Operation: OperationTypePlan'), r.stderr);
      assert.ok(err.includes(`Version: ${tfVersion}`), r.stderr);
      assert.ok(!err.includes('ci@runner-1'), 'terraform < 1.15 does not show who holds the lock');
      assert.ok(!err.includes(`ID: ${holderId}`));
    }
    assert.deepEqual(shape(wire(key, mark).filter((e) => e.method !== 'GET')), ['LOCK 423'], 'one attempt, answered 423, no UNLOCK');
    assert.equal(await refusedLocks(), refused0 + 1);
    assert.equal(await lockHeld(key), true);

    // Now wait for the lock: release it only once statelock has refused terraform's first LOCK.
    const mark2 = proxy.log.length;
    const refused1 = await refusedLocks();
    const waiting = startTerraform(ws, ['plan', '-lock-timeout=30s', '-no-color']);
    let done: RunResult;
    try {
      const deadline = Date.now() + 20_000;
      while ((await refusedLocks()) <= refused1) {
        if (waiting.proc.exitCode !== null) assert.fail(`terraform exited before its first LOCK was refused:\n${waiting.stdout()}\n${waiting.stderr()}`);
        assert.ok(Date.now() < deadline, 'terraform never sent a refused LOCK');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.equal(waiting.proc.exitCode, null, 'terraform is still waiting for the lock');
      const unlock = await rawRequest(api(`/state/${key}`), { method: 'UNLOCK', body: holderBody });
      assert.equal(unlock.status, 200, unlock.text);
      done = await waiting.done;
    } finally {
      if (waiting.proc.exitCode === null && waiting.proc.signalCode === null) waiting.proc.kill('SIGKILL');
    }
    assert.equal(done.code, 0, `${done.stdout}\n${done.stderr}`);
    assert.match(done.stdout, /Acquiring state lock\. This may take a few moments\.\.\./);
    assert.match(done.stdout, /No changes\./);

    // The retry re-sent the identical LOCK body (same ID, same Created) until it was granted.
    const locks = wire(key, mark2).filter((e) => e.method === 'LOCK');
    assert.ok(locks.length >= 2, shape(locks).join(', '));
    assert.deepEqual(locks.map((e) => e.status), [...locks.slice(0, -1).map(() => 423), 200]);
    assert.ok(locks.every((e) => e.body.equals(locks[0]!.body)));
    const trail = await audit(key);
    const last = trail.slice(-2);
    assert.deepEqual(last.map((a) => `${a.action} ${a.outcome} ${a.detail['operation']}`), ['lock.acquire ok OperationTypePlan', 'lock.release ok OperationTypePlan']);
    assert.equal(await lockHeld(key), false);
  });

  test('5. -lock=false apply while someone else holds the lock: state not saved (HTTP error: 423, errored.tfstate), stored state unchanged', async () => {
    const key = freshKey('nolock');
    const ws = await applied(key);
    writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig('changed-while-locked'));
    const holderId = 'c1c1c1c1-0000-4000-8000-000000000005';
    await takeForeignLock(key, holderId);
    const storedBefore = await storedText(key);
    const versionsBefore = await versions(key);
    const auditBefore = await lastAuditId(key);
    const mark = proxy.log.length;

    const r = await terraformOk(ws, 1, 'apply', '-auto-approve', '-lock=false', '-no-color');
    const err = flat(r.stderr);
    assert.ok(err.includes('Error: Failed to save state'), r.stderr);
    assert.ok(err.includes('Error saving state: HTTP error: 423'), r.stderr);
    assert.ok(err.includes('Error: Failed to persist state to backend'), r.stderr);
    assert.ok(err.includes('the state has been written to the file "errored.tfstate" in the current working directory'), r.stderr);
    assert.ok(existsSync(join(ws.dir, 'errored.tfstate')));
    const errored = JSON.parse(readFileSync(join(ws.dir, 'errored.tfstate'), 'utf8')) as StateV4;
    assert.equal(singleInput(errored), 'changed-while-locked');

    assert.equal(await storedText(key), storedBefore);
    assert.deepEqual(await versions(key), versionsBefore);
    const sent = wire(key, mark);
    assert.ok(!sent.some((e) => e.method === 'LOCK' || e.method === 'UNLOCK'), '-lock=false sends no LOCK/UNLOCK');
    const posts = sent.filter((e) => e.method === 'POST');
    assert.ok(posts.length >= 1 && posts.every((e) => !e.query.has('ID') && e.status === 423), shape(posts).join(', '));
    const trail = await audit(key, auditBefore);
    assert.ok(trail.length >= 1 && trail.every((a) => a.action === 'state.write.refused' && a.detail['code'] === 'STATE_LOCKED_NO_ID'), JSON.stringify(trail));
    assert.equal(await lockHeld(key), true, "the holder's lock is untouched");
  });

  test('6. force-unlock -force of a lock held by someone else: exit 0, empty-body UNLOCK audited as lock.force-unlock', async () => {
    const key = freshKey('force-unlock');
    const ws = await applied(key);
    const holderId = 'c1c1c1c1-0000-4000-8000-000000000006';
    await takeForeignLock(key, holderId);
    const auditBefore = await lastAuditId(key);
    const mark = proxy.log.length;

    const r = await terraformOk(ws, 0, 'force-unlock', '-force', '-no-color', holderId);
    assert.match(r.stdout, /Terraform state has been successfully unlocked!/);
    assert.match(flat(r.stdout), /The state has been unlocked, and Terraform commands should now be able to obtain a new lock on the remote state\./);
    assert.equal(await lockHeld(key), false);

    const trail = await audit(key, auditBefore);
    assert.deepEqual(trail.map((a) => `${a.action} ${a.outcome}`), ['lock.force-unlock ok']);
    assert.equal(trail[0]!.lockId, holderId);
    assert.equal(trail[0]!.detail['how'], 'empty UNLOCK body (terraform force-unlock)');
    assert.equal(trail[0]!.detail['who'], 'ci@runner-1');

    // What terraform sent: one UNLOCK with an empty body; the ID typed on the command line is not sent.
    const unlocks = wire(key, mark).filter((e) => e.method === 'UNLOCK');
    assert.equal(unlocks.length, 1);
    const u = unlocks[0]!;
    assert.equal(u.body.length, 0);
    assert.equal(u.url, `/state/${key}`);
    assert.equal(u.headers['content-type'], 'application/json');
    // MD5 of zero bytes (d41d8cd98f00b204e9800998ecf8427e), base64.
    assert.equal(u.headers['content-md5'], '1B2M2Y8AsgTpgAmY7PhCfg==');
    assert.equal(u.status, 200);
  });

  test('7. state pull returns the state; state push of an older copy: refused client-side without -force, a forced overwrite (state-push) with it', async () => {
    const key = freshKey('push');
    const ws = await applied(key);
    const pulled = await terraformOk(ws, 0, 'state', 'pull');
    const old = JSON.parse(pulled.stdout) as StateV4;
    const stored = await storedState(key);
    assert.equal(old.serial, stored.serial);
    assert.equal(old.lineage, stored.lineage);
    assert.deepEqual(instanceAddresses(old), EXPECTED_INSTANCES);
    writeFileSync(join(ws.dir, 'old.tfstate'), pulled.stdout);

    writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig('newer'));
    await terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color');
    const newer = await storedState(key);
    assert.ok(newer.serial > old.serial);
    const versionsBefore = await versions(key);
    const auditBefore = await lastAuditId(key);

    const refused = await terraformOk(ws, 1, 'state', 'push', '-no-color', 'old.tfstate');
    assert.ok(flat(refused.stderr).includes(`Failed to write state: cannot import state with serial ${old.serial} over newer state with serial ${newer.serial}`), refused.stderr);
    assert.deepEqual(await versions(key), versionsBefore, 'nothing was sent to be stored');
    const refusedTrail = await audit(key, auditBefore);
    assert.deepEqual(refusedTrail.map((a) => `${a.action} ${a.detail['operation'] ?? ''}`), ['lock.acquire state-push', 'lock.release state-push']);

    const auditBeforeForce = await lastAuditId(key);
    await terraformOk(ws, 0, 'state', 'push', '-force', '-no-color', 'old.tfstate');
    const after_ = await versions(key);
    assert.equal(after_.length, versionsBefore.length + 1);
    const v = after_.at(-1)!;
    assert.equal(v.operation, 'state-push');
    assert.notEqual(v.forced, null, 'recorded as a forced overwrite');
    // Terraform uploads the pushed state with serial = its own serial + 1 (here: the same serial as the
    // newer state, different content) and its own lineage.
    assert.equal(v.serial, old.serial + 1);
    assert.equal(v.forced, v.serial === newer.serial ? 'serial-same-content-differs' : 'serial-lower');
    assert.equal(v.lineage, old.lineage);
    const now = await storedState(key);
    assert.equal(singleInput(now), 'one');
    const forcedTrail = await audit(key, auditBeforeForce);
    assert.deepEqual(forcedTrail.map((a) => a.action), ['lock.acquire', 'state.write.forced', 'lock.release']);
    // The overwritten version is kept.
    assert.ok(after_.some((x) => x.seq === versionsBefore.at(-1)!.seq));
  });

  test('8. a newer state written behind terraform\'s back (serial + 5) is read first; the next apply builds on it and serials only increase', async () => {
    const key = freshKey('behind');
    const ws = await applied(key);
    const original = await storedState(key);
    const tampered = JSON.parse(JSON.stringify(original)) as StateV4;
    tampered.serial = original.serial + 5;
    const single = tampered.resources.find((x) => x.name === 'single')!.instances[0]!;
    assert.equal(dynamicValue(single.attributes['input']), 'one');
    single.attributes['input'] = { value: 'behind-terraforms-back', type: 'string' };
    single.attributes['output'] = { value: 'behind-terraforms-back', type: 'string' };
    const post = await rawRequest(api(`/state/${key}`), { method: 'POST', body: JSON.stringify(tampered, null, 2) + '\n' });
    assert.equal(post.status, 200, post.text);

    writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig('three'));
    const r = await terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color');
    // The plan starts from the state statelock holds, not from anything terraform remembered.
    assert.match(r.stdout, /input\s+= "behind-terraforms-back" -> "three"/);
    assert.match(r.stdout, /Apply complete! Resources: 0 added, 1 changed, 0 destroyed\./);

    const vs = await versions(key);
    const serials = vs.map((v) => v.serial);
    for (let i = 1; i < serials.length; i++) assert.ok(serials[i]! > serials[i - 1]!, `serials only increase: ${serials.join(', ')}`);
    assert.equal(vs.at(-1)!.serial, original.serial + 6);
    assert.equal(vs.at(-1)!.operation, 'OperationTypeApply');
    assert.ok(vs.every((v) => v.forced === null && v.lineage === original.lineage));
    const now = await storedState(key);
    assert.equal(singleInput(now), 'three');
    assert.ok(!(await audit(key)).some((a) => a.action === 'state.write.refused'));
  });

  /** A directory with a local-backend apply (terraform.tfstate), then the http backend block added. */
  const localThenHttp = async (key: string) => {
    const ws = newWorkspace();
    writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig('local'));
    await terraformOk(ws, 0, 'init', '-no-color');
    await terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color');
    const local = JSON.parse(readFileSync(join(ws.dir, 'terraform.tfstate'), 'utf8')) as StateV4;
    assert.deepEqual(instanceAddresses(local), EXPECTED_INSTANCES);
    writeFileSync(join(ws.dir, 'backend.tf'), backendBlock(address(key)));
    return { ws, local };
  };

  test('9a. init -migrate-state -force-copy from a local terraform.tfstate into an empty key', async () => {
    const key = freshKey('migrate-empty');
    const { ws, local } = await localThenHttp(key);
    const r = await terraformOk(ws, 0, 'init', '-migrate-state', '-force-copy', '-no-color');
    assert.match(r.stdout, /Successfully configured the backend "http"!/);
    const vs = await versions(key);
    assert.equal(vs.length, 1);
    assert.equal(vs[0]!.operation, 'migration destination state');
    assert.equal(vs[0]!.forced, null);
    // Into an empty key Terraform starts a new lineage at serial 1 (it does not keep the local one).
    assert.equal(vs[0]!.serial, 1);
    assert.notEqual(vs[0]!.lineage, local.lineage);
    const stored = await storedState(key);
    assert.deepEqual(instanceAddresses(stored), EXPECTED_INSTANCES);
    assert.deepEqual(stored.outputs, local.outputs);
    assert.deepEqual((await audit(key)).map((a) => `${a.action} ${a.outcome}`), ['lock.acquire ok', 'state.write ok', 'lock.release ok']);
    assert.equal((await audit(key))[0]!.detail['operation'], 'migration destination state');
    // The workspace now works against statelock.
    const plan = await terraformOk(ws, 0, 'plan', '-no-color');
    assert.match(plan.stdout, /No changes\./);
  });

  test('9b. init -migrate-state -force-copy into a non-empty key: a forced overwrite under "migration destination state"', async () => {
    const key = freshKey('migrate-nonempty');
    const pre = await rawRequest(api(`/state/${key}`), { method: 'POST', body: stateBody(7, 'pre-existing-lineage') });
    assert.equal(pre.status, 200, pre.text);
    const { ws, local } = await localThenHttp(key);
    await terraformOk(ws, 0, 'init', '-migrate-state', '-force-copy', '-no-color');
    const vs = await versions(key);
    assert.equal(vs.length, 2, 'the overwritten version is kept');
    const v = vs[1]!;
    assert.equal(v.operation, 'migration destination state');
    assert.equal(v.forced, 'lineage-changed');
    // Into a non-empty key Terraform keeps the source's lineage, with the source serial + 1.
    assert.equal(v.lineage, local.lineage);
    assert.equal(v.serial, local.serial + 1);
    const stored = await storedState(key);
    assert.deepEqual(instanceAddresses(stored), EXPECTED_INSTANCES);
    const trail = await audit(key);
    assert.deepEqual(trail.slice(-3).map((a) => `${a.action} ${a.outcome}`), ['lock.acquire ok', 'state.write.forced ok', 'lock.release ok']);
    assert.equal(await lockHeld(key), false);
  });

  test('9c. init -migrate-state -force-copy from one statelock key to another: the source is locked ("migration source state") and left untouched', async () => {
    const from = freshKey('migrate-from');
    const to = freshKey('migrate-to');
    const ws = await applied(from);
    const sourceBefore = await storedText(from);
    const sourceVersions = await versions(from);
    const auditBefore = await lastAuditId(from);
    writeFileSync(join(ws.dir, 'backend.tf'), backendBlock(address(to)));
    const r = await terraformOk(ws, 0, 'init', '-migrate-state', '-force-copy', '-no-color');
    assert.match(r.stdout, /Backend configuration changed!/);
    assert.deepEqual(
      (await audit(from, auditBefore)).map((a) => `${a.action} ${a.detail['operation']}`),
      ['lock.acquire migration source state', 'lock.release migration source state'],
    );
    assert.equal(await storedText(from), sourceBefore);
    assert.deepEqual(await versions(from), sourceVersions);
    const vs = await versions(to);
    assert.deepEqual(vs.map((v) => [v.serial, v.operation, v.forced]), [[1, 'migration destination state', null]]);
    assert.deepEqual(instanceAddresses(await storedState(to)), EXPECTED_INSTANCES);
    assert.equal(await lockHeld(from), false);
    assert.equal(await lockHeld(to), false);
  });

  test('the requests of the real binary match what test/support/terraform-client.ts sends for this version', async (t) => {
    // The same flows, each on its own key pair: real terraform through the proxy, the emulation (told
    // it is this version) straight at the server. Each request is compared as
    // `METHOD[?ID] status | header names in wire order`.
    const realKey = freshKey('seq-real');
    const emuKey = freshKey('seq-emu');
    const emuAddress = `${server.url}/state/${emuKey}`;
    const emu = new HttpBackendClient({ address: emuAddress, lockAddress: emuAddress, unlockAddress: emuAddress }, { version: tfVersion, who: 'emu@test' });
    const realShape = (from: number, key = realKey) => wire(key, from).map((e) => `${e.method}${e.query.has('ID') ? '?ID' : ''} ${e.status} | ${e.rawHeaderNames.join(' ')}`);
    const emuShape = (c: HttpBackendClient, from: number) =>
      c.log.slice(from).map((e) => `${e.method}${new URL(e.url).searchParams.has('ID') ? '?ID' : ''} ${e.status} | ${e.rawRequestHeaders.map(([k]) => k).join(' ')}`);
    const real: Record<string, string[]> = {};
    const emulated: Record<string, string[]> = {};
    const flow = async (name: string, runReal: () => Promise<unknown>, runEmu: () => Promise<unknown>, key = realKey, client = emu) => {
      const mark = proxy.log.length;
      await runReal();
      real[name] = realShape(mark, key);
      const emark = client.log.length;
      await runEmu();
      emulated[name] = emuShape(client, emark);
    };
    const emuState = (serial: number, input: string) =>
      Buffer.from(
        stateBody(serial, 'ignored', {
          resources: [{ mode: 'managed', type: 'terraform_data', name: 'single', provider: 'provider["terraform.io/builtin/terraform"]', instances: [{ schema_version: 0, attributes: { id: 'x', input: { value: input, type: 'string' } } }] }],
        }),
      );
    const foreignId = 'c1c1c1c1-0000-4000-8000-00000000000f';
    try {
      let ws!: Workspace;
      await flow('init (empty key)', async () => (ws = await initialised(realKey)), () => emu.init());
      await flow('apply (first)', () => terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color'), () => emu.apply([emuState(1, 'one')]));
      const oldState = (await terraformOk(ws, 0, 'state', 'pull')).stdout;
      writeFileSync(join(ws.dir, 'old.tfstate'), oldState);
      const emuOld = (await rawRequest(emuAddress)).body;
      await flow('plan', () => terraformOk(ws, 0, 'plan', '-no-color'), () => emu.plan());
      writeFileSync(join(ws.dir, 'main.tf'), resourcesConfig('two'));
      await flow('apply (a change)', () => terraformOk(ws, 0, 'apply', '-auto-approve', '-no-color'), () => emu.apply([emuState(1, 'two')]));
      await flow('state pull', () => terraformOk(ws, 0, 'state', 'pull'), () => emu.newProcess().get());

      await takeForeignLock(realKey, foreignId);
      const emuHolder = lockBody(foreignId, 'OperationTypeApply', 'ci@runner-1', new Date().toISOString());
      assert.equal((await rawRequest(emuAddress, { method: 'LOCK', body: emuHolder })).status, 200);
      let emuLockError: LockError | undefined;
      let realLockError = '';
      await flow(
        'plan -lock-timeout=0s while locked',
        async () => (realLockError = (await terraformOk(ws, 1, 'plan', '-lock-timeout=0s', '-no-color')).stderr),
        () => emu.plan().then(() => assert.fail('the emulated plan got the lock'), (e: unknown) => void (emuLockError = e as LockError)),
      );
      assert.ok(emuLockError instanceof LockError, String(emuLockError));
      // The lock error's text, apart from the lock info values that differ run to run.
      const normalise = (text: string, ownId: string) =>
        flat(text)
          .replaceAll(ownId, '<own id>')
          .replace(/Created: .*? UTC/, 'Created: <time>')
          .replace(/Who: \S*/, 'Who: <who>');
      const realOwnId = /Lock Info: ID: (\S+)/.exec(flat(realLockError))?.[1] ?? '';
      const realMessage = /Error message: (.*?) Terraform acquires a state lock/.exec(flat(realLockError))?.[1] ?? '';
      assert.equal(normalise(realMessage, realOwnId).trim(), normalise(emuLockError.goErrorText(), emuLockError.holder?.ID ?? '').trim());
      await flow(
        'force-unlock -force (held by someone else)',
        () => terraformOk(ws, 0, 'force-unlock', '-force', '-no-color', foreignId),
        () => emu.forceUnlock(foreignId),
      );
      await flow(
        'force-unlock -force (nothing held)',
        () => terraformOk(ws, 0, 'force-unlock', '-force', '-no-color', foreignId),
        () => emu.forceUnlock(foreignId),
      );

      await flow(
        'state push of an older state (refused client-side)',
        () => terraformOk(ws, 1, 'state', 'push', '-no-color', 'old.tfstate'),
        () => emu.statePush(emuOld).then(() => assert.fail('the emulated push was accepted'), (e: unknown) => assert.ok(e instanceof ImportError, String(e))),
      );
      await flow('state push -force of an older state', () => terraformOk(ws, 0, 'state', 'push', '-force', '-no-color', 'old.tfstate'), () => emu.statePush(emuOld, { force: true }));

      for (const [name, prefill] of [['init -migrate-state -force-copy (empty key)', false], ['init -migrate-state -force-copy (non-empty key)', true]] as const) {
        const mKey = freshKey('seq-migrate-real');
        const eKey = freshKey('seq-migrate-emu');
        if (prefill) {
          for (const k of [mKey, eKey]) assert.equal((await rawRequest(api(`/state/${k}`), { method: 'POST', body: stateBody(7, 'pre-existing-lineage') })).status, 200);
        }
        const { ws: mws } = await localThenHttp(mKey);
        const source = readFileSync(join(mws.dir, 'terraform.tfstate'));
        const eAddress = `${server.url}/state/${eKey}`;
        const mEmu = new HttpBackendClient({ address: eAddress, lockAddress: eAddress, unlockAddress: eAddress }, { version: tfVersion, who: 'emu@test' });
        try {
          // The emulation's migrateInto() is the migration alone; a real `init -migrate-state` then does
          // what every init does (a GET to read the state's provider requirements): migrateInto + init.
          await flow(
            name,
            () => terraformOk(mws, 0, 'init', '-migrate-state', '-force-copy', '-no-color'),
            async () => {
              await mEmu.migrateInto(source);
              await mEmu.init();
            },
            mKey,
            mEmu,
          );
        } finally {
          mEmu.close();
        }
        // Both ended in the same place as far as statelock's rules are concerned.
        const [rv, ev] = [(await versions(mKey)).at(-1)!, (await versions(eKey)).at(-1)!];
        assert.deepEqual([ev.operation, ev.forced, ev.serial], [rv.operation, rv.forced, rv.serial], name);
      }

      for (const [name, seq] of Object.entries(real)) t.diagnostic(`terraform ${tfVersion} ${name}: ${seq.map((x) => x.split(' |')[0]).join(', ')}`);
      assert.deepEqual(real, emulated);
    } finally {
      emu.close();
    }
  });
});
