import type { AuditAction, ClientContext, NewAuditEntry } from '../audit/audit-entry.js';
import type { Keyring } from './encryption.js';
import type {
  AuditQuery,
  BucketRecord,
  Changes,
  Decision,
  KeySnapshot,
  LockTableRecord,
  PrincipalRecord,
  SessionRecord,
  Store,
  UploadRecord,
} from './store.js';

/**
 * Encryption at rest as a Store decorator: every body that holds state bytes — versions, rejected
 * writes, multipart parts — is sealed (AES-256-GCM, src/store/encryption.ts) before it reaches the
 * engine and opened when it is read back; so are the principals' AWS secrets. Digests (md5, sha256,
 * size) are those of the plaintext, computed before the store, so Content-MD5, ETags and the DynamoDB
 * digest item do not change. With no key configured it still runs, sealing nothing: a sealed body then
 * answers ENCRYPTION_KEY_MISSING instead of being served as if it were the state. Everything else — keys,
 * serials, lock info, audit details — stays readable to whoever holds the database (docs/operations.md
 * says so).
 *
 * A class that spells out every Store method (rather than a Proxy that forwards the rest): a method added
 * to the Store interface does not compile until someone decides here whether it carries state bytes.
 */
export class EncryptedStore implements Store {
  readonly engine: string;
  readonly onLockReleased?: (listener: (key: string) => void) => void;

  constructor(
    private readonly inner: Store,
    private readonly keyring: Keyring,
  ) {
    this.engine = inner.engine;
    if (inner.onLockReleased) this.onLockReleased = (listener) => inner.onLockReleased!(listener);
  }

  // --- Sealed on the way in, opened on the way out. ---

  update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, opts?: { probeLockId?: string | null }): Promise<T> {
    return this.inner.update(key, client, (snapshot) => {
      const d = decide(snapshot);
      return { ...d, changes: this.sealChanges(d.changes) };
    }, opts);
  }

  private sealChanges(changes: Changes): Changes {
    const sealed = { ...changes };
    if (changes.newVersion) sealed.newVersion = { ...changes.newVersion, body: this.keyring.seal(changes.newVersion.body) };
    if (changes.rejectedWrite) sealed.rejectedWrite = { ...changes.rejectedWrite, body: this.keyring.seal(changes.rejectedWrite.body) };
    return sealed;
  }

  async readCurrent(key: string) {
    const r = await this.inner.readCurrent(key);
    return r && { meta: r.meta, body: this.keyring.open(r.body) };
  }

  async readVersion(key: string, which: { seq: number } | { serial: number }) {
    const r = await this.inner.readVersion(key, which);
    return r && { meta: r.meta, body: this.keyring.open(r.body) };
  }

  async readRejected(key: string, id: number) {
    const r = await this.inner.readRejected(key, id);
    return r && { meta: r.meta, body: this.keyring.open(r.body) };
  }

  putPart(uploadId: string, partNumber: number, body: Buffer, md5: string): Promise<void> {
    return this.inner.putPart(uploadId, partNumber, this.keyring.seal(body), md5);
  }

  async readPart(uploadId: string, partNumber: number): Promise<Buffer | null> {
    const body = await this.inner.readPart(uploadId, partNumber);
    return body && this.keyring.open(body);
  }

  createPrincipal(principal: PrincipalRecord, audit: NewAuditEntry, client: ClientContext): Promise<boolean> {
    return this.inner.createPrincipal({ ...principal, awsSecret: principal.awsSecret === null ? null : this.keyring.sealText(principal.awsSecret) }, audit, client);
  }

  async getPrincipal(id: string) {
    return this.openPrincipal(await this.inner.getPrincipal(id));
  }

  async getPrincipalByAccessKey(accessKeyId: string) {
    return this.openPrincipal(await this.inner.getPrincipalByAccessKey(accessKeyId));
  }

  async listPrincipals() {
    return (await this.inner.listPrincipals()).map((p) => this.openPrincipal(p));
  }

  async revokePrincipal(name: string, at: string, audit: NewAuditEntry, client: ClientContext) {
    return this.openPrincipal(await this.inner.revokePrincipal(name, at, audit, client));
  }

  private openPrincipal<T extends PrincipalRecord | null>(p: T): T {
    return p && { ...p, awsSecret: p.awsSecret === null ? null : this.keyring.openText(p.awsSecret) };
  }

  /** Passed through: the transforms see the stored (sealed) bytes; this is how `statelock rekey` works. */
  rewriteBodies(transform: (body: Buffer) => Buffer | null, transformSecret?: (text: string) => string | null) {
    return this.inner.rewriteBodies(transform, transformSecret);
  }

  // --- No state bytes: passed through. ---

  listVersions(key: string, opts: { after?: number; limit: number }) {
    return this.inner.listVersions(key, opts);
  }
  listStates(opts: { prefix?: string; after?: string; limit: number }) {
    return this.inner.listStates(opts);
  }
  getLock(key: string) {
    return this.inner.getLock(key);
  }
  listLocks(opts: { prefix?: string; after?: string; limit: number }) {
    return this.inner.listLocks(opts);
  }
  countLocks() {
    return this.inner.countLocks();
  }
  countStates(prefix?: string) {
    return this.inner.countStates(prefix);
  }
  listAudit(query: AuditQuery) {
    return this.inner.listAudit(query);
  }
  countAudit(query: { since: string; actions: readonly AuditAction[] }) {
    return this.inner.countAudit(query);
  }
  createSession(session: SessionRecord) {
    return this.inner.createSession(session);
  }
  renewSession(id: string, expiresAt: string, at: string) {
    return this.inner.renewSession(id, expiresAt, at);
  }
  getSession(id: string) {
    return this.inner.getSession(id);
  }
  listRejected(key: string, opts: { after?: number; limit: number }) {
    return this.inner.listRejected(key, opts);
  }
  countLivePrincipals() {
    return this.inner.countLivePrincipals();
  }
  createBucket(bucket: BucketRecord) {
    return this.inner.createBucket(bucket);
  }
  getBucket(name: string) {
    return this.inner.getBucket(name);
  }
  listBuckets() {
    return this.inner.listBuckets();
  }
  deleteBucket(name: string) {
    return this.inner.deleteBucket(name);
  }
  createLockTable(table: LockTableRecord) {
    return this.inner.createLockTable(table);
  }
  getLockTable(name: string) {
    return this.inner.getLockTable(name);
  }
  listLockTables() {
    return this.inner.listLockTables();
  }
  deleteLockTable(name: string) {
    return this.inner.deleteLockTable(name);
  }
  createUpload(upload: UploadRecord) {
    return this.inner.createUpload(upload);
  }
  getUpload(id: string) {
    return this.inner.getUpload(id);
  }
  listParts(uploadId: string) {
    return this.inner.listParts(uploadId);
  }
  deleteUpload(id: string) {
    return this.inner.deleteUpload(id);
  }
  close() {
    return this.inner.close();
  }
}

/** The store the server uses: `inner` behind the decorator (always, even without keys: see above). */
export function encryptedStore(inner: Store, keyring: Keyring): Store {
  return new EncryptedStore(inner, keyring);
}

/** What `statelock rekey` does to one stored body: seal it with the newest key, or null when it already is. */
export function rekeyBody(keyring: Keyring, stored: Buffer): Buffer | null {
  if (!keyring.newest) return null;
  return keyring.isCurrent(stored) ? null : keyring.seal(keyring.open(stored));
}
