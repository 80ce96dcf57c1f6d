import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { keyPath, type ApiClient } from './api-client.js';

/** `acme/lesson-17/terraform.tfstate` → `acme-lesson-17-terraform.tfstate`: safe in a file name, still recognisable. */
export function keySlug(key: string): string {
  return key
    .split('/')
    .map((s) => s.replace(/[^A-Za-z0-9._-]/g, '_'))
    .join('-');
}

/** The lesson's `state-backup-$(date +%Y%m%d-%H%M%S).json`, with the key in it, in UTC. */
export function backupFileName(key: string, at: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${at.getUTCFullYear()}${p(at.getUTCMonth() + 1)}${p(at.getUTCDate())}-${p(at.getUTCHours())}${p(at.getUTCMinutes())}${p(at.getUTCSeconds())}`;
  return `state-backup-${keySlug(key)}-${stamp}.json`;
}

/**
 * Writes the current state of `key`, byte for byte, to `dir`. Resolves null when the key has no live
 * state (nothing to back up); other failures reject. Never overwrites an existing file.
 */
export async function writeBackup(api: ApiClient, key: string, dir: string, at: Date): Promise<{ path: string; size: number; serial: number } | null> {
  let res: Response;
  try {
    res = await api.call('GET', `/api/v1/content/${keyPath(key)}`);
  } catch (err) {
    if ((err as { status?: number }).status === 404) return null;
    throw err;
  }
  const bytes = Buffer.from(await res.arrayBuffer());
  mkdirSync(dir, { recursive: true });
  const path = join(dir, backupFileName(key, at));
  writeFileSync(path, bytes, { flag: 'wx' });
  return { path, size: bytes.length, serial: Number(res.headers.get('x-statelock-serial')) };
}
