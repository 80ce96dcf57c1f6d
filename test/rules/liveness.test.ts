import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStale, judgeLiveness, STALE_AFTER_SECONDS, type SessionEvidence } from '../../src/lock/liveness.js';
import { decideAutoRelease, decideUnlock, type HeldLock } from '../../src/lock/lock-rules.js';
import { LockWaiters } from '../../src/lock/lock-waiters.js';

const T0 = Date.parse('2026-11-26T12:00:00.000Z');
const iso = (offsetSec: number) => new Date(T0 + offsetSec * 1000).toISOString();
const session = (over: Partial<SessionEvidence> = {}): SessionEvidence => ({ id: 's1', expiresAt: iso(30), lastHeartbeatAt: iso(0), endedAt: null, endReason: null, ci: {}, ...over });

describe('judgeLiveness', () => {
  test('no session: unknown, never dead, with the last-activity age as evidence', () => {
    const j = judgeLiveness({ lastActivityAt: iso(-7200), session: null }, T0);
    assert.equal(j.verdict, 'unknown');
    assert.equal(j.evidence.lastActivitySeconds, 7200);
  });
  test('a current lease: alive, with the heartbeat age', () => {
    const j = judgeLiveness({ lastActivityAt: iso(-5), session: session({ lastHeartbeatAt: iso(-4) }) }, T0);
    assert.deepEqual([j.verdict, j.evidence.lastHeartbeatSeconds], ['alive', 4]);
  });
  test('an expired lease and no activity since: dead, since the expiry', () => {
    const j = judgeLiveness({ lastActivityAt: iso(-60), session: session({ expiresAt: iso(-10) }) }, T0);
    assert.deepEqual([j.verdict, j.deadSince], ['dead', iso(-10)]);
  });
  test('an expired lease but the lock used after it expired (the wrapper died, Terraform writes on): not dead', () => {
    const j = judgeLiveness({ lastActivityAt: iso(-2), session: session({ expiresAt: iso(-10) }) }, T0);
    assert.equal(j.verdict, 'unknown');
  });
  test('the wrapper reported its command exited: dead, with the reason, even inside the lease', () => {
    const j = judgeLiveness({ lastActivityAt: iso(-1), session: session({ endedAt: iso(-1), endReason: 'terraform was killed by SIGKILL' }) }, T0);
    assert.deepEqual([j.verdict, j.evidence.reason, j.deadSince], ['dead', 'terraform was killed by SIGKILL', iso(-1)]);
  });
  test('CI context travels with the evidence', () => {
    const j = judgeLiveness({ lastActivityAt: iso(0), session: session({ ci: { provider: 'github-actions', runId: '1234' } }) }, T0);
    assert.deepEqual(j.evidence.ci, { provider: 'github-actions', runId: '1234' });
  });
});

describe('force-unlock policy and automatic release', () => {
  const held: HeldLock = { id: 'H', operation: 'OperationTypeApply', who: 'ci@runner', created: null, raw: '{"ID":"H"}' };
  const alive = { verdict: 'alive' as const, reason: 'session lease is current' };
  test('a force-unlock (empty body, API, zero-valued body) of an alive holder is a 409 HOLDER_ALIVE with the holder', () => {
    for (const request of [{ id: null, force: true }, { id: 'H', force: true }]) {
      const d = decideUnlock('k', held, request, alive);
      assert.equal(d.kind === 'refuse' && d.error.code, 'HOLDER_ALIVE');
      assert.equal(d.kind === 'refuse' && d.error.status, 409);
      assert.equal(d.kind === 'refuse' && d.error.holderBody, '{"ID":"H"}');
    }
  });
  test('the explicit override is allowed; the holder’s own release never needs one; dead and unknown holders can be force-unlocked', () => {
    assert.deepEqual(decideUnlock('k', held, { id: 'H', force: true, evenIfAlive: true }, alive), { kind: 'release', forced: true });
    assert.deepEqual(decideUnlock('k', held, { id: 'H', force: false }, alive), { kind: 'release', forced: false });
    assert.deepEqual(decideUnlock('k', held, { id: null, force: true }, { verdict: 'dead', reason: '' }), { kind: 'release', forced: true });
    assert.deepEqual(decideUnlock('k', held, { id: null, force: true }, { verdict: 'unknown', reason: '' }), { kind: 'release', forced: true });
  });
  test('decideAutoRelease: only dead holders, only after the grace period', () => {
    assert.equal(decideAutoRelease({ verdict: 'dead', deadSince: iso(-61) }, T0, 60_000), true);
    assert.equal(decideAutoRelease({ verdict: 'dead', deadSince: iso(-59) }, T0, 60_000), false);
    assert.equal(decideAutoRelease({ verdict: 'unknown', deadSince: null }, T0, 0), false);
    assert.equal(decideAutoRelease({ verdict: 'alive', deadSince: null }, T0, 0), false);
  });
});

describe('LockWaiters', () => {
  test('wakes waiters first come, first served, and keeps the head when it cannot take the lock', async () => {
    const w = new LockWaiters();
    const granted: string[] = [];
    let free = false;
    for (const name of ['a', 'b', 'c']) {
      w.enqueue('k', {
        attempt: async () => {
          if (!free) return false;
          free = false; // taking the lock
          granted.push(name);
          return true;
        },
      });
    }
    await w.wake('k');
    assert.deepEqual(granted, [], 'still held: nobody is granted, nobody leaves the line');
    assert.equal(w.count('k'), 3);
    for (let i = 0; i < 3; i++) {
      free = true;
      await w.wake('k');
    }
    assert.deepEqual(granted, ['a', 'b', 'c']);
    assert.equal(w.count('k'), 0);
  });
  test('a waiter that leaves (timeout, client gone) is removed from the line', () => {
    const w = new LockWaiters();
    const leave = w.enqueue('k', { attempt: async () => true });
    w.enqueue('k', { attempt: async () => true });
    leave();
    assert.equal(w.count('k'), 1);
  });
});

describe('isStale', () => {
  test('dead is stale at once; unknown after 15 minutes idle; alive never', () => {
    assert.equal(isStale('dead', 0), true);
    assert.equal(isStale('unknown', STALE_AFTER_SECONDS - 1), false);
    assert.equal(isStale('unknown', STALE_AFTER_SECONDS), true);
    assert.equal(isStale('alive', 100 * STALE_AFTER_SECONDS), false);
  });
});
