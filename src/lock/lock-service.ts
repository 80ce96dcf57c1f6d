import type { ClientContext } from '../audit/audit-entry.js';
import type { Metrics } from '../server/metrics.js';
import { StatelockError } from '../server/errors.js';
import type { Decision, LockDoor, LockRecord, Store, UpdateOptions } from '../store/store.js';
import { isZeroValuedLockInfo, parseLockInfo, type LockInfo } from './lock-info.js';
import { decideAutoRelease, decideDoorRelease, decideLock, decideUnlock, type DoorReleaseRequest, type UnlockRequest } from './lock-rules.js';
import { LockWaiters } from './lock-waiters.js';
import { isoNow } from '../shared/iso-now.js';
import { isStale, judgeLiveness, type LivenessJudgement } from './liveness.js';

export type LockResult = { outcome: 'acquired' | 'reacquired'; lock: LockRecord };
export type UnlockResult = { outcome: 'released' | 'forced' | 'already-free'; previous: LockRecord | null };
/** A release through an AWS door may only drop that door's hold on a lock held through two doors. */
export type DoorReleaseResult = UnlockResult | { outcome: 'hold-dropped'; previous: LockRecord };

export interface LockOptions {
  /** Bind the lock to this `statelock run` session (its lease proves the holder alive). */
  sessionId?: string | null;
  /** Server-side wait: hold the request until the lock is granted or this many ms pass. */
  waitMs?: number;
  /** Aborted when the client goes away while waiting. */
  signal?: AbortSignal;
  /** The door asking (default http): an AWS door's hold is released on its own (see LockDoor). */
  door?: LockDoor;
}

/**
 * What an http-backend UNLOCK body asks for, read once (the door decides the permission from it, then the
 * service acts on it): an empty body is Terraform's force-unlock, OpenTofu's zero-valued body is its
 * force-unlock, any other body is a release by the holder's ID; a malformed body is kept as its refusal.
 */
export type UnlockBody = { request: UnlockRequest; how: string } | { invalid: StatelockError };

export function readUnlockBody(body: Buffer): UnlockBody {
  if (isBlank(body)) return { request: { id: null, force: true }, how: 'empty UNLOCK body (terraform force-unlock)' };
  let info: LockInfo;
  try {
    info = parseLockInfo(body);
  } catch (err) {
    if (err instanceof StatelockError) return { invalid: err };
    throw err;
  }
  const zero = isZeroValuedLockInfo(info);
  return { request: { id: info.id, force: zero }, how: zero ? 'zero-valued UNLOCK body (tofu force-unlock)' : 'holder released' };
}

/** Nothing, or only whitespace: what `terraform force-unlock` sends. */
function isBlank(body: Buffer): boolean {
  return body.length === 0 || (body[0] !== 0x7b /* { */ && body.toString('utf8').trim() === '');
}

/** The liveness verdict of a held lock, from the evidence the store keeps (see liveness.ts). */
export function judgeLock(lock: LockRecord, nowMs = Date.now()): LivenessJudgement {
  const s = lock.session ?? null;
  return judgeLiveness(
    {
      lastActivityAt: lock.lastActivityAt,
      session: s && { id: s.id, expiresAt: s.expiresAt, lastHeartbeatAt: s.lastHeartbeatAt, endedAt: s.endedAt, endReason: s.endReason, ci: s.ci },
    },
    nowMs,
  );
}

