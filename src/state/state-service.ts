import type { ClientContext } from '../audit/audit-entry.js';
import type { Metrics } from '../server/metrics.js';
import type { BodyContent, Decision, KeySnapshot, RejectedWrite, Store, VersionMeta } from '../store/store.js';
import { STATE_SCAN, StateHeaderReader, type Digests } from './state-file.js';
import { ScanFailedError } from './json-stream-scan.js';
import { BodyReader } from '../store/content/body-reader.js';
import { ingest, type IngestResult } from '../store/content/ingest.js';
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

/** A stored body as the services hand it out: its metadata and a reader that streams its bytes. */
export interface StoredBody<M> {
  meta: M;
  body: BodyReader;
}

/** A request body: streamed (the request itself) or already in memory. */
export type BodySource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** State use cases. Each one is a single {@link Store.update} around a pure rule. */
export class StateService {
  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
  ) {}

  /** The current version and a reader of its bytes, exactly as written; null when the key is empty or deleted. */
  async read(key: string): Promise<StoredBody<VersionMeta> | null> {
    return this.withReader(await this.store.readCurrent(key));
  }

  /** One version by seq or by serial (the newest with it); deleted keys' versions included. */
  async readVersion(key: string, which: { seq: number } | { serial: number }): Promise<StoredBody<VersionMeta> | null> {
    return this.withReader(await this.store.readVersion(key, which));
  }

  /** A version's reader reloads its manifest by seq if rekey re-files a chunk under it (versions are immutable). */
  private withReader(found: { meta: VersionMeta; content: BodyContent } | null): StoredBody<VersionMeta> | null {
    if (!found) return null;
    const { meta } = found;
    const reload = async () => (await this.store.readVersion(meta.key, { seq: meta.seq }))?.content ?? null;
    return { meta, body: new BodyReader(this.store, found.content, meta.size, reload) };
  }

  /** Every version of a key, oldest first. */
  listVersions(key: string, page: { after?: number; limit: number }) {
    return this.store.listVersions(key, page);
  }

  /** How many resource instances a version holds; null when its body is not a readable state (client-side encrypted, not JSON, or too large to parse here). */
  async countResources(meta: VersionMeta): Promise<number | null> {
    if (meta.encrypted || meta.size > MAX_PARSED_BYTES) return null;
    const found = await this.readVersion(meta.key, { seq: meta.seq });
    if (!found) return null;
    try {
      return countInstances(JSON.parse((await found.body.buffer()).toString('utf8')));
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

  async readRejected(key: string, id: number): Promise<StoredBody<RejectedWrite> | null> {
    const found = await this.store.readRejected(key, id);
    if (!found) return null;
    const reload = async () => (await this.store.readRejected(key, id))?.content ?? null;
    return { meta: found.meta, body: new BodyReader(this.store, found.content, found.meta.size, reload) };
  }

  /** Live states by key prefix. */
  list(query: { prefix?: string; after?: string; limit: number }) {
    return this.store.listStates(query);
  }

  /**
   * Stores `source` as the key's next version if the consistency rules allow it. The body streams through
   * the ingest (src/store/content/ingest.ts) — digests, the header reader and the chunk store in one pass —
   * and only then is the version committed; `expectedMd5` (Content-MD5, base64) and `verify` (a door's own
   * checks of the whole body's digests) are checked before that.
   * @throws StatelockError CONTENT_MD5_MISMATCH, INVALID_STATE (nothing stored), STATE_LOCKED /
   *   STATE_LOCKED_NO_ID (423), LINEAGE_MISMATCH / SERIAL_LOWER / SERIAL_SAME_DIFFERENT_CONTENT (409,
   *   audited as refused); whatever the source throws (PAYLOAD_TOO_LARGE, REQUEST_ABORTED …).
   */
  async write(
    key: string,
    source: BodySource,
    lockId: string | null,
    client: ClientContext,
    opts: { holderCheck?: boolean; expectedMd5?: string; verify?: (digests: Digests) => void } = {},
  ): Promise<WriteResult> {
    let ingested: IngestResult;
    try {
      ingested = await ingest(this.store, source, STATE_SCAN);
    } catch (err) {
      // The body is not one JSON object (found while it arrived): INVALID_STATE, as the header reader says it.
      throw err instanceof ScanFailedError ? StateHeaderReader.refusalOf(err.report) : err;
    }
    const { digests: sums, chunks } = ingested;
    if (opts.expectedMd5 !== undefined && opts.expectedMd5 !== sums.md5) throw new StatelockError('CONTENT_MD5_MISMATCH', { given: opts.expectedMd5, actual: sums.md5 });
    opts.verify?.(sums); // the door's own checks of the whole body (S3: payload hash, checksums), before any commit
    const header = StateHeaderReader.fromReport(ingested.scan!);
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
              ? { rejectedWrite: { lockId, serial: header.serial, lineage: header.lineage, size: sums.size, sha256: sums.sha256, reason: decision.error.message, clientAddr: client.addr, chunks } }
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
        return { result: { outcome: 'stored', version, overwritten }, changes: { ...touch, newVersion: { ...newVersion, chunks }, audit: [audit] } };
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
    const target = await this.readVersion(key, which); // versions are immutable: safe to read first
    if (!target) throw new StatelockError('VERSION_NOT_FOUND', { key, which: describe(which) });
    const decideOn = (snap: KeySnapshot) => decideRestore({ key, current: snap.current, highestSerial: snap.highestSerial, lock: snap.lock, lockId, target: target.meta });
    // The new body depends on the snapshot (its serial and lineage), and its chunks must be stored before the
    // transaction that names them: decide once, store that body, then commit only if the decision still holds.
    for (let attempt = 0; ; attempt++) {
      const planned = await this.store.update(key, client, (snap): Decision<ReturnType<typeof decideOn>> => ({ result: decideOn(snap), changes: {} }));
      if (planned.kind === 'refuse') throw planned.error;
      const body = rewriteStateHeader(await target.body.buffer(), planned);
      const { digests, chunks } = await ingest(this.store, [body]);
      const outcome = await this.store.update(key, client, (snap): Decision<{ version: VersionMeta; replaced: { seq: number; serial: number } | null } | 'moved'> => {
        const decision = decideOn(snap);
        if (decision.kind === 'refuse') return { error: decision.error, changes: {} };
        if (decision.serial !== planned.serial || decision.lineage !== planned.lineage) return { result: 'moved', changes: {} };
        const version: VersionMeta = {
          key,
          seq: snap.versionCount + 1,
          serial: decision.serial,
          lineage: decision.lineage,
          ...digests,
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
        return { result: { version, replaced }, changes: { newVersion: { ...newVersion, chunks }, audit: [{ action: 'state.restore', key, lockId: version.lockId, outcome: 'ok', detail }] } };
      });
      if (outcome !== 'moved') return outcome;
      // Another write landed in between: plan again (a few times; each round is two short transactions).
      if (attempt >= 4) throw new StatelockError('STORE_UNAVAILABLE', { reason: 'the state kept changing during the restore' });
    }
  }

  /**
   * Resources and outputs changed between two versions. `to` defaults to the current version, `from`
   * to the version before `to` (nothing, for the first version).
   * @throws StatelockError STATE_NOT_FOUND, VERSION_NOT_FOUND, DIFF_ENCRYPTED (422).
   */
  async diff(key: string, from: { seq: number } | { serial: number } | null, to: { seq: number } | { serial: number } | null, opts: { values?: boolean } = {}) {
    const toVersion = to ? await this.readVersion(key, to) : await this.read(key);
    if (!toVersion) throw to ? new StatelockError('VERSION_NOT_FOUND', { key, which: describe(to) }) : new StatelockError('STATE_NOT_FOUND', { key });
    const fromWhich = from ?? (toVersion.meta.seq > 1 ? { seq: toVersion.meta.seq - 1 } : null);
    const fromVersion = fromWhich ? await this.readVersion(key, fromWhich) : null;
    if (fromWhich && !fromVersion) throw new StatelockError('VERSION_NOT_FOUND', { key, which: describe(fromWhich) });
    for (const v of [fromVersion, toVersion]) if (v?.meta.encrypted) throw new StatelockError('DIFF_ENCRYPTED', { key, seq: v.meta.seq });
    const parse = async (v: StoredBody<VersionMeta>) => JSON.parse((await v.body.buffer()).toString('utf8'));
    const diff: StateDiff = diffStates(fromVersion ? await parse(fromVersion) : null, await parse(toVersion), opts);
    return { from: fromVersion?.meta ?? null, to: toVersion.meta, diff };
  }
}

function describe(which: { seq: number } | { serial: number }): string {
  return 'seq' in which ? `seq ${which.seq}` : `with serial ${which.serial}`;
}
