import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ciContext, describeCi } from '../../src/cli/ci-context.js';
import { findExecutable } from '../../src/cli/child-process-guard.js';
import { keyFromAddress } from '../../src/cli/commands/run.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { runCli } from '../support/cli.js';
import { FAKE_TERRAFORM, FakeTerraformFiles, startWrapper, waitUntil, type WrapperRun } from '../support/fake-terraform.js';
import { rawRequest } from '../support/http.js';
import { startServer, STATELOCK_BIN, type RunningServer } from '../support/server-process.js';
import { HttpBackendClient } from '../support/terraform-client.js';

/**
 * `statelock run -- <command>`: the CI context it reports, its command line, and the real binary running
 * the Terraform stand-in (test/support/fake-terraform.ts) against a real server.
 */

describe('ciContext / describeCi', () => {
  test('GitHub Actions', () => {
    const env = {
      GITHUB_ACTIONS: 'true',
      GITHUB_RUN_ID: '1234',
      GITHUB_RUN_ATTEMPT: '2',
      GITHUB_JOB: 'deploy',
      GITHUB_REPOSITORY: 'acme/infra',
      GITHUB_SERVER_URL: 'https://github.example.com',
    };
    const ci = ciContext(env);
    assert.deepEqual(ci, {
      provider: 'github-actions',
      runId: '1234',
      runAttempt: '2',
      jobId: 'deploy',
      project: 'acme/infra',
      url: 'https://github.example.com/acme/infra/actions/runs/1234',
    });
    assert.equal(describeCi(ci), 'GitHub Actions run 1234 (attempt 2), job deploy, acme/infra (https://github.example.com/acme/infra/actions/runs/1234)');
    // GITHUB_SERVER_URL defaults to github.com; a first attempt is not worth a word.
    const minimal = ciContext({ GITHUB_ACTIONS: 'true', GITHUB_RUN_ID: '99', GITHUB_RUN_ATTEMPT: '1', GITHUB_REPOSITORY: 'acme/infra' });
    assert.equal(minimal.url, 'https://github.com/acme/infra/actions/runs/99');
    assert.equal(describeCi(minimal), 'GitHub Actions run 99, acme/infra (https://github.com/acme/infra/actions/runs/99)');
  });

  test('GitLab CI', () => {
    const ci = ciContext({ GITLAB_CI: 'true', CI_PIPELINE_ID: '4711', CI_JOB_ID: '90210', CI_JOB_URL: 'https://gitlab.example.com/g/p/-/jobs/90210', CI_PROJECT_PATH: 'g/p' });
    assert.deepEqual(ci, { provider: 'gitlab-ci', runId: '4711', jobId: '90210', project: 'g/p', url: 'https://gitlab.example.com/g/p/-/jobs/90210' });
    assert.equal(describeCi(ci), 'GitLab CI pipeline 4711, job 90210, g/p (https://gitlab.example.com/g/p/-/jobs/90210)');
  });

  test('Buildkite', () => {
    const ci = ciContext({
      BUILDKITE: 'true',
      BUILDKITE_BUILD_ID: '0190-aaaa',
      BUILDKITE_BUILD_NUMBER: '512',
      BUILDKITE_JOB_ID: '0190-bbbb',
      BUILDKITE_BUILD_URL: 'https://buildkite.com/acme/infra/builds/512',
      BUILDKITE_PIPELINE_SLUG: 'infra',
    });
    assert.deepEqual(ci, { provider: 'buildkite', runId: '0190-aaaa', runNumber: '512', jobId: '0190-bbbb', project: 'infra', url: 'https://buildkite.com/acme/infra/builds/512' });
    assert.equal(describeCi(ci), 'Buildkite build #512, job 0190-bbbb, infra (https://buildkite.com/acme/infra/builds/512)');
  });

  test('Jenkins', () => {
    const ci = ciContext({ JENKINS_URL: 'https://ci.example.com/', BUILD_ID: '17', JOB_NAME: 'infra/main', BUILD_URL: 'https://ci.example.com/job/infra/job/main/17/' });
    assert.deepEqual(ci, { provider: 'jenkins', runId: '17', project: 'infra/main', url: 'https://ci.example.com/job/infra/job/main/17/' });
    assert.equal(describeCi(ci), 'Jenkins build 17, infra/main (https://ci.example.com/job/infra/job/main/17/)');
  });

  test('no CI, a CI variable set to something else, empty values, and what the API may hand back', () => {
    assert.deepEqual(ciContext({}), {});
    assert.deepEqual(ciContext({ CI: 'true', GITHUB_ACTIONS: 'false', GITLAB_CI: '', BUILDKITE: 'false' }), {});
    assert.deepEqual(ciContext({ GITLAB_CI: 'true', CI_PIPELINE_ID: '', CI_JOB_ID: '5' }), { provider: 'gitlab-ci', jobId: '5' });
    assert.equal(describeCi({}), null);
    assert.equal(describeCi(null), null);
    assert.equal(describeCi(undefined), null);
    assert.equal(describeCi({ provider: 'woodpecker', runId: 7 }), 'woodpecker');
    assert.equal(describeCi({ provider: 'woodpecker', runId: '7' }), 'woodpecker run 7');
  });
});

