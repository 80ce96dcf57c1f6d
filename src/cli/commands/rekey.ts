import { resolve } from 'node:path';
import type { Command } from '../command.js';
import { parseOptions } from '../parse-options.js';
import { UsageError } from '../usage-error.js';
import { encryptionKeysFrom } from './serve.js';
import { PostgresStore } from '../../store/postgres/postgres-store.js';
import { SqliteStore } from '../../store/sqlite/sqlite-store.js';
import { Keyring } from '../../store/encryption.js';
import { rekeyBody, rekeyChunk } from '../../store/encrypted-store.js';

/**
 * `statelock rekey [--data DIR | --database URL] [--encryption-key-file F]`: seals every stored body and
 * chunk (plaintext ones included) with the newest key, and re-files every chunk under an id of the newest
 * key, so that older keys can be retired. Works on the
 * database directly — beside a running server or offline — and is idempotent. On SQLite it then
 * rebuilds the file (VACUUM) so that free pages keep no old bytes.
 */
export const rekeyCommand: Command = async (args, ctx) => {
  const { values } = parseOptions({ args, options: { data: { type: 'string' }, database: { type: 'string' }, 'encryption-key-file': { type: 'string' } } });
  const keys = encryptionKeysFrom(values['encryption-key-file']);
  if (!keys) throw new UsageError('rekey needs the keys: --encryption-key-file FILE or STATELOCK_ENCRYPTION_KEY (the newest key last)');
  const keyring = new Keyring(keys);
  const url = values.database ?? (process.env.STATELOCK_DATABASE_URL || undefined);
  const store = url ? await PostgresStore.open(url) : new SqliteStore(resolve(values.data ?? '.statelock'));
  try {
    // Chunks are resealed and re-filed under the newest key's ids (docs/storage.md): afterwards no chunk's data
    // or id depends on an older key.
    const { scanned, rewritten } = await store.rewriteBodies((body) => rekeyBody(keyring, body), (secret) => keyring.rekeyText(secret), (chunk) => rekeyChunk(keyring, chunk));
    if (store instanceof SqliteStore) await store.compact();
    ctx.io.out(`Re-encrypted ${rewritten} of ${scanned} stored bodies and secrets with key "${keyring.newest!.id}"; ${scanned - rewritten} already were.\n`);
    return 0;
  } finally {
    await store.close();
  }
};
