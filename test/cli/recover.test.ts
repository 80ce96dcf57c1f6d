import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { runAnswering, runCli } from '../support/cli.js';
import { rawRequest } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient, makeState, newLineage, sampleResources } from '../support/terraform-client.js';
import { ciRunnerHint, holderGate, sameHost } from '../../src/cli/commands/recover.js';
import type { LockView } from '../../src/cli/lock-view.js';

/**
 * `statelock recover <key>`: the lesson's seven-step recovery as one guided flow, run as the real binary
 * against a real server process, after a "crashed apply" replayed as Terraform sends it.
 */

const OTHER_HOST_WHO = 'engineer@MacBook-Pro.local';
const STEP_HEADERS = [
  'Step 1/7 — Is the holder still running?',
  'Step 2/7 — The lock entry and its age',
  'Step 3/7 — Back up the current state',
  'Step 4/7 — Force-unlock lock ID ',
  'Step 5/7 — Sync the state with what really exists',
  'Step 6/7 — Check what is left to do',
  'Step 7/7 — Apply the remaining changes',
];

interface AuditPage {
  items: Array<{ action: string; lockId: string | null; outcome: string }>;
}

/** Writes an executable shell script into `dir` (created by the caller) and returns its path. */
function script(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Indexes of each header in `out`, asserting every one is there, in order. */
function assertHeadersInOrder(out: string, headers: string[]): void {
  let from = 0;
  for (const h of headers) {
    const at = out.indexOf(`\n${h}`, from);
    assert.ok(at >= 0, `header "${h}" missing or out of order in:\n${out}`);
    from = at + 1;
  }
}

describe('statelock recover', () => {
  let server: RunningServer;
  let n = 0;
  const clients: HttpBackendClient[] = [];
  before(async () => (server = await startServer()));
  after(async () => {
    for (const c of clients) c.close();
    await server.stop();
  });

  function newClient(key: string, who: string): HttpBackendClient {
    const address = `${server.url}/state/${key}`;
    const client = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 50 }, { flavor: 'terraform', who });
    clients.push(client);
    return client;
  }

  /**
   * `terraform apply` killed mid-run: LOCK, two intermediate state writes under `?ID=`, no UNLOCK.
   * Resolves with the key, the lock ID and the bytes of the last write (what the server now stores).
   */
  async function crashedApply(who = OTHER_HOST_WHO, opts: { write?: boolean } = {}): Promise<{ key: string; slug: string; id: string; client: HttpBackendClient; stored: Buffer | null }> {
    const k = ++n;
    const key = `cli/recover/k${k}/terraform.tfstate`;
    const client = newClient(key, who);
    const id = await client.lock('OperationTypeApply');
    let stored: Buffer | null = null;
    if (opts.write !== false) {
      const lineage = newLineage();
      await client.write(makeState({ serial: 1, lineage }));
      stored = makeState({ serial: 2, lineage, resources: sampleResources() });
      await client.write(stored);
    }
    return { key, slug: `cli-recover-k${k}-terraform.tfstate`, id, client, stored };
  }
  const heldId = async (key: string): Promise<string | null> => {
    const res = await rawRequest(`${server.url}/api/v1/locks/${key}`);
    if (res.status === 404) return null;
    assert.equal(res.status, 200, res.text);
    return res.json<{ info: { ID: string } }>().info.ID;
  };
  const forceUnlocks = async (key: string) => (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}&action=lock.force-unlock`)).json<AuditPage>().items;
  const recover = (args: string[], opts: { input?: string; env?: Record<string, string>; cwd?: string } = {}) => runCli(['--server', server.url, 'recover', ...args], opts);

  test('a crashed apply, answered yes: every step, a byte-exact backup, the lock released, the next commands printed', async () => {
    const { key, slug, id, stored } = await crashedApply();
    const dir = tempDir('statelock-recover-');
    const r = await recover([key, '--dir', dir], { input: 'yes\n' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertHeadersInOrder(r.stdout, STEP_HEADERS);

    // Step 1: the verdict is unknown, and says that it cannot be proven.
    assert.match(r.stdout, /Liveness verdict: unknown/);
    assert.match(r.stdout, /Warning: statelock cannot prove that the holder is dead/);
    // Step 2: the entry and its age, and the ID step 4 will use.
    assert.match(r.stdout, new RegExp(`^    ID: +${id}$`, 'm'));
    assert.match(r.stdout, /^ {4}Age: +\S+ \(acquired \S+\)$/m);
    assert.match(r.stdout, /^ {4}Last activity: +\S+ ago/m);
    assert.ok(r.stdout.includes(`Step 4/7 — Force-unlock lock ID ${id}`));

    // Step 3: one file, named as the lesson names it (with the key), byte for byte the stored state.
    const files = readdirSync(dir);
    assert.equal(files.length, 1, `files: ${files.join(', ')}`);
    assert.match(files[0]!, new RegExp(`^state-backup-${slug.replace(/\./g, '\\.')}-\\d{8}-\\d{6}\\.json$`));
    const backup = readFileSync(join(dir, files[0]!));
    const onServer = (await rawRequest(`${server.url}/state/${key}`)).body;
    assert.ok(backup.equals(onServer), 'backup differs from the stored state');
    assert.ok(backup.equals(stored!), 'backup differs from the last state Terraform wrote');
    assert.ok(r.stdout.includes(`Saved serial 2 (${backup.length} bytes) to ${join(dir, files[0]!)}`), r.stdout);

    // Step 4: Terraform's prompt, then the lock is gone, audited as a force-unlock of that ID.
    assert.match(r.stderr, /^Do you really want to force-unlock\?\n/);
    assert.match(r.stdout, /statelock state has been successfully unlocked!/);
    assert.equal(await heldId(key), null);
    assert.deepEqual(
      (await forceUnlocks(key)).map((a) => [a.lockId, a.outcome]),
      [[id, 'ok']],
    );

    // Steps 5–7: the exact commands, in order, and why.
    const at = (s: string) => r.stdout.indexOf(`\n  ${s}\n`);
    assert.ok(at('terraform apply -refresh-only') > 0 && at('terraform apply -refresh-only') < at('terraform plan') && at('terraform plan') < at('terraform apply'), r.stdout);
    assert.match(r.stdout, /the state may be partial/);
  });

  test('answered no: "force-unlock cancelled.", exit 1, the lock still held — and the backup was made', async () => {
    const { key, id, stored } = await crashedApply();
    const dir = tempDir('statelock-recover-');
    const r = await recover([key, '--dir', dir], { input: 'no\n' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^force-unlock cancelled\.$/m);
    assert.match(r.stderr, /recovery stopped at step 4/);
    assertHeadersInOrder(r.stdout, STEP_HEADERS.slice(0, 4));
    assert.doesNotMatch(r.stdout, /Step 5\/7|successfully unlocked/);
    assert.equal(await heldId(key), id);
    assert.deepEqual(await forceUnlocks(key), []);
    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.ok(readFileSync(join(dir, files[0]!)).equals(stored!));
  });

  test('empty stdin (end of input) cancels like a "no"', async () => {
    const { key, id } = await crashedApply();
    const r = await recover([key, '--dir', tempDir('statelock-recover-')], { input: '' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^force-unlock cancelled\.$/m);
    assert.equal(await heldId(key), id);
  });

  test('--yes skips the prompt; the backup goes to the current directory without --dir', async () => {
    const { key, id, stored } = await crashedApply();
    const cwd = tempDir('statelock-recover-cwd-');
    const r = await recover([key, '--yes'], { cwd, env: { PATH: tempDir('statelock-empty-path-') } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, /Do you really want/);
    assert.equal(await heldId(key), null);
    assert.deepEqual(
      (await forceUnlocks(key)).map((a) => a.lockId),
      [id],
    );
    const files = readdirSync(cwd);
    assert.equal(files.length, 1);
    assert.ok(readFileSync(join(cwd, files[0]!)).equals(stored!));
  });

  test('a locked key without any stored state: nothing to back up, the flow continues', async () => {
    const { key } = await crashedApply(OTHER_HOST_WHO, { write: false });
    const dir = tempDir('statelock-recover-');
    const r = await recover([key, '--dir', dir, '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /has no stored state: there is nothing to back up\. Continuing\./);
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(await heldId(key), null);
  });

  test('a backup that cannot be written stops the flow at step 3: exit 1, nothing unlocked', async () => {
    const { key, id } = await crashedApply();
    const notADir = join(tempDir('statelock-recover-'), 'a-file');
    writeFileSync(notADir, 'not a directory');
    const r = await recover([key, '--dir', notADir, '--yes']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /recovery stopped at step 3: the backup could not be written/);
    assert.doesNotMatch(r.stdout, /Step 4\/7/);
    assert.equal(await heldId(key), id);
    assert.deepEqual(await forceUnlocks(key), []);
  });

  test('no lock held on the key: exit 4 and a clear message', async () => {
    const key = `cli/recover/free${++n}/terraform.tfstate`;
    const dir = tempDir('statelock-recover-');
    const r = await recover([key, '--dir', dir], { input: 'yes\n' });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.equal(r.stderr, `statelock: no lock is held on ${key}: there is nothing to recover.\n`);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('missing or extra arguments, or an unknown option: exit 2', async () => {
    for (const args of [[], ['a/terraform.tfstate', 'b/terraform.tfstate'], ['a/terraform.tfstate', '--bogus'], ['a/terraform.tfstate', '--dir']]) {
      const r = await recover(args);
      assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.stderr}`);
    }
  });

  test('a Who that looks like a CI runner: step 1 says to check that the pipeline job has finished', async () => {
    const { key, id } = await crashedApply('runner@fv-az123-456');
    const r = await recover([key, '--dir', tempDir('statelock-recover-')], { input: 'no\n' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /Who "runner@fv-az123-456" looks like a CI runner: check that the pipeline job has finished/);
    assert.equal(await heldId(key), id);
  });

  test('the lock changes holder between step 2 and the force-unlock: exit 3, the new holder shown and still holding', async () => {
    const { key, id, client } = await crashedApply();
    let newId = '';
    const r = await runAnswering(['--server', server.url, 'recover', key, '--dir', tempDir('statelock-recover-')], 'yes\n', async () => {
      await client.unlock();
      newId = await newClient(key, 'colleague@build-07').lock('OperationTypePlan');
    });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.ok(r.stderr.includes(`recovery stopped at step 4: the lock on ${key} changed holder since step 2: it is now held by ID "${newId}", not "${id}"`), r.stderr);
    assert.match(r.stderr, new RegExp(`Lock Info:\\n  ID: +${newId}\\n`));
    assert.doesNotMatch(r.stdout, /successfully unlocked|Step 5\/7/);
    assert.equal(await heldId(key), newId);
  });

  describe('with a local process named terraform running', () => {
    let proc: ChildProcess;
    before(async () => {
      const bin = tempDir('statelock-fake-tf-');
      // Not `exec sleep`: the shell must stay, under the script's name (its /proc/<pid>/comm is "terraform").
      const path = script(bin, 'terraform', 'sleep 120');
      proc = spawn(path, ['apply'], { stdio: 'ignore', detached: true });
      await new Promise<void>((resolve, reject) => {
        proc.once('spawn', resolve);
        proc.once('error', reject);
      });
    });
    after(() => {
      // Its whole process group: the shell and its sleep.
      if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) process.kill(-proc.pid, 'SIGKILL');
    });

    test('precondition: the kernel names the process "terraform"', () => {
      assert.equal(readFileSync(`/proc/${proc.pid}/comm`, 'utf8'), 'terraform\n');
    });

    test("and the lock taken on this machine: gate 1 fails, exit 3, the PID listed, no backup, the lock still held", async () => {
      const { key, id } = await crashedApply(`${userInfo().username}@${hostname()}`);
      const dir = tempDir('statelock-recover-');
      const r = await recover([key, '--dir', dir], { input: 'yes\n' });
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^ {4}PID ${proc.pid} +/bin/sh \\S+/terraform apply$`, 'm'));
      assert.match(r.stdout, /Stop: \d+ terraform\/tofu process(es)? running on this machine/);
      assert.match(r.stderr, /recovery stopped at step 1: a terraform or tofu process is running on this machine/);
      assert.ok(r.stderr.includes(`PID ${proc.pid}`) || r.stderr.includes(`, ${proc.pid}`), r.stderr);
      assert.doesNotMatch(r.stdout, /Step 2\/7/);
      assert.doesNotMatch(r.stderr, /Do you really want/);
      assert.deepEqual(readdirSync(dir), []);
      assert.equal(await heldId(key), id);
    });

    test('and the lock taken on another machine: the process is reported, the flow goes on', async () => {
      const { key, id } = await crashedApply(OTHER_HOST_WHO);
      const r = await recover([key, '--dir', tempDir('statelock-recover-')], { input: 'no\n' });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^ {4}PID ${proc.pid} +/bin/sh \\S+/terraform apply$`, 'm'));
      assert.match(r.stdout, /the lock was taken on MacBook-Pro\.local, another machine, so none of them holds it/);
      assertHeadersInOrder(r.stdout, STEP_HEADERS.slice(0, 4));
      assert.match(r.stderr, /^force-unlock cancelled\.$/m);
      assert.equal(await heldId(key), id);
    });
  });

  describe('--run-terraform', () => {
    let bin: string;
    let log: string;
    before(() => {
      bin = tempDir('statelock-fake-tf-');
      log = join(tempDir('statelock-fake-tf-log-'), 'argv.log');
      // Records its working directory and arguments; fails `plan` when FAKE_TF_FAIL_PLAN is set.
      script(bin, 'terraform', `printf '%s|%s\\n' "$PWD" "$*" >> "$FAKE_TF_LOG"\nif [ "$1" = plan ] && [ -n "$FAKE_TF_FAIL_PLAN" ]; then exit 2; fi\nexit 0`);
    });
    const runs = () => (existsSync(log) ? readFileSync(log, 'utf8').trimEnd().split('\n') : []);

    test('runs apply -refresh-only, plan, apply in order, in the current directory, with the terraform found on PATH', async () => {
      writeFileSync(log, '');
      const { key } = await crashedApply();
      const cwd = tempDir('statelock-workdir-');
      const r = await recover([key, '--dir', tempDir('statelock-recover-'), '--run-terraform'], { input: 'yes\n', cwd, env: { PATH: `${bin}:${process.env.PATH ?? ''}`, FAKE_TF_LOG: log } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(r.stdout.includes(`--run-terraform: running them with ${join(bin, 'terraform')}`), r.stdout);
      assert.deepEqual(runs(), [`${cwd}|apply -refresh-only`, `${cwd}|plan`, `${cwd}|apply`]);
      assertHeadersInOrder(r.stdout, STEP_HEADERS);
      assert.match(r.stdout, /terraform apply exited with 0\.\n\nRecovery done/);
      assert.equal(await heldId(key), null);
    });

    test('stops at the first command that fails: exit 1, the rest not run and named', async () => {
      writeFileSync(log, '');
      const { key } = await crashedApply();
      const cwd = tempDir('statelock-workdir-');
      const r = await recover([key, '--dir', tempDir('statelock-recover-'), '--run-terraform', '--yes'], { cwd, env: { PATH: `${bin}:${process.env.PATH ?? ''}`, FAKE_TF_LOG: log, FAKE_TF_FAIL_PLAN: '1' } });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.deepEqual(runs(), [`${cwd}|apply -refresh-only`, `${cwd}|plan`]);
      assert.match(r.stderr, /recovery stopped at step 6: terraform plan exited with 2\. The lock is released\./);
      assert.match(r.stderr, /run terraform plan, then terraform apply yourself/);
      assert.doesNotMatch(r.stdout, /Step 7\/7/);
    });

    test('without terraform or tofu on PATH: says so, prints the commands, exit 0', async () => {
      const { key } = await crashedApply();
      const r = await recover([key, '--dir', tempDir('statelock-recover-'), '--run-terraform', '--yes'], { env: { PATH: tempDir('statelock-empty-path-') } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /--run-terraform: no terraform or tofu binary on PATH; run the commands below yourself/);
      assert.match(r.stdout, /\n {2}terraform apply -refresh-only\n/);
      assert.doesNotMatch(r.stdout, /Running /);
      assert.equal(await heldId(key), null);
    });
  });
});

/** Step 1's gate as a pure function: the verdicts the server cannot produce yet, and the host and CI rules. */
describe('recover step 1 (holderGate)', () => {
  const lock = (verdict: LockView['verdict'], who = 'alice@build-07', info = ''): LockView => ({
    key: 'k/terraform.tfstate',
    sessionId: null,
    holds: ['http'],
    info: { ID: 'id-1', Operation: 'OperationTypeApply', Info: info, Who: who, Version: '1.15.0', Created: '2026-01-01T00:00:00Z', Path: '' },
    acquiredAt: '2026-01-01T00:00:00.000Z',
    ageSeconds: 60,
    lastActivityAt: '2026-01-01T00:00:30.000Z',
    clientAddr: '127.0.0.1',
    userAgent: 'Go-http-client/1.1',
    verdict,
    evidence: { reason: 'test evidence' },
    idleSeconds: 30,
    stale: false,
  });
  const now = Date.parse('2026-01-01T00:01:00.000Z');
  const none = { source: '/proc' as const, processes: [] };
  const one = { source: '/proc' as const, processes: [{ pid: 4242, name: 'terraform', commandLine: 'terraform apply' }] };

  test('alive: fails, "the holder is alive; do not force-unlock"', () => {
    const g = holderGate(lock('alive'), none, 'laptop', now);
    assert.equal(g.failure, 'the holder is alive; do not force-unlock');
    assert.ok(g.findings.some((f) => f.level === 'stop'));
  });

  test('dead: passes without a warning; unknown: passes with the "cannot prove" warning', () => {
    const dead = holderGate(lock('dead'), none, 'laptop', now);
    assert.equal(dead.failure, null);
    assert.ok(dead.findings.every((f) => f.level === 'info'), JSON.stringify(dead.findings));
    const unknown = holderGate(lock('unknown'), none, 'laptop', now);
    assert.equal(unknown.failure, null);
    assert.ok(unknown.findings.some((f) => f.level === 'warn' && f.text.includes('cannot prove') && f.text.includes('30s ago')));
  });

  test('local terraform processes fail the gate on the lock\'s host, or when Who names no host; elsewhere they are reported', () => {
    assert.match(holderGate(lock('dead', 'alice@build-07'), one, 'build-07', now).failure ?? '', /PID 4242/);
    assert.match(holderGate(lock('dead', 'alice@BUILD-07.corp.example'), one, 'build-07', now).failure ?? '', /PID 4242/);
    assert.match(holderGate(lock('dead', 'alice'), one, 'build-07', now).failure ?? '', /PID 4242/);
    const elsewhere = holderGate(lock('dead', 'alice@laptop'), one, 'build-07', now);
    assert.equal(elsewhere.failure, null);
    assert.ok(elsewhere.findings.some((f) => f.text.includes('PID 4242')));
  });

  test('a process list that cannot be read is a warning, not a pass in silence', () => {
    const g = holderGate(lock('dead'), { source: null, processes: [] }, 'laptop', now);
    assert.equal(g.failure, null);
    assert.ok(g.findings.some((f) => f.level === 'warn' && f.text.includes('pgrep')));
  });

  test('CI hints from Who and Info', () => {
    for (const who of ['runner@fv-az417-123', 'runner@myhost', 'root@runner-abc123-project-42-concurrent-0', 'gitlab-runner@ci-01', 'buildkite-agent@bk-7', 'jenkins@agent-3']) {
      assert.notEqual(ciRunnerHint({ Who: who }), null, who);
      assert.ok(holderGate(lock('dead', who), none, 'laptop', now).findings.some((f) => f.level === 'warn' && f.text.includes('looks like a CI runner: check that the pipeline job has finished')), who);
    }
    assert.notEqual(ciRunnerHint({ Who: 'svc@host', Info: 'buildkite-agent job 42' }), null);
    for (const who of ['engineer@MacBook-Pro.local', 'alice@build-07', '']) assert.equal(ciRunnerHint({ Who: who }), null, who);
  });

  test('sameHost: case-insensitive, first label', () => {
    assert.ok(sameHost('Build-07', 'build-07'));
    assert.ok(sameHost('build-07.corp', 'build-07'));
    assert.ok(!sameHost('build-07', 'build-08'));
  });
});