describe('keyFromAddress', () => {
  const server = 'http://statelock.internal:8080';
  test('<server>/state/<key>, percent-decoded, query ignored', () => {
    assert.equal(keyFromAddress(`${server}/state/lesson-17/terraform.tfstate`, server), 'lesson-17/terraform.tfstate');
    assert.equal(keyFromAddress(`${server}/state/a%20b/c%2Fd?session=x`, server), 'a b/c/d');
  });
  test('no address, another server, no key: usage errors', () => {
    assert.throws(() => keyFromAddress(undefined, server), UsageError);
    assert.throws(() => keyFromAddress('', server), UsageError);
    assert.throws(() => keyFromAddress('http://elsewhere:8080/state/k', server), /is not http:\/\/statelock\.internal:8080\/state\/<key>/);
    assert.throws(() => keyFromAddress(`${server}/state/`, server), UsageError);
    assert.throws(() => keyFromAddress(`${server}/state/%zz`, server), /percent-encoding/);
  });
});

interface LockJson {
  key: string;
  info: Record<string, unknown>;
  sessionId?: string | null;
  verdict: string;
  evidence: Record<string, unknown>;
}

interface AuditPage {
  items: Array<{ action: string; lockId: string | null; outcome: string; detail: Record<string, unknown> }>;
}

