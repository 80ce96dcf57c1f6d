import type { Changes, Decision, KeySnapshot, PrincipalRecord, Store } from './store.js';
import type { Keyring } from './encryption.js';

/**
 * Encryption at rest as a Store decorator: every body that holds state bytes — versions, rejected
 * writes, multipart parts — is sealed (AES-256-GCM, src/store/encryption.ts) before it reaches the
 * engine and opened when it is read back; so are the principals' AWS secrets. Digests (md5, sha256,
 * size) are those of the plaintext, computed before the store, so Content-MD5, ETags and the DynamoDB
 * digest item do not change. With no key configured it still runs, sealing nothing: a sealed body then
 * answers ENCRYPTION_KEY_MISSING instead of being served as if it were the state. Everything else — keys, serials, lock info, audit details — stays readable
 * to whoever holds the database (docs/operations.md says so).
 */
export function encryptedStore(inner: Store, keyring: Keyring): Store {
  const sealText = (text: string | null) => (text === null ? null : keyring.sealText(text));
  const openText = (text: string | null) => (text === null ? null : keyring.openText(text));
  const openPrincipal = <T extends PrincipalRecord | null>(p: T): T => (p ? { ...p, awsSecret: openText(p.awsSecret) } : p);
  const sealChanges = (changes: Changes): Changes => ({
    ...changes,
    ...(changes.newVersion ? { newVersion: { ...changes.newVersion, body: keyring.seal(changes.newVersion.body) } } : {}),
    ...(changes.rejectedWrite ? { rejectedWrite: { ...changes.rejectedWrite, body: keyring.seal(changes.rejectedWrite.body) } } : {}),
  });
  const overrides: Partial<Store> = {
    update<T>(key: string, client: Parameters<Store['update']>[1], decide: (s: KeySnapshot) => Decision<T>, opts?: { probeLockId?: string | null }) {
      return inner.update(key, client, (snap) => {
        const d = decide(snap);
        return { ...d, changes: sealChanges(d.changes) } as Decision<T>;
      }, opts);
    },
    async readCurrent(key) {
      const r = await inner.readCurrent(key);
      return r && { meta: r.meta, body: keyring.open(r.body) };
    },
    async readVersion(key, which) {
      const r = await inner.readVersion(key, which);
      return r && { meta: r.meta, body: keyring.open(r.body) };
    },
    async readRejected(key, id) {
      const r = await inner.readRejected(key, id);
      return r && { meta: r.meta, body: keyring.open(r.body) };
    },
    putPart: (uploadId, partNumber, body, md5) => inner.putPart(uploadId, partNumber, keyring.seal(body), md5),
    async readPart(uploadId, partNumber) {
      const body = await inner.readPart(uploadId, partNumber);
      return body && keyring.open(body);
    },
    createPrincipal: (p, audit, client) => inner.createPrincipal({ ...p, awsSecret: sealText(p.awsSecret) }, audit, client),
    getPrincipal: async (id) => openPrincipal(await inner.getPrincipal(id)),
    getPrincipalByAccessKey: async (id) => openPrincipal(await inner.getPrincipalByAccessKey(id)),
    listPrincipals: async () => (await inner.listPrincipals()).map((p) => openPrincipal(p)),
    revokePrincipal: async (name, at, audit, client) => openPrincipal(await inner.revokePrincipal(name, at, audit, client)),
  };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof Store];
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** What `statelock rekey` does to one stored body: seal it with the newest key, or null when it already is. */
export function rekeyBody(keyring: Keyring, stored: Buffer): Buffer | null {
  if (!keyring.newest) return null;
  return keyring.isCurrent(stored) ? null : keyring.seal(keyring.open(stored));
}
