import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { processGone, startWrapper, waitUntil, type WrapperRun } from './support/fake-terraform.js';
import { rawRequest } from './support/http.js';
import { startServer, type RunningServer } from './support/server-process.js';
import { HttpBackendClient, makeState, parseStateFile } from './support/terraform-client.js';

/**
 * The acceptance tests of liveness: a lock held under `statelock run` is released when its holder dies,
 * reported dead when the wrapper dies, fenced when its holder was frozen and overtaken, protected from
 * force-unlock while alive, and handed to waiters in arrival order. Real server, real `statelock` binary,
 * the Terraform stand-in (test/support/fake-terraform.ts) as the child. No blind sleeps: every wait polls
 * the server or the stand-in's event log with a bounded deadline.
 */

interface LockJson {
  key: string;
  info: Record<string, unknown>;
  sessionId?: string | null;
  verdict: 'alive' | 'dead' | 'unknown';
  evidence: Record<string, unknown>;
  waiters?: number;
}

interface AuditItem {
  action: string;
  lockId: string | null;
  outcome: string;
  detail: Record<string, unknown>;
}

interface RejectedItem {
  id: number;
  lockId: string;
  at: string;
  serial: number;
  lineage: string;
  size: number;
  reason: string;
}

describe('liveness: statelock run sessions, verdicts, fencing, waiters', () => {
  let server: RunningServer;
  let n = 0;
  const wrappers: WrapperRun[] = [];
  const clients: HttpBackendClient[] = [];
  const stopped = new Set<number>();
  before(async () => (server = await startServer({ args: [] })));
  after(async () => {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    for (const w of wrappers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    for (const c of clients) c.close();
    await server.stop();
  });

  const newKey = (what: string) => `liveness/${what}-${++n}/terraform.tfstate`;
  const api = (path: string, method = 'GET') => rawRequest(`${server.url}/api/v1/${path}`, { method });
  const getLock = async (key: string): Promise<LockJson | null> => {
    const r = await api(`locks/${key}`);
    if (r.status === 404) return null;
    assert.equal(r.status, 200, r.text);
    return r.json<LockJson>();
  };
  const audit = async (key: string, action: string) => (await api(`audit?key=${encodeURIComponent(key)}&action=${action}`)).json<{ items: AuditItem[] }>().items;
  const wrapper = (runArgs: string[], fakeArgs: string[] = []) => {
    const w = startWrapper(server.url, runArgs, fakeArgs, { env: { TF_HTTP_ADDRESS: '' } });
    wrappers.push(w);
    return w;
  };
  const client = (key: string, opts: { lockQuery?: string; who?: string } = {}) => {
    const url = `${server.url}/state/${key}`;
    const c = new HttpBackendClient({ address: url, lockAddress: url + (opts.lockQuery ?? ''), unlockAddress: url }, { flavor: 'terraform', who: opts.who ?? 'bob@rescue-01' });
    clients.push(c);
    return c;
  };
  const ms = (x: number) => `${Math.round(x)} ms`;

  test('1. SIGKILL of the command while it holds the lock: released within 1 s, audited with why, recovery hint printed', async (t) => {
    const key = newKey('sigkill-child');
    const w = wrapper(['--key', key, '--ttl', '30s']);
    const locked = await w.fake.waitForEvent(/^locked (\S+)$/);
    await w.fake.waitForEvent(/^wrote 1 200$/);
    assert.equal((await getLock(key))?.verdict, 'alive');
    const pid = await w.fake.pid();

    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    await waitUntil('the lock to be released', async () => (await getLock(key)) === null, 5000, 5);
    const latency = performance.now() - killedAt;
    t.diagnostic(`lock released ${ms(latency)} after SIGKILL of the command`);
    assert.ok(latency < 1000, `released after ${ms(latency)}`);

    const done = await w.exited;
    assert.equal(done.code, 128 + 9, w.stderr());
    const releases = await audit(key, 'lock.release');
    assert.equal(releases.length, 1, JSON.stringify(releases));
    assert.equal(releases[0]!.lockId, locked[1]);
    assert.match(String(releases[0]!.detail.how), /SIGKILL/);
    assert.match(w.stderr(), new RegExp(`was killed by SIGKILL while holding the lock on ${key}`));
    assert.match(w.stderr(), /terraform apply -refresh-only/);
  });

  test('2. SIGKILL of the wrapper: the command dies with it (pdeathsig) and the verdict turns dead within TTL + one heartbeat', async (t) => {
    const key = newKey('sigkill-wrapper');
    const w = wrapper(['--key', key, '--ttl', '2s']);
    await w.fake.waitForEvent(/^wrote 1 200$/);
    const childPid = await w.fake.pid();
    assert.equal((await getLock(key))?.verdict, 'alive');
    if (!/heartbeat every/.test(w.stderr()) || /Warning: setpriv/.test(w.stderr())) t.diagnostic('setpriv missing: the child is not guarded on this machine');

    const killedAt = performance.now();
    w.proc.kill('SIGKILL');
    await waitUntil('the command to die with its wrapper', () => processGone(childPid), 5000, 5);
    const childGone = performance.now() - killedAt;
    const ttlMs = 2000;
    const heartbeatMs = ttlMs / 3;
    const dead = await waitUntil('the verdict to become dead', async () => {
      const lock = await getLock(key);
      return lock?.verdict === 'dead' ? lock : null;
    }, ttlMs + heartbeatMs + 5000, 20);
    const toDead = performance.now() - killedAt;
    t.diagnostic(`command gone ${ms(childGone)} after SIGKILL of the wrapper; verdict dead after ${ms(toDead)} (TTL + one heartbeat = ${ms(ttlMs + heartbeatMs)})`);
    assert.ok(toDead <= ttlMs + heartbeatMs + 1000, `dead after ${ms(toDead)}`);
    assert.match(String(dead.evidence.reason), /lease expired/);
    assert.ok(dead.evidence.session, 'the evidence names the session');
    assert.equal((await w.exited).signal, 'SIGKILL');
  });

  test('3. wrapper and command frozen (SIGSTOP) past the lease: dead, taken over, and their writes after SIGCONT are fenced and kept', async (t) => {
    const key = newKey('sigstop');
    const w = wrapper(['--key', key, '--ttl', '2s']);
    const oldId = (await w.fake.waitForEvent(/^locked (\S+)$/))[1]!;
    await w.fake.waitForEvent(/^wrote 2 200$/);
    const childPid = await w.fake.pid();
    const wrapperPid = w.proc.pid!;

    let mine: Buffer;
    let newId: string;
    const rescuer = client(key);
    process.kill(childPid, 'SIGSTOP');
    process.kill(wrapperPid, 'SIGSTOP');
    stopped.add(childPid).add(wrapperPid);
    const stoppedAt = performance.now();
    try {
      const dead = await waitUntil('the verdict to become dead', async () => {
        const lock = await getLock(key);
        return lock?.verdict === 'dead' ? lock : null;
      }, 10_000, 20);
      t.diagnostic(`verdict dead ${ms(performance.now() - stoppedAt)} after SIGSTOP (ttl 2 s)`);
      assert.equal(dead.info.ID, oldId);

      // Another operator: force-unlock (allowed: dead), then an apply of their own takes the lock and writes.
      const del = await api(`locks/${key}?id=${oldId}`, 'DELETE');
      assert.equal(del.status, 200, del.text);
      const current = parseStateFile((await rescuer.get())!);
      newId = await rescuer.lock('OperationTypeApply');
      mine = makeState({ serial: current.serial + 100, lineage: current.lineage });
      await rescuer.write(mine);
    } finally {
      process.kill(wrapperPid, 'SIGCONT');
      process.kill(childPid, 'SIGCONT');
      stopped.delete(childPid);
      stopped.delete(wrapperPid);
    }

    const refused = await w.fake.waitForEvent(/^refused (\d+) (\d+) (\S+)$/);
    const serial = Number(refused[1]);
    assert.equal(refused[2], '423');
    // Terraform only sees the status; the body is the LOCK_FENCED error, or (http backend door) the current holder's lock info.
    assert.ok(refused[3] === 'LOCK_FENCED' || refused[3] === `held-by:${newId!}`, `refusal answer: ${refused[3]}`);
    const rejected = (await api(`rejected/${key}`)).json<{ items: RejectedItem[] }>().items;
    const entry = rejected.find((r) => r.serial === serial);
    assert.ok(entry, `rejected write of serial ${serial} listed: ${JSON.stringify(rejected)}`);
    t.diagnostic(`rejected write: ${JSON.stringify(entry)}`);
    assert.equal(entry.lockId, oldId);
    assert.match(entry.reason, /LOCK_FENCED|released|fenced/i);
    const sent = w.fake.body(serial);
    assert.equal(entry.size, sent.length);
    const content = await api(`rejected-content/${key}?id=${entry.id}`);
    assert.equal(content.status, 200);
    assert.ok(content.body.equals(sent), 'the rejected body is kept byte for byte');

    // The new holder's state and lock are untouched, also once the old command stops and its session ends.
    process.kill(wrapperPid, 'SIGTERM');
    const done = await w.exited;
    t.diagnostic(`old wrapper exited ${done.code} after SIGTERM (its command's final write was fenced and its UNLOCK refused)`);
    for (const line of w.stderr().split('\n').filter((l) => /^(Warning|statelock)/.test(l))) t.diagnostic(`old wrapper: ${line}`);
    assert.ok(w.fake.events().some((l) => l.startsWith('unlock-failed')), w.fake.events().join(' | '));
    const after = await rescuer.get();
    assert.ok(after?.equals(mine!), "the new holder's state is untouched");
    const lock = await getLock(key);
    assert.equal(lock?.info.ID, newId!, 'the new holder still holds the lock');
    await rescuer.unlock();
  });

  test('4. force-unlock while the holder is alive: refused (API and Terraform), allowed with evenIfAlive=true and audited as an override', async () => {
    const key = newKey('alive');
    const w = wrapper(['--key', key, '--ttl', '30s']);
    const id = (await w.fake.waitForEvent(/^locked (\S+)$/))[1]!;
    await waitUntil('an alive verdict', async () => (await getLock(key))?.verdict === 'alive');

    const refused = await api(`locks/${key}?id=${id}`, 'DELETE');
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'HOLDER_ALIVE');
    assert.equal((await getLock(key))?.info.ID, id, 'still held');

    // `terraform force-unlock -force ID`: UNLOCK with an empty body, from a process that never locked.
    const tf = client(key);
    await assert.rejects(tf.unlock(id), /409/);
    assert.equal(tf.lastResponse?.status, 409);
    assert.equal((await getLock(key))?.info.ID, id, 'still held');

    const forced = await api(`locks/${key}?id=${id}&evenIfAlive=true`, 'DELETE');
    assert.equal(forced.status, 200, forced.text);
    assert.equal(await getLock(key), null);
    const entries = (await audit(key, 'lock.force-unlock')).filter((e) => e.outcome === 'ok');
    assert.equal(entries.length, 1, JSON.stringify(entries));
    assert.equal(entries[0]!.lockId, id);
    assert.equal(entries[0]!.detail.evenIfAlive, true, JSON.stringify(entries[0]!.detail));
    assert.match(String(entries[0]!.detail.how), /overrid/);

    process.kill(w.proc.pid!, 'SIGTERM');
    await w.exited;
  });

  test('5. ten waiters on one key are granted in arrival order', async (t) => {
    const key = newKey('waiters');
    const holder = client(key, { who: 'holder@test' });
    await holder.lock('OperationTypeApply');
    const grantOrder: number[] = [];
    const grantedAt: number[] = [];
    const releaseStartedAt: number[] = [];
    const done: Array<Promise<void>> = [];
    for (let i = 0; i < 10; i++) {
      const c = client(key, { lockQuery: '?wait=30s', who: `waiter-${i}@test` });
      done.push(
        c.lock('OperationTypeApply').then(async () => {
          grantedAt[i] = performance.now();
          grantOrder.push(i);
          releaseStartedAt[i] = performance.now();
          await c.unlock();
        }),
      );
      // The next waiter arrives only once this one is queued.
      await waitUntil(`waiter ${i} to be queued`, async () => (await getLock(key))?.waiters === i + 1, 10_000, 10);
    }
    const holderReleaseAt = performance.now();
    await holder.unlock();
    await Promise.all(done);
    assert.deepEqual(grantOrder, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const handoffs = grantedAt.map((g, i) => g - (i === 0 ? holderReleaseAt : releaseStartedAt[i - 1]!));
    t.diagnostic(`hand-off latencies (release started → next waiter granted): ${handoffs.map((h) => Math.round(h)).join(', ')} ms`);
    for (const [i, h] of handoffs.entries()) assert.ok(h < 1000, `hand-off to waiter ${i} took ${ms(h)}`);
    assert.equal(await getLock(key), null);
  });
});