describe('statelock run (real binary, real server, Terraform stand-in)', () => {
  let server: RunningServer;
  let n = 0;
  const wrappers: WrapperRun[] = [];
  const clients: HttpBackendClient[] = [];
  before(async () => (server = await startServer({ args: [] })));
  after(async () => {
    for (const w of wrappers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    for (const c of clients) c.close();
    await server.stop();
  });

  const newKey = (what: string) => `cli/run/${what}-${++n}/terraform.tfstate`;
  const api = (path: string, method = 'GET') => rawRequest(`${server.url}/api/v1/${path}`, { method });
  const getLock = async (key: string) => {
    const r = await api(`locks/${key}`);
    return r.status === 200 ? r.json<LockJson>() : null;
  };
  const wrapper = (runArgs: string[], fakeArgs: string[], env: Record<string, string> = {}, detached = true) => {
    const w = startWrapper(server.url, runArgs, fakeArgs, { env: { TF_HTTP_ADDRESS: '', ...env }, detached });
    wrappers.push(w);
    return w;
  };
  /** The session the wrapper handed its child, from the TF_HTTP_* addresses the stand-in saw. */
  const sessionOf = async (w: WrapperRun) => {
    const m = await w.fake.waitForEvent(/^env (\S+) (\S+) (\S+)$/);
    return { address: m[1]!, lockAddress: m[2]!, unlockAddress: m[3]!, id: new URL(m[1]!).searchParams.get('session')! };
  };
  const audit = async (key: string, action: string) => (await api(`audit?key=${encodeURIComponent(key)}&action=${action}`)).json<AuditPage>().items;

  test('usage: no command after --, no --, no key, bad --ttl / --lock-timeout → exit 2', async () => {
    const env = { TF_HTTP_ADDRESS: '' };
    const cases: string[][] = [
      ['run'],
      ['run', '--key', 'k'],
      ['run', '--key', 'k', '--'],
      ['run', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--ttl', '1s', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--ttl', '30', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--ttl', '2d', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--lock-timeout', '2h', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--lock-timeout', 'soon', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', 'extra', '--', 'terraform', 'apply'],
      ['run', '--key', 'k', '--bogus', '--', 'terraform', 'apply'],
    ];
    for (const args of cases) {
      const r = await runCli(['--server', server.url, ...args], { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^statelock: /, args.join(' '));
    }
    const elsewhere = await runCli(['--server', server.url, 'run', '--', 'terraform', 'apply'], { env: { TF_HTTP_ADDRESS: 'http://elsewhere:1/state/k' } });
    assert.equal(elsewhere.code, 2);
    assert.match(elsewhere.stderr, /TF_HTTP_ADDRESS \(http:\/\/elsewhere:1\/state\/k\) is not http:.*\/state\/<key>/);
  });

  test('run -- fake-terraform apply --writes 3: the lock is bound to the session and alive while held; exit 0; session ended after', async () => {
    const key = newKey('writes');
    const w = wrapper(['--key', key, '--ttl', '3s'], ['--writes', '3', '--write-ms', '500']);
    const s = await sessionOf(w);
    assert.equal(s.address, `${server.url}/state/${key}?session=${s.id}`);
    assert.equal(s.lockAddress, s.address);
    assert.equal(s.unlockAddress, s.address);
    const locked = await w.fake.waitForEvent(/^locked (\S+)$/);
    const held = await waitUntil('the lock to be visible', () => getLock(key));
    assert.equal(held.info.ID, locked[1]);
    assert.equal(held.sessionId, s.id);
    assert.equal(held.verdict, 'alive', JSON.stringify(held.evidence));
    assert.equal(held.evidence.session, s.id);
    const done = await w.exited;
    assert.equal(done.code, 0, w.stderr());
    assert.match(w.stderr(), new RegExp(`statelock: session ${s.id} on ${key}: lease 3s`));
    assert.doesNotMatch(w.stderr(), /refresh-only|Warning/);
    assert.deepEqual(
      w.fake.events().filter((l) => /^(wrote|unlocked|exit)/.test(l)),
      ['wrote 1 200', 'wrote 2 200', 'wrote 3 200', 'unlocked', 'exit 0'],
    );
    const versions = (await api(`versions/${key}`)).json<{ items: Array<{ serial: number }> }>().items.map((v) => v.serial);
    assert.deepEqual(versions, [1, 2, 3]);
    assert.equal(await getLock(key), null);
    const session = (await api(`sessions/${s.id}`)).json<{ key: string; endedAt: string | null; endReason: string | null; holder: Record<string, unknown> }>();
    assert.equal(session.key, key);
    assert.ok(session.endedAt, 'the session is ended');
    assert.match(session.endReason ?? '', /exited with code 0/);
    assert.equal(session.holder.pid, w.proc.pid);
    assert.match(String(session.holder.command), /fake-terraform\.js apply --writes 3/);
    const hb = await api(`sessions/${s.id}/heartbeat`, 'POST');
    assert.equal(hb.status, 409, hb.text);
    assert.equal(hb.json<{ error: { code: string } }>().error.code, 'SESSION_ENDED');
  });

  test('the key comes from TF_HTTP_ADDRESS when --key is not given; the CI context is sent with the session', async () => {
    const key = newKey('from-env');
    const w = wrapper([], ['--writes', '1', '--write-ms', '10'], {
      TF_HTTP_ADDRESS: `${server.url}/state/${key}`,
      GITLAB_CI: 'true',
      CI_PIPELINE_ID: '4711',
      CI_JOB_ID: '90210',
      GITHUB_ACTIONS: '',
      BUILDKITE: '',
      JENKINS_URL: '',
    });
    const s = await sessionOf(w);
    assert.equal(s.address, `${server.url}/state/${key}?session=${s.id}`);
    assert.equal((await w.exited).code, 0, w.stderr());
    const session = (await api(`sessions/${s.id}`)).json<{ key: string; ci: Record<string, string> }>();
    assert.equal(session.key, key);
    assert.deepEqual(session.ci, { provider: 'gitlab-ci', runId: '4711', jobId: '90210' });
  });

  test("the child's exit code is the wrapper's", async () => {
    const key = newKey('exit-code');
    const w = wrapper(['--key', key], ['--writes', '1', '--write-ms', '10', '--exit-code', '3']);
    const s = await sessionOf(w);
    assert.equal((await w.exited).code, 3, w.stderr());
    assert.ok(w.fake.events().includes('unlocked'));
    assert.doesNotMatch(w.stderr(), /refresh-only/, 'it unlocked before exiting: nothing to release');
    const session = (await api(`sessions/${s.id}`)).json<{ endReason: string }>();
    assert.match(session.endReason, /exited with code 3/);
  });

  test('a command that exits holding the lock: statelock releases it, audits why, and says what to do next', async () => {
    const key = newKey('exit-holding');
    const w = wrapper(['--key', key], ['--writes', '1', '--write-ms', '10', '--exit-code', '1', '--no-unlock']);
    const locked = await w.fake.waitForEvent(/^locked (\S+)$/);
    assert.equal((await w.exited).code, 1, w.stderr());
    assert.equal(await getLock(key), null, 'released when the session ended');
    const err = w.stderr();
    assert.match(err, new RegExp(`exited with code 1 while holding the lock on ${key} \\(ID ${locked[1]}\\)`));
    assert.match(err, /statelock released the lock \(audited/);
    assert.match(err, /state may be partial/);
    assert.match(err, /terraform apply -refresh-only/);
    assert.match(err, /terraform plan/);
    const releases = await audit(key, 'lock.release');
    assert.equal(releases.length, 1);
    assert.equal(releases[0]!.lockId, locked[1]);
    assert.match(String(releases[0]!.detail.how), /exited with code 1/);
  });

  test('SIGINT to the wrapper reaches the command once: it writes, unlocks, and the wrapper exits with its code', async () => {
    const key = newKey('sigint');
    const w = wrapper(['--key', key], []);
    await w.fake.waitForEvent(/^wrote 1 200$/);
    process.kill(w.proc.pid!, 'SIGINT');
    const done = await w.exited;
    assert.equal(done.code, 0, w.stderr());
    const events = w.fake.events();
    assert.deepEqual(events.filter((l) => l.startsWith('signal')), ['signal SIGINT'], 'delivered exactly once');
    assert.deepEqual(events.slice(-2), ['unlocked', 'exit 0']);
    assert.match(w.stderr(), /SIGINT forwarded to node \(pid \d+\)/);
    assert.equal(await getLock(key), null);
  });

  test('SIGTERM is forwarded too', async () => {
    const key = newKey('sigterm');
    const w = wrapper(['--key', key], []);
    await w.fake.waitForEvent(/^wrote 1 200$/);
    process.kill(w.proc.pid!, 'SIGTERM');
    assert.equal((await w.exited).code, 0, w.stderr());
    assert.deepEqual(w.fake.events().filter((l) => l.startsWith('signal')), ['signal SIGTERM']);
    assert.equal(await getLock(key), null);
  });

  test('a command that cannot be found: exit 127 and the session is ended', async () => {
    const key = newKey('missing');
    const r = await runCli(['--server', server.url, 'run', '--key', key, '--', 'no-such-terraform-xyz', 'apply']);
    assert.equal(r.code, 127, r.stderr);
    assert.match(r.stderr, /no-such-terraform-xyz: command not found/);
    const id = /session (\S+) on/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    const session = (await api(`sessions/${id}`)).json<{ endedAt: string | null }>();
    assert.ok(session.endedAt);
  });

  test('--lock-timeout: the lock waits on the server and the wrapper says whom it waits behind', async () => {
    const key = newKey('lock-timeout');
    const holder = new HttpBackendClient({ address: `${server.url}/state/${key}`, lockAddress: `${server.url}/state/${key}`, unlockAddress: `${server.url}/state/${key}` }, { flavor: 'terraform', who: 'alice@build-07' });
    clients.push(holder);
    await holder.lock('OperationTypeApply');
    const w = wrapper(['--key', key, '--lock-timeout', '30s'], ['--writes', '1', '--write-ms', '10']);
    const s = await sessionOf(w);
    assert.equal(s.lockAddress, `${server.url}/state/${key}?session=${s.id}&wait=30s`);
    assert.equal(s.address, `${server.url}/state/${key}?session=${s.id}`);
    await waitUntil('the waiting message', () => /statelock: waiting behind alice@build-07 \(OperationTypeApply, \d+s\)/.test(w.stderr()));
    await waitUntil('the LOCK to be queued', async () => (await getLock(key))?.info.ID === holder.lockId && ((await api(`locks/${key}`)).json<{ waiters?: number }>().waiters ?? 0) >= 1);
    assert.ok(!w.fake.events().some((l) => l.startsWith('locked')), 'still waiting');
    await holder.unlock();
    assert.equal((await w.exited).code, 0, w.stderr());
    assert.ok(w.fake.events().some((l) => l.startsWith('locked')));
    assert.equal(w.stderr().match(/waiting behind/g)?.length, 1, 'said once');
  });
  test('--lock-timeout behind another wrapper: the wait names its CI job, and the lock passes from one session to the next', async () => {
    const key = newKey('two-wrappers');
    const first = wrapper(['--key', key], [], { GITHUB_ACTIONS: 'true', GITHUB_RUN_ID: '1234', GITHUB_REPOSITORY: 'acme/infra', GITHUB_SERVER_URL: 'https://github.com', GITLAB_CI: '', BUILDKITE: '', JENKINS_URL: '' });
    const firstSession = await sessionOf(first);
    await first.fake.waitForEvent(/^wrote 1 200$/);
    const second = wrapper(['--key', key, '--lock-timeout', '30s'], ['--writes', '1', '--write-ms', '10']);
    const secondSession = await sessionOf(second);
    await waitUntil('the waiting message', () => /waiting behind \S+ \(OperationTypeApply, \d+s\) — GitHub Actions run 1234, acme\/infra \(https:\/\/github\.com\/acme\/infra\/actions\/runs\/1234\)/.test(second.stderr()));
    assert.equal((await getLock(key))?.sessionId, firstSession.id);
    process.kill(first.proc.pid!, 'SIGTERM');
    assert.equal((await first.exited).code, 0, first.stderr());
    assert.equal((await second.exited).code, 0, second.stderr());
    assert.ok(second.fake.events().includes('unlocked'));
    const grants = (await api(`audit?key=${encodeURIComponent(key)}&action=lock.acquire`)).json<AuditPage>().items;
    assert.equal(grants.length, 2, JSON.stringify(grants));
    assert.notEqual(firstSession.id, secondSession.id);
  });

  const scriptBin = findExecutable('script');
  test(
    'Ctrl-C typed in a terminal reaches the command once: the wrapper does not forward it a second time',
    { skip: scriptBin === null ? 'script(1) (util-linux) is not on PATH to give the wrapper a terminal' : false },
    async () => {
      const key = newKey('tty');
      const fake = new FakeTerraformFiles();
      const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
      // `exec`: script(1) runs the command through $SHELL -c, and a shell left waiting in between (dash, when SHELL is unset)
      // takes the SIGINT too and exits 130 itself; with exec the wrapper is script's direct child, as in a real terminal.
      const cmd = 'exec ' + [process.execPath, STATELOCK_BIN, '--server', server.url, 'run', '--key', key, '--', process.execPath, FAKE_TERRAFORM, 'apply'].map(quote).join(' ');
      // script(1) runs the wrapper on a new pseudo-terminal, in its foreground process group; ^C written to it becomes SIGINT there.
      const proc = spawn(scriptBin!, ['-qefc', cmd, '/dev/null'], { env: { ...process.env, ...fake.env(), TF_HTTP_ADDRESS: '', NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
      try {
        await fake.waitForEvent(/^wrote 1 200$/);
        proc.stdin.write('\x03');
        assert.equal(await exited, 0, out);
      } finally {
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      const events = fake.events();
      assert.deepEqual(events.filter((l) => l.startsWith('signal')), ['signal SIGINT'], `exactly one interrupt: ${events.join(' | ')}`);
      assert.deepEqual(events.slice(-2), ['unlocked', 'exit 0']);
      assert.doesNotMatch(out, /forwarded/);
      assert.equal(await getLock(key), null);
    },
  );

  test('without setpriv on PATH: a warning that the guarantee is weaker, and the command still runs', async () => {
    const key = newKey('no-setpriv');
    const w = wrapper(['--key', key], ['--writes', '1', '--write-ms', '10'], { PATH: '/nonexistent' });
    assert.equal((await w.exited).code, 0, w.stderr());
    assert.match(w.stderr(), /Warning: .*setpriv.*was not found on PATH: if statelock itself is killed, .* keeps running/);
    assert.ok(w.fake.events().includes('unlocked'));
  });

  test('a backend block that sets the addresses itself: Terraform ignores TF_HTTP_*, and the wrapper warns that the lock is not bound', async () => {
    const key = newKey('unbound');
    const w = wrapper(['--key', key], ['--writes', '4', '--write-ms', '400', '--address', `${server.url}/state/${key}`]);
    await w.fake.waitForEvent(/^locked /);
    assert.equal((await w.exited).code, 0, w.stderr());
    assert.match(w.stderr(), new RegExp(`Warning: the lock on ${key} \\(ID \\S+\\) was taken by \\S+ without this session`));
    assert.match(w.stderr(), /backend "http" \{\}/);
  });
});
