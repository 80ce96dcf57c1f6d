import type { AuditAction, ClientContext, NewAuditEntry } from '../audit/audit-entry.js';
import { inflateRawSync } from 'node:zlib';
import type { Keyring } from './encryption.js';
import type {
  AuditQuery,
  BodyContent,
  BucketRecord,
  Decision,
  KeySnapshot,
  LockTableRecord,
  PrincipalRecord,
  SessionRecord,
  Store,
  StoredChunk,
  UploadRecord,
  UpdateOptions,
} from './store.js';

/**
 * Encryption at rest as a Store decorator: everything that holds state bytes — the chunks of versions and
 * rejected writes (sealed after compression), legacy whole bodies, multipart parts — is sealed (AES-256-GCM,
 * src/store/encryption.ts) before it reaches the engine and opened when it is read back; so are the
 * principals' AWS secrets. Chunk ids are keyed (an HMAC, see Keyring.chunkId), never a plain hash of
 * plaintext, while a key is configured. Digests (md5, sha256,
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

  /** Versions and rejected writes carry manifests only: their bytes were sealed chunk by chunk in putChunks. */
  update<T>(key: string, client: ClientContext, decide: (snapshot: KeySnapshot) => Decision<T>, opts?: UpdateOptions<T>): Promise<T> {
    return this.inner.update(key, client, decide, opts);
  }

  chunkId(plain: Buffer): string {
    return this.keyring.chunkId(plain) ?? this.inner.chunkId(plain);
  }

  putChunks(chunks: StoredChunk[]): Promise<void> {
    return this.inner.putChunks(this.keyring.newest ? chunks.map((c) => sealChunk(this.keyring, c, c.data)) : chunks);
  }

  async getChunks(ids: readonly string[]): Promise<StoredChunk[]> {
    return (await this.inner.getChunks(ids)).map((c) => openChunk(this.keyring, c));
  }

  /** A legacy row's whole body is opened; a manifest has nothing sealed in it. */
  private openContent(content: BodyContent): BodyContent {
    return content.kind === 'whole' ? { kind: 'whole', body: this.keyring.open(content.body) } : content;
  }

  async readCurrent(key: string) {
    const r = await this.inner.readCurrent(key);
    return r && { meta: r.meta, content: this.openContent(r.content) };
  }

  async readVersion(key: string, which: { seq: number } | { serial: number }) {
    const r = await this.inner.readVersion(key, which);
    return r && { meta: r.meta, content: this.openContent(r.content) };
  }

  async readRejected(key: string, id: number) {
    const r = await this.inner.readRejected(key, id);
    return r && { meta: r.meta, content: this.openContent(r.content) };
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
  rewriteBodies(transform: (body: Buffer) => Buffer | null, transformSecret?: (text: string) => string | null, transformChunk?: (chunk: StoredChunk) => StoredChunk | null) {
    return this.inner.rewriteBodies(transform, transformSecret, transformChunk);
  }

  presentChunks(ids: readonly string[]) {
    return this.inner.presentChunks(ids);
  }
  sweepChunks(olderThan: string) {
    return this.inner.sweepChunks(olderThan);
  }
  chunkStats() {
    return this.inner.chunkStats();
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

/**
 * What `statelock rekey` does to one stored chunk: seal its data with the newest key and re-file it under
 * the newest key's id for its plaintext (the store moves its references), or null when both already hold.
 * Chunks stored before encryption was on (plaintext, SHA-256 ids) are sealed and re-filed the same way.
 */
export function rekeyChunk(keyring: Keyring, stored: StoredChunk): StoredChunk | null {
  if (!keyring.newest) return null;
  if (stored.codec.startsWith('sealed-') && keyring.isCurrent(stored.data) && stored.id.startsWith(`${keyring.newest.id}.`)) return null;
  const opened = openChunk(keyring, stored);
  const plain = opened.codec === 'deflate' ? inflateRawSync(opened.data) : opened.data;
  return sealChunk(keyring, { ...opened, id: keyring.chunkId(plain)! }, opened.data);
}

/** An encoded chunk sealed with the newest key: its codec says so (`sealed-…`). */
function sealChunk(keyring: Keyring, chunk: StoredChunk, encoded: Buffer): StoredChunk {
  return { ...chunk, codec: chunk.codec === 'deflate' ? 'sealed-deflate' : 'sealed-raw', data: keyring.seal(encoded) };
}

/** A stored chunk as the content layer reads it: opened when its codec says it is sealed, as it is otherwise. */
function openChunk(keyring: Keyring, chunk: StoredChunk): StoredChunk {
  if (chunk.codec === 'sealed-raw') return { ...chunk, codec: 'raw', data: keyring.open(chunk.data) };
  if (chunk.codec === 'sealed-deflate') return { ...chunk, codec: 'deflate', data: keyring.open(chunk.data) };
  return chunk;
}