/** Lock use cases. Each one is a single {@link Store.update} around a pure rule. */
export class LockService {
  readonly waiters = new LockWaiters();
  /**
   * Lock conflicts already audited, by key and requesting lock ID: a client retrying LOCK with the same ID
   * (Terraform's -lock-timeout) leaves one `lock.conflict` entry, not one per retry, nor one per holder it waits
   * behind. Such a retry is expected to be refused again and writes nothing: the store may decide it without
   * queueing on the key's write lock ahead of the holder's UNLOCK (UpdateOptions.readFirst).
   */
  private readonly conflictsAudited = new RecentSet(10 * 60_000, 10_000);

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
  ) {
    store.onLockReleased?.((key) => void this.waiters.wake(key));
  }

  /**
   * Takes the lock on `key` with the client's lock-info body, or fails with the holder — at once, or
   * after waiting in line up to `waitMs`. The same ID asking again succeeds (a retried LOCK).
   * @throws StatelockError INVALID_LOCK_INFO (400), SESSION_NOT_FOUND (404), SESSION_ENDED (409),
   *   STATE_LOCKED (423, carrying the holder's body).
   */
  async lock(key: string, body: Buffer, client: ClientContext, opts: LockOptions = {}): Promise<LockResult> {
    const info = parseLockInfo(body);
    const sessionId = opts.sessionId ?? null;
    if (sessionId) {
      const session = await this.store.getSession(sessionId);
      if (!session) throw new StatelockError('SESSION_NOT_FOUND', { session: sessionId });
      if (session.endedAt) throw new StatelockError('SESSION_ENDED', { session: sessionId, reason: session.endReason ?? 'ended' });
    }
    const started = Date.now();
    try {
      const result = await this.tryLock(key, info, client, sessionId, opts.door ?? 'http', this.conflictsAudited.has(`${key}\0${info.id}`));
      this.metrics.lockAttempts.inc({ result: result.outcome });
      return result;
    } catch (err) {
      if (!(err instanceof StatelockError && err.code === 'STATE_LOCKED') || !opts.waitMs || opts.waitMs <= 0) {
        if (err instanceof StatelockError && err.status === 423) this.metrics.lockAttempts.inc({ result: 'refused' });
        throw err;
      }
      const result = await this.waitInLine(key, info, client, sessionId, opts.waitMs, err, opts.signal, opts.door ?? 'http');
      this.metrics.lockWaitSeconds.observe((Date.now() - started) / 1000);
      this.metrics.lockAttempts.inc({ result: 'acquired_after_wait' });
      return result;
    }
  }

  private async tryLock(key: string, info: LockInfo, client: ClientContext, sessionId: string | null, door: LockDoor, readFirst = false): Promise<LockResult> {
    // The conflict this attempt audits, remembered once its refusal is settled: the rule itself stays pure,
    // and may be run again (group-commit.ts).
    let audited: string | null = null;
    const attempt = this.store.update(key, client, (snap): Decision<LockResult> => {
      const decision = decideLock(key, snap.lock, info);
      const now = isoNow();
      audited = null;
      if (decision.kind === 'refuse') {
        const holder = snap.lock;
        const seen = holder ? `${key}\0${info.id}` : null;
        if (!holder || !seen || decision.error.code !== 'STATE_LOCKED' || this.conflictsAudited.has(seen)) return { error: decision.error, changes: {} };
        audited = seen;
        const detail = { operation: info.operation, who: info.who, holderId: holder.id, holderWho: holder.who, holderOperation: holder.operation, ...(door !== 'http' ? { door } : {}) };
        return { error: decision.error, changes: { audit: [{ action: 'lock.conflict', key, lockId: info.id, outcome: 'refused', detail }] } };
      }
      if (decision.kind === 'reacquire') {
        // The holder asking again through another door (double locking) adds that door's hold.
        const holds = snap.lock!.holds.includes(door) ? snap.lock!.holds : [...snap.lock!.holds, door];
        return { result: { outcome: 'reacquired', lock: { ...snap.lock!, holds, lastActivityAt: now } }, changes: { lock: { touch: now, holds } } };
      }
      const { raw, ...fields } = info;
      const lock: LockRecord = { key, ...fields, raw, acquiredAt: now, lastActivityAt: now, clientAddr: client.addr, userAgent: client.userAgent, sessionId, holds: [door] };
      const detail = { operation: info.operation, who: info.who, version: info.version, created: info.created, ...(sessionId ? { session: sessionId } : {}), ...(door !== 'http' ? { door } : {}) };
      return { result: { outcome: 'acquired', lock }, changes: { lock: { set: lock }, audit: [{ action: 'lock.acquire', key, lockId: info.id, outcome: 'ok', detail }] } };
    }, { readFirst });
    try {
      return await attempt;
    } catch (err) {
      if (audited !== null && err instanceof StatelockError && err.code === 'STATE_LOCKED') this.conflictsAudited.add(audited);
      throw err;
    }
  }

  /**
   * Waits in the key's line until an attempt takes the lock, `waitMs` pass, or the client goes away. An
   * attempt already handed to the store when the time is up (or the client leaves) is not abandoned: its
   * outcome decides — a grant that lands just after the deadline is still answered as a grant, and a
   * grant for a client that has gone is released at once, so no lock is left held by someone who was
   * told it was refused or who is no longer there.
   */
  private waitInLine(key: string, info: LockInfo, client: ClientContext, sessionId: string | null, waitMs: number, refusal: StatelockError, signal: AbortSignal | undefined, door: LockDoor): Promise<LockResult> {
    return new Promise<LockResult>((resolve, reject) => {
      let last = refusal;
      let done = false;
      let attempting = false;
      let expired = false;
      let abandoned = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        dequeue();
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const giveUp = () => {
        if (abandoned) return finish(() => reject(last));
        this.metrics.lockAttempts.inc({ result: 'refused_after_wait' });
        finish(() => reject(last));
      };
      const dequeue = this.waiters.enqueue(key, {
        attempt: async () => {
          if (done) return true;
          attempting = true;
          try {
            const result = await this.tryLock(key, info, client, sessionId, door);
            if (abandoned) {
              // The client left while this grant was being decided: give the lock straight back.
              finish(() => reject(last));
              await this.unlock(key, { id: info.id, force: false }, client, 'the waiting client went away before its grant was answered').catch(() => undefined);
              return true;
            }
            finish(() => resolve(result));
            return true;
          } catch (err) {
            if (err instanceof StatelockError && err.code === 'STATE_LOCKED') {
              last = err;
              if (expired || abandoned) {
                giveUp();
                return true;
              }
              return false;
            }
            finish(() => reject(err));
            return true;
          } finally {
            attempting = false;
          }
        },
      });
      const timer = setTimeout(() => {
        if (attempting) expired = true; // the attempt in flight decides
        else giveUp();
      }, waitMs);
      const onAbort = () => {
        abandoned = true;
        if (!attempting) finish(() => reject(last));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // The lock may have been released between the refusal and joining the line.
      void this.waiters.wake(key);
    });
  }

  /**
   * Releases the lock on `key` as the http backend asks: an empty body is Terraform's force-unlock;
   * a body's ID must be the holder's. Releasing a free lock succeeds.
   * @throws StatelockError INVALID_LOCK_INFO (400), LOCK_ID_MISMATCH (409, with the holder),
   *   HOLDER_ALIVE (409: a force-unlock while the holder's lease is current).
   */
  unlockFromBody(key: string, body: Buffer | UnlockBody, client: ClientContext): Promise<UnlockResult> {
    const parsed = Buffer.isBuffer(body) ? readUnlockBody(body) : body;
    if ('invalid' in parsed) return Promise.reject(parsed.invalid);
    return this.unlock(key, parsed.request, client, parsed.how);
  }

  /**
   * The API's force-unlock: the caller names the holder's ID, as `terraform force-unlock LOCK_ID` does.
   * @throws StatelockError LOCK_NOT_FOUND, LOCK_ID_MISMATCH (409, with the holder), HOLDER_ALIVE (409).
   */
  async forceUnlock(key: string, id: string, client: ClientContext, opts: { evenIfAlive?: boolean } = {}): Promise<UnlockResult> {
    const how = opts.evenIfAlive ? 'force-unlock through the API, overriding an alive verdict' : 'force-unlock through the API';
    const result = await this.unlock(key, { id, force: true, evenIfAlive: opts.evenIfAlive ?? false }, client, how);
    if (result.outcome === 'already-free') throw new StatelockError('LOCK_NOT_FOUND', { key });
    return result;
  }

  private async unlock(key: string, request: UnlockRequest, client: ClientContext, how: string): Promise<UnlockResult> {
    const handOff = this.handOff(key);
    try {
      const result = await this.store.update(key, client, (snap): Decision<UnlockResult> => {
        const judgement = snap.lock ? judgeLock(snap.lock) : null;
        const decision = decideUnlock(key, snap.lock, request, judgement ? { verdict: judgement.verdict, reason: String(judgement.evidence.reason) } : undefined);
        if (decision.kind === 'refuse') {
          const detail = { how, code: decision.error.code, holder: snap.lock?.id, verdict: judgement?.verdict };
          const action = request.force || request.id === null ? ('lock.force-unlock' as const) : ('lock.release' as const);
          return { error: decision.error, changes: { audit: [{ action, key, lockId: request.id, outcome: 'refused', detail }] } };
        }
        if (decision.kind === 'already-free') return { result: { outcome: 'already-free', previous: null }, changes: {} };
        const held = snap.lock!;
        const detail = { how, verdict: judgement?.verdict, ...(request.evenIfAlive ? { evenIfAlive: true } : {}), ...heldDetail(held) };
        // A session whose lock was taken from it is over: its next heartbeat says so, and its wrapper warns.
        const endSession = decision.forced && held.sessionId ? { endSession: { id: held.sessionId, reason: `its lock was force-unlocked (${how})` } } : {};
        return {
          result: { outcome: decision.forced ? 'forced' : 'released', previous: held },
          changes: { lock: { clear: true }, ...endSession, audit: [{ action: decision.forced ? 'lock.force-unlock' : 'lock.release', key, lockId: held.id, outcome: 'ok', detail }] },
        };
      }, handOff.options);
      this.metrics.unlocks.inc({ result: result.outcome.replace('-', '_') });
      handOff.afterCommit(result);
      return result;
    } catch (err) {
      if (err instanceof StatelockError && err.status === 409) this.metrics.unlocks.inc({ result: 'refused' });
      throw err;
    }
  }

  /**
   * A release through an AWS door (S3 DeleteObject on `<key>.tflock`, DynamoDB DeleteItem): see
   * decideDoorRelease. `how` says what was sent, for the audit trail.
   * @throws StatelockError LOCK_ID_MISMATCH / DYNAMODB_CONDITION_FAILED (a condition that does not hold),
   *   HOLDER_ALIVE (a force-unlock of a lock held elsewhere whose holder is alive), FORBIDDEN (such a
   *   force-unlock by a caller whose `mayForceUnlock` says it lacks the permission; audited as refused).
   */
  async releaseThroughDoor(key: string, request: DoorReleaseRequest, client: ClientContext, how: string): Promise<DoorReleaseResult> {
    const handOff = this.handOff(key);
    try {
      const result = await this.store.update(key, client, (snap): Decision<DoorReleaseResult> => {
        const judgement = snap.lock ? judgeLock(snap.lock) : null;
        const decision = decideDoorRelease(key, snap.lock, request, judgement ? { verdict: judgement.verdict, reason: String(judgement.evidence.reason) } : undefined);
        const forcedByIntent = snap.lock !== null && !snap.lock.holds.includes(request.door);
        if (decision.kind === 'refuse') {
          const detail = { how, door: request.door, code: decision.error.code, holder: snap.lock?.id, verdict: judgement?.verdict };
          return { error: decision.error, changes: { audit: [{ action: forcedByIntent ? 'lock.force-unlock' : 'lock.release', key, lockId: request.id, outcome: 'refused', detail }] } };
        }
        if (decision.kind === 'already-free') return { result: { outcome: 'already-free', previous: null }, changes: {} };
        const held = snap.lock!;
        if (decision.kind === 'drop-hold') {
          return { result: { outcome: 'hold-dropped', previous: held }, changes: { lock: { touch: new Date().toISOString(), holds: decision.holds } } };
        }
        const detail = { how, door: request.door, verdict: judgement?.verdict, ...(request.evenIfAlive ? { evenIfAlive: true } : {}), ...heldDetail(held) };
        const endSession = decision.forced && held.sessionId ? { endSession: { id: held.sessionId, reason: `its lock was force-unlocked (${how})` } } : {};
        return {
          result: { outcome: decision.forced ? 'forced' : 'released', previous: held },
          changes: { lock: { clear: true }, ...endSession, audit: [{ action: decision.forced ? 'lock.force-unlock' : 'lock.release', key, lockId: held.id, outcome: 'ok', detail }] },
        };
      }, handOff.options);
      if (result.outcome === 'released' || result.outcome === 'forced') this.metrics.unlocks.inc({ result: result.outcome });
      handOff.afterCommit(result);
      return result;
    } catch (err) {
      if (err instanceof StatelockError && err.status < 500) this.metrics.unlocks.inc({ result: 'refused' });
      throw err;
    }
  }

  /**
   * The wrapper reports that its command exited: the session ends and, if it still holds its lock, the
   * lock is released in the same transaction — the holder is known dead. Idempotent.
   */
  async endSession(sessionId: string, reason: string, client: ClientContext): Promise<{ released: LockRecord | null }> {
    const session = await this.store.getSession(sessionId);
    if (!session) throw new StatelockError('SESSION_NOT_FOUND', { session: sessionId });
    const released = await this.store.update(session.key, client, (snap): Decision<LockRecord | null> => {
      const endSession = { id: sessionId, reason };
      if (snap.lock?.sessionId !== sessionId) return { result: null, changes: { endSession } };
      const how = `session ended: ${reason}`;
      return {
        result: snap.lock,
        changes: { endSession, lock: { clear: true }, audit: [{ action: 'lock.release', key: session.key, lockId: snap.lock.id, outcome: 'ok', detail: { how, session: sessionId, ...heldDetail(snap.lock) } }] },
      };
    });
    if (released) {
      this.metrics.unlocks.inc({ result: 'session_ended' });
      void this.waiters.wake(session.key);
    }
    return { released };
  }

  /**
   * `serve --release-dead-after`: releases every lock whose verdict has been `dead` for at least
   * `afterMs`, re-judging each inside its transaction. Returns how many were released.
   */
  async releaseDead(afterMs: number, client: ClientContext): Promise<number> {
    let released = 0;
    let after: string | undefined;
    for (;;) {
      const page = await this.store.listLocks({ limit: 500, ...(after ? { after } : {}) });
      for (const candidate of page.items) {
        if (!decideAutoRelease(judgeLock(candidate), Date.now(), afterMs)) continue;
        const done = await this.store.update(candidate.key, client, (snap): Decision<boolean> => {
          if (!snap.lock || snap.lock.id !== candidate.id) return { result: false, changes: {} };
          const judgement = judgeLock(snap.lock);
          if (!decideAutoRelease(judgement, Date.now(), afterMs)) return { result: false, changes: {} };
          const detail = { how: `released automatically: dead for ${Math.round(afterMs / 1000)}s or more`, evidence: judgement.evidence, ...heldDetail(snap.lock) };
          const endSession = snap.lock.sessionId ? { endSession: { id: snap.lock.sessionId, reason: 'its lock was released automatically: the holder was dead' } } : {};
          return { result: true, changes: { lock: { clear: true }, ...endSession, audit: [{ action: 'lock.auto-release', key: candidate.key, lockId: snap.lock.id, outcome: 'ok', detail }] } };
        });
        if (done) {
          released++;
          this.metrics.autoReleases.inc();
          void this.waiters.wake(candidate.key);
        }
      }
      if (!page.next) return released;
      after = page.next;
    }
  }

  /**
   * Wakes the key's line once a release is decided. Where the store lets it (SQLite's group commit), the wake
   * runs inside the release's transaction, so the first waiter's attempt joins it: the release and the grant
   * share one COMMIT (one fsync) and both are answered after it. Otherwise (PostgreSQL), after the commit.
   */
  private handOff(key: string): { options: UpdateOptions<UnlockResult | DoorReleaseResult>; afterCommit: (result: UnlockResult | DoorReleaseResult) => void } {
    const frees = (r: UnlockResult | DoorReleaseResult) => r.outcome === 'released' || r.outcome === 'forced';
    let woken = false;
    return {
      options: {
        applied: (result) => {
          if (!frees(result)) return;
          woken = true;
          void this.waiters.wake(key);
        },
      },
      afterCommit: (result) => {
        if (frees(result) && !woken) void this.waiters.wake(key);
      },
    };
  }

  get(key: string) {
    return this.store.getLock(key);
  }

  list(query: { prefix?: string; after?: string; limit: number }) {
    return this.store.listLocks(query);
  }

  count() {
    return this.store.countLocks();
  }

  /** Every held lock, page by page. */
  async all(): Promise<LockRecord[]> {
    const out: LockRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.listLocks({ limit: 1000, ...(after ? { after } : {}) });
      out.push(...page.items);
      if (!page.next) return out;
      after = page.next;
    }
  }

  /** Held locks by liveness verdict, and how many of them are stale (the overview and the metrics). */
  async summary(nowMs = Date.now()): Promise<{ held: number; alive: number; dead: number; unknown: number; stale: number }> {
    const counts = { held: 0, alive: 0, dead: 0, unknown: 0, stale: 0 };
    for (const lock of await this.all()) {
      const { verdict } = judgeLock(lock, nowMs);
      counts.held++;
      counts[verdict]++;
      if (isStale(verdict, Math.max(0, Math.round((nowMs - Date.parse(lock.lastActivityAt)) / 1000)))) counts.stale++;
    }
    return counts;
  }
}

function heldDetail(held: LockRecord) {
  return {
    operation: held.operation,
    who: held.who,
    acquiredAt: held.acquiredAt,
    lastActivityAt: held.lastActivityAt,
    heldSeconds: Math.round((Date.now() - Date.parse(held.acquiredAt)) / 1000),
    ...(held.sessionId ? { session: held.sessionId } : {}),
  };
}

/** Strings remembered for `ttlMs`, at most `max` of them (when full, the oldest half is forgotten). */
class RecentSet {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
  ) {}

  has(item: string): boolean {
    const at = this.seen.get(item);
    return at !== undefined && Date.now() - at < this.ttlMs;
  }

  add(item: string): void {
    if (this.seen.size >= this.max) for (const old of [...this.seen.keys()].slice(0, this.max / 2)) this.seen.delete(old);
    this.seen.set(item, Date.now());
  }
}
