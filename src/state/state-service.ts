import type { ClientContext } from '../audit/audit-entry.js';
import type { Metrics } from '../server/metrics.js';
import type { Decision, KeySnapshot, Store, VersionMeta } from '../store/store.js';
import { digest, parseStateHeader } from './state-file.js';
import { decideDelete, decideWrite } from './write-rules.js';
import { decideRestore } from './restore-rules.js';
import { rewriteStateHeader } from './state-header-rewrite.js';
import { countInstances, diffStates, type StateDiff } from './state-diff.js';
import { StatelockError } from '../server/errors.js';

/** Versions larger than this are not parsed to count their resources (the dashboard's chart shows a gap). */
const MAX_PARSED_BYTES = 16 * 1024 * 1024;

/** The overwritten version, when a forced write replaced one the rules protect. */
export type Overwritten = { seq: number; serial: number; lineage: string };
export type WriteResult = { outcome: 'stored'; version: VersionMeta; overwritten: Overwritten | null } | { outcome: 'unchanged'; version: VersionMeta; overwritten: null };

/** State use cases. Each one is a single {@link Store.update} around a pure rule. */
export class StateService {
  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
  ) {}

  /** The current bytes, exactly as written, or null when the key is empty or deleted. */
  read(key: string) {
    return this.store.readCurrent(key);
  }

  /** One version's bytes by seq or by serial (the newest with it); deleted keys' versions included. */
  readVersion(key: string, which: { seq: number } | { serial: number }) {
    return this.store.readVersion(key, which);
  }

  /** Every version of a key, oldest first. */
  listVersions(key: string, page: { after?: number; limit: number }) {
    return this.store.listVersions(key, page);
  }

  /** How many resource instances a version holds; null when its body is not a readable state (client-side encrypted, not JSON, or too large to parse here). */
  async countResources(meta: VersionMeta): Promise<number | null> {
    if (meta.encrypted || meta.size > MAX_PARSED_BYTES) return null;
    const found = await this.store.readVersion(meta.key, { seq: meta.seq });
    if (!found) return null;
    try {
      return countInstances(JSON.parse(found.body.toString('utf8')));
    } catch {
      return null;
    }
  }

  count(prefix?: string) {
    return this.store.countStates(prefix);
  }

  /** Writes refused by fencing, kept with their bodies. */
  listRejected(key: string, page: { after?: number; limit: number }) {
    return this.store.listRejected(key, page);
  }

  readRejected(key: string, id: number) {
    return this.store.readRejected(key, id);
  }

  /** Live states by key prefix. */
  list(query: { prefix?: string; after?: string; limit: number }) {
    return this.store.listStates(query);
  }

  /**
   * Stores `body` as the key's next version if the consistency rules allow it.
   * @throws StatelockError INVALID_STATE (nothing stored), STATE_LOCKED / STATE_LOCKED_NO_ID (423),
   *   LINEAGE_MISMATCH / SERIAL_LOWER / SERIAL_SAME_DIFFERENT_CONTENT (409, audited as refused).
   */
  async write(key: string, body: Buffer, lockId: string | null, client: ClientContext, opts: { holderCheck?: boolean } = {}): Promise<WriteResult> {
    const header = parseStateHeader(body);
    const sums = digest(body);
    const incoming = { serial: header.serial, lineage: header.lineage, sha256: sums.sha256 };
    try {
      const result = await this.store.update(key, client, (snap: KeySnapshot): Decision<WriteResult> => {
        const decision = decideWrite({ key, current: snap.current, incoming, lock: snap.lock, lockId, lockIdReleased: snap.probedLockIdReleased, holderCheck: opts.holderCheck ?? true });
        const base = { key, lockId, detail: { serial: header.serial, lineage: header.lineage, size: sums.size } };
        if (decision.kind === 'refuse') {
          const audit = { ...base, action: 'state.write.refused' as const, outcome: 'refused' as const, detail: { ...base.detail, code: decision.error.code, reason: decision.error.message } };
          // A fenced write is the work of a holder that lost its lock: keep it, never lose it silently.
          const rejectedWrite =
            decision.error.code === 'LOCK_FENCED' && lockId
              ? { rejectedWrite: { lockId, serial: header.serial, lineage: header.lineage, size: sums.size, sha256: sums.sha256, reason: decision.error.message, clientAddr: client.addr, body } }
              : {};
          return { error: decision.error, changes: { audit: [audit], ...rejectedWrite } };
        }
        // A write under the lock is the holder's activity (liveness); an S3 write cannot say whose it is.
        const touch = snap.lock && (lockId === snap.lock.id || opts.holderCheck === false) ? { lock: { touch: new Date().toISOString() } } : {};
        if (decision.kind === 'unchanged') return { result: { outcome: 'unchanged', version: snap.current!, overwritten: null }, changes: touch };
        const version: VersionMeta = {
          key,
          seq: snap.versionCount + 1,
          serial: header.serial,
          lineage: header.lineage,
          ...sums,
          encrypted: header.encrypted,
          createdAt: new Date().toISOString(),
          lockId,
          operation: snap.lock?.operation ?? null,
          clientAddr: client.addr,
          forced: decision.forced,
        };
        const overwritten: Overwritten | null = decision.forced && snap.current ? { seq: snap.current.seq, serial: snap.current.serial, lineage: snap.current.lineage } : null;
        const audit = {
          ...base,
          action: decision.forced ? ('state.write.forced' as const) : ('state.write' as const),
          outcome: 'ok' as const,
          detail: { ...base.detail, ...(decision.forced ? { reason: decision.forced, operation: snap.lock?.operation } : {}), ...(overwritten ? { overwritten } : {}) },
        };
        const { key: _key, ...newVersion } = version;
        return { result: { outcome: 'stored', version, overwritten }, changes: { ...touch, newVersion: { ...newVersion, body }, audit: [audit] } };
      }, { probeLockId: lockId });
      this.metrics.writes.inc({ result: result.outcome === 'stored' && result.version.forced ? 'forced' : result.outcome });
      return result;
    } catch (err) {
      if (err instanceof StatelockError) this.metrics.writes.inc({ result: err.code === 'LOCK_FENCED' ? 'fenced' : 'refused' });
      throw err;
    }
  }

  /**
   * Soft delete: the key leaves GET and listings; every version stays readable through the API.
   * Refused (423) while another client holds the lock, unless `evenIfLocked` (S3 DeleteObject). Deleting
   * an empty key succeeds.
   */
  async delete(key: string, client: ClientContext, opts: { evenIfLocked?: boolean } = {}): Promise<boolean> {
    return this.store.update(key, client, (snap): Decision<boolean> => {
      const decision = decideDelete(key, snap.current !== null, snap.lock, opts);
      if (decision.kind === 'refuse') {
        const detail = { code: decision.error.code, holder: snap.lock?.id };
        return { error: decision.error, changes: { audit: [{ action: 'state.delete', key, lockId: null, outcome: 'refused', detail }] } };
      }
      if (decision.kind === 'nothing') return { result: false, changes: {} };
      const { seq, serial } = snap.current!;
      return {
        result: true,
        changes: { deleteState: true, audit: [{ action: 'state.delete', key, lockId: null, outcome: 'ok', detail: { serial, seq, ...(snap.lock ? { lockHeldBy: snap.lock.id } : {}) } }] },
      };
    });
  }

  /**
   * Roll-forward restore of an old version (see decideRestore): its content becomes a new version with
   * the next serial and the current lineage; the version it replaces stays. One transaction.
   * @throws StatelockError VERSION_NOT_FOUND, STATE_LOCKED (423), RESTORE_ENCRYPTED (422).
   */
  async restore(
    key: string,
    which: { seq: number } | { serial: number },
    lockId: string | null,
    client: ClientContext,
  ): Promise<{ version: VersionMeta; replaced: { seq: number; serial: number } | null }> {
    const target = await this.store.readVersion(key, which); // versions are immutable: safe to read first
    if (!target) throw new StatelockError('VERSION_NOT_FOUND', { key, which: describe(which) });
    return this.store.update(key, client, (snap): Decision<{ version: VersionMeta; replaced: { seq: number; serial: number } | null }> => {
      const decision = decideRestore({ key, current: snap.current, highestSerial: snap.highestSerial, lock: snap.lock, lockId, target: target.meta });
      if (decision.kind === 'refuse') return { error: decision.error, changes: {} };
      const body = rewriteStateHeader(target.body, decision);
      const version: VersionMeta = {
        key,
        seq: snap.versionCount + 1,
        serial: decision.serial,
        lineage: decision.lineage,
        ...digest(body),
        encrypted: false,
        createdAt: new Date().toISOString(),
        lockId: snap.lock ? lockId : null,
        operation: 'restore',
        clientAddr: client.addr,
        forced: null,
      };
      const { key: _key, ...newVersion } = version;
      const detail = { fromSeq: target.meta.seq, fromSerial: target.meta.serial, serial: decision.serial, lineage: decision.lineage, replacedSeq: snap.current?.seq ?? null };
      const replaced = snap.current ? { seq: snap.current.seq, serial: snap.current.serial } : null;
      return { result: { version, replaced }, changes: { newVersion: { ...newVersion, body }, audit: [{ action: 'state.restore', key, lockId: version.lockId, outcome: 'ok', detail }] } };
    });
  }

  /**
   * Resources and outputs changed between two versions. `to` defaults to the current version, `from`
   * to the version before `to` (nothing, for the first version).
   * @throws StatelockError STATE_NOT_FOUND, VERSION_NOT_FOUND, DIFF_ENCRYPTED (422).
   */
  async diff(key: string, from: { seq: number } | { serial: number } | null, to: { seq: number } | { serial: number } | null, opts: { values?: boolean } = {}) {
    const toVersion = to ? await this.store.readVersion(key, to) : await this.store.readCurrent(key);
    if (!toVersion) throw to ? new StatelockError('VERSION_NOT_FOUND', { key, which: describe(to) }) : new StatelockError('STATE_NOT_FOUND', { key });
    const fromWhich = from ?? (toVersion.meta.seq > 1 ? { seq: toVersion.meta.seq - 1 } : null);
    const fromVersion = fromWhich ? await this.store.readVersion(key, fromWhich) : null;
    if (fromWhich && !fromVersion) throw new StatelockError('VERSION_NOT_FOUND', { key, which: describe(fromWhich) });
    for (const v of [fromVersion, toVersion]) if (v?.meta.encrypted) throw new StatelockError('DIFF_ENCRYPTED', { key, seq: v.meta.seq });
    const diff: StateDiff = diffStates(fromVersion ? JSON.parse(fromVersion.body.toString('utf8')) : null, JSON.parse(toVersion.body.toString('utf8')), opts);
    return { from: fromVersion?.meta ?? null, to: toVersion.meta, diff };
  }
}

function describe(which: { seq: number } | { serial: number }): string {
  return 'seq' in which ? `seq ${which.seq}` : `with serial ${which.serial}`;
}
