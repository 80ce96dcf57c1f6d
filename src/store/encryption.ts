import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { StatelockError } from '../server/errors.js';

/** A named AES-256 key. */
export interface EncryptionKey {
  id: string;
  key: Buffer;
}

/** Every sealed body starts with this: bodies without it were stored before encryption was turned on. */
const MAGIC = Buffer.from('SLE1');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * `id:base64key` entries separated by commas or newlines; the last is the newest. Returns the keys, or
 * the reason the text is not a key list (never echoing key material).
 */
export function parseEncryptionKeys(text: string): EncryptionKey[] | { error: string } {
  const entries = text.split(/[\n,]/).map((e) => e.trim()).filter((e) => e !== '' && !e.startsWith('#'));
  if (entries.length === 0) return { error: 'no key given: expected one or more <key id>:<base64 of 32 random bytes>' };
  const keys: EncryptionKey[] = [];
  for (const [i, entry] of entries.entries()) {
    const at = entry.indexOf(':');
    const id = at > 0 ? entry.slice(0, at) : '';
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) return { error: `entry ${i + 1} has no valid key id before ":" (1-64 of A-Z a-z 0-9 . _ -)` };
    const text = entry.slice(at + 1).trim();
    // Buffer.from(…, 'base64') skips what is not base64; a typo must not quietly become another key.
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) && !/^[A-Za-z0-9_-]+={0,2}$/.test(text)) return { error: `key "${id}" is not base64 (make one with: openssl rand -base64 32)` };
    const key = Buffer.from(text, 'base64');
    if (key.length !== 32) return { error: `key "${id}" is ${key.length} bytes after base64 decoding; AES-256 needs 32 (make one with: openssl rand -base64 32)` };
    if (keys.some((k) => k.id === id)) return { error: `key id "${id}" appears twice` };
    keys.push({ id, key });
  }
  return keys;
}

/**
 * Seals and opens stored bodies with AES-256-GCM: `SLE1`, key-id length, key id, 12-byte IV, 16-byte tag,
 * ciphertext. The prefix up to the key id is authenticated too, so a body cannot be relabelled to
 * another key. New bodies are sealed with the newest key; any configured key opens.
 */
export class Keyring {
  /** The key new bodies are sealed with; null: encryption is off (bodies are stored as they are). */
  readonly newest: EncryptionKey | null;
  private readonly byId: Map<string, Buffer>;
  /** The HMAC key naming chunks, derived from the newest key (docs/storage.md); null while encryption is off. */
  private readonly chunkIdKey: Buffer | null;

  constructor(keys: EncryptionKey[]) {
    this.newest = keys.length > 0 ? keys[keys.length - 1]! : null;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
    this.chunkIdKey = this.newest ? Buffer.from(hkdfSync('sha256', this.newest.key, Buffer.alloc(0), 'statelock chunk id v1', 32)) : null;
  }

  /**
   * The id of a plaintext chunk under the newest key: `<key id>.<HMAC-SHA256 hex>`, so that whoever holds
   * only the database cannot confirm a guessed chunk; null while encryption is off (the engine's SHA-256).
   */
  chunkId(plain: Buffer): string | null {
    if (!this.chunkIdKey) return null;
    return `${this.newest!.id}.${createHmac('sha256', this.chunkIdKey).update(plain).digest('hex')}`;
  }

  seal(plain: Buffer): Buffer {
    if (!this.newest) return plain;
    const header = Buffer.concat([MAGIC, Buffer.from([Buffer.byteLength(this.newest.id)]), Buffer.from(this.newest.id)]);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.newest.key, iv);
    cipher.setAAD(header);
    const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, iv, cipher.getAuthTag(), ciphertext]);
  }

  /** The plaintext of a stored body; a body without the prefix is returned as it is (stored before encryption). */
  open(stored: Buffer): Buffer {
    const id = keyIdOf(stored);
    if (id === null) return stored;
    const key = this.byId.get(id);
    if (!key) throw new StatelockError('ENCRYPTION_KEY_MISSING', { keyId: id });
    const headerLength = MAGIC.length + 1 + Buffer.byteLength(id);
    const iv = stored.subarray(headerLength, headerLength + IV_BYTES);
    const tag = stored.subarray(headerLength + IV_BYTES, headerLength + IV_BYTES + TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(stored.subarray(0, headerLength));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(stored.subarray(headerLength + IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new StatelockError('ENCRYPTION_FAILED', { keyId: id });
    }
  }

  /** Is this stored body already sealed with the newest key (nothing for rekey to do)? */
  isCurrent(stored: Buffer): boolean {
    return keyIdOf(stored) === (this.newest?.id ?? null);
  }

  /** A secret kept in a text column: sealed as `sle1:` + base64, or left as it is while encryption is off. */
  sealText(text: string): string {
    return this.newest ? SEALED_TEXT + this.seal(Buffer.from(text, 'utf8')).toString('base64') : text;
  }

  openText(text: string): string {
    return text.startsWith(SEALED_TEXT) ? this.open(Buffer.from(text.slice(SEALED_TEXT.length), 'base64')).toString('utf8') : text;
  }

  /** Rekey of a text secret: sealed with the newest key, or null when it already is. */
  rekeyText(text: string): string | null {
    const sealed = text.startsWith(SEALED_TEXT) ? Buffer.from(text.slice(SEALED_TEXT.length), 'base64') : null;
    if (sealed && this.isCurrent(sealed)) return null;
    return this.sealText(this.openText(text));
  }
}

const SEALED_TEXT = 'sle1:';

/** The key id a stored body is sealed with, or null for a plaintext body. */
export function keyIdOf(stored: Buffer): string | null {
  if (stored.length < MAGIC.length + 1 || !stored.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const length = stored[MAGIC.length]!;
  if (stored.length < MAGIC.length + 1 + length + IV_BYTES + TAG_BYTES) return null;
  return stored.subarray(MAGIC.length + 1, MAGIC.length + 1 + length).toString('utf8');
}
