import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startServer, type RunningServer } from './support/server-process.js';
import { rawRequest, lockBody, stateBody, type RawResponse } from './support/http.js';

/**
 * The JSON API under /api/v1, against a real server process. Everything is set up through the http
 * backend door, as Terraform would, then read back through the API.
 */

const K1 = 'acme/lesson-17/terraform.tfstate'; // three versions, written under LOCK_ID, lock still held
const K_PR = 'acme/lesson-17/pr-42/terraform.tfstate';
const K_OTHER = 'acme/other/terraform.tfstate';
const K_ZETA = 'zeta/x';
/** Every live key, in the order the API must list them (byte order). */
const ALL_KEYS_ORDERED = [K_PR, K1, K_OTHER, K_ZETA];

const LINEAGE = '6a3c1f0e-0d4b-4b8e-9a51-5f2c7e9d1a01';
const LOCK_ID = 'b3f1c2d4-1111-2222-3333-444455556666';
const LOCK_JSON = lockBody(LOCK_ID, 'OperationTypeApply', 'alice@build-07', '2026-08-21T13:10:23.12345Z');

/** Three distinguishable versions of K1, with non-ASCII bytes so that byte-for-byte means something. */
const K1_BODIES = [1, 2, 3].map((serial) =>
  Buffer.from(stateBody(serial, LINEAGE, { outputs: { note: { value: `version ${serial}: héllo ✓ 🚀`, type: 'string' } } })),
);

const md5b64 = (b: Buffer) => createHash('md5').update(b).digest('base64');
const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface ErrorJson {
  error: { code: string; message: string };
}
interface Page<T> {
  items: T[];
  next: string | null;
}
interface StateSummaryJson {
  key: string;
  serial: number;
  lineage: string;
  size: number;
  updatedAt: string;
  versions: number;
  locked: boolean;
}
interface VersionJson {
  seq: number;
  serial: number;
  lineage: string;
  md5: string;
  sha256: string;
  size: number;
  createdAt: string;
  lockId: string | null;
  operation: string | null;
  encrypted: boolean;
  forced: string | null;
  clientAddr: string;
}
interface LockJson {
  key: string;
  info: Record<string, unknown>;
  acquiredAt: string;
  ageSeconds: number;
  lastActivityAt: string;
  clientAddr: string;
  userAgent: string;
  verdict: string;
  evidence: Record<string, unknown>;
}
interface AuditJson {
  id: number;
  at: string;
  action: string;
  key: string;
  lockId: string | null;
  outcome: string;
  clientAddr: string;
  userAgent: string;
  principal: string | null;
  detail: Record<string, unknown>;
}

function assertJsonError(res: RawResponse, status: number, code: string): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.text}`);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = res.json<ErrorJson>();
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
}

function isIso(s: unknown): boolean {
  return typeof s === 'string' && !Number.isNaN(Date.parse(s)) && new Date(s).toISOString() === s;
}

describe('JSON API /api/v1', () => {
  let server: RunningServer;
  const api = (pathAndQuery: string, opts: Parameters<typeof rawRequest>[1] = {}) => rawRequest(`${server.url}/api/v1/${pathAndQuery}`, opts);
  const backend = (key: string, opts: Parameters<typeof rawRequest>[1] = {}, query = '') => rawRequest(`${server.url}/state/${key}${query}`, opts);
  const write = async (key: string, body: Buffer | string, lockId?: string) => {
    const res = await backend(key, { method: 'POST', body }, lockId ? `?ID=${encodeURIComponent(lockId)}` : '');
    assert.equal(res.status, 200, `write ${key}: ${res.text}`);
    return res.json<{ outcome: string; serial: number; lineage: string; version: number }>();
  };

  before(async () => {
    server = await startServer();
    // Several versions of one key, written under a lock with ?ID= — the lock stays held.
    const locked = await backend(K1, { method: 'LOCK', body: LOCK_JSON });
    assert.equal(locked.status, 200, locked.text);
    assert.equal(locked.text, LOCK_JSON);
    for (const [i, body] of K1_BODIES.entries()) {
      const res = await write(K1, body, LOCK_ID);
      assert.deepEqual(res, { outcome: 'stored', serial: i + 1, lineage: LINEAGE, version: i + 1, forced: null, overwritten: null });
    }
    // Other keys, one version each, no lock.
    await write(K_PR, stateBody(7, 'lineage-pr-42'));
    await write(K_OTHER, stateBody(1, 'lineage-other'));
    await write(K_ZETA, stateBody(4, 'lineage-zeta'));
  });

  after(async () => {
    const code = await server.stop('SIGTERM');
    assert.equal(code, 0, `server exit code; stderr: ${server.stderr()}`);
  });

  describe('GET /api/v1/states', () => {
    test('lists every live state ordered by key, with its summary', async () => {
      const res = await api('states');
      assert.equal(res.status, 200, res.text);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      const page = res.json<Page<StateSummaryJson>>();
      assert.deepEqual(
        page.items.map((s) => s.key),
        ALL_KEYS_ORDERED,
      );
      assert.equal(page.next, null);
      const k1 = page.items.find((s) => s.key === K1)!;
      assert.equal(k1.serial, 3);
      assert.equal(k1.lineage, LINEAGE);
      assert.equal(k1.size, K1_BODIES[2]!.length);
      assert.equal(k1.versions, 3);
      assert.equal(k1.locked, true);
      assert.ok(isIso(k1.updatedAt), `updatedAt ${k1.updatedAt}`);
      const zeta = page.items.find((s) => s.key === K_ZETA)!;
      assert.deepEqual(
        { serial: zeta.serial, lineage: zeta.lineage, versions: zeta.versions, locked: zeta.locked, size: zeta.size },
        { serial: 4, lineage: 'lineage-zeta', versions: 1, locked: false, size: Buffer.byteLength(stateBody(4, 'lineage-zeta')) },
      );
    });

    test('prefix=acme/lesson-17/ keeps only the keys under it', async () => {
      const res = await api(`states?prefix=${encodeURIComponent('acme/lesson-17/')}`);
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<StateSummaryJson>>();
      assert.deepEqual(
        page.items.map((s) => s.key),
        [K_PR, K1],
      );
      assert.equal(page.next, null);
    });

    test('limit=1 pages through every key, following next until it is null', async () => {
      const seen: string[] = [];
      let after: string | null = null;
      let pages = 0;
      do {
        const query: string = after === null ? 'states?limit=1' : `states?limit=1&after=${encodeURIComponent(after)}`;
        const res = await api(query);
        assert.equal(res.status, 200, res.text);
        const page = res.json<Page<StateSummaryJson>>();
        assert.equal(page.items.length, 1, `page ${pages + 1} has ${page.items.length} items`);
        seen.push(page.items[0]!.key);
        if (page.next !== null) assert.equal(page.next, page.items[0]!.key, 'next is the cursor of the last item');
        after = page.next;
        pages++;
        assert.ok(pages <= ALL_KEYS_ORDERED.length, 'pagination does not terminate');
      } while (after !== null);
      assert.equal(pages, ALL_KEYS_ORDERED.length);
      assert.deepEqual(seen, ALL_KEYS_ORDERED);
    });

    test('limit=0 and limit=abc are 400 INVALID_QUERY', async () => {
      assertJsonError(await api('states?limit=0'), 400, 'INVALID_QUERY');
      assertJsonError(await api('states?limit=abc'), 400, 'INVALID_QUERY');
    });
  });

  describe('GET /api/v1/states/<key>', () => {
    test('answers the current version, the version count and the lock as sent', async () => {
      const res = await api(`states/${K1}`);
      assert.equal(res.status, 200, res.text);
      const body = res.json<{ key: string; current: VersionJson; versions: number; lock: LockJson | null }>();
      assert.equal(body.key, K1);
      assert.equal(body.versions, 3);
      const v3 = K1_BODIES[2]!;
      const { createdAt, ...current } = body.current;
      assert.ok(isIso(createdAt), `createdAt ${createdAt}`);
      assert.deepEqual(current, {
        seq: 3,
        serial: 3,
        lineage: LINEAGE,
        md5: md5b64(v3),
        sha256: sha256hex(v3),
        size: v3.length,
        lockId: LOCK_ID,
        operation: 'OperationTypeApply',
        encrypted: false,
        forced: null,
        clientAddr: '127.0.0.1',
      });
      assert.ok(body.lock, 'lock is present');
      assert.equal(body.lock.key, K1);
      assert.deepEqual(body.lock.info, JSON.parse(LOCK_JSON));
      assert.equal(JSON.stringify(body.lock.info), LOCK_JSON, 'info keeps the fields exactly as sent');
      assert.equal(body.lock.verdict, 'unknown');
      assert.ok(isIso(body.lock.acquiredAt));
    });

    test('an unlocked key has lock null', async () => {
      const res = await api(`states/${K_OTHER}`);
      assert.equal(res.status, 200, res.text);
      const body = res.json<{ key: string; versions: number; lock: unknown; current: VersionJson }>();
      assert.equal(body.key, K_OTHER);
      assert.equal(body.versions, 1);
      assert.equal(body.lock, null);
      assert.equal(body.current.lockId, null);
      assert.equal(body.current.operation, null);
    });

    test('an unknown key is 404 STATE_NOT_FOUND', async () => {
      assertJsonError(await api('states/acme/nothing-here/terraform.tfstate'), 404, 'STATE_NOT_FOUND');
    });

    test('a key with an empty segment (a//b) is 400 INVALID_KEY', async () => {
      assertJsonError(await api('states/a//b'), 400, 'INVALID_KEY');
    });
  });

  describe('versions and content', () => {
    test('GET /api/v1/versions/<key> lists every version oldest first', async () => {
      const res = await api(`versions/${K1}`);
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<VersionJson>>();
      assert.equal(page.next, null);
      assert.deepEqual(
        page.items.map((v) => [v.seq, v.serial, v.lineage, v.lockId, v.md5, v.size]),
        K1_BODIES.map((b, i) => [i + 1, i + 1, LINEAGE, LOCK_ID, md5b64(b), b.length]),
      );
    });

    test('GET /api/v1/content/<key>?seq=2 returns version 2 byte-for-byte', async () => {
      const res = await api(`content/${K1}?seq=2`);
      assert.equal(res.status, 200, res.text);
      const v2 = K1_BODIES[1]!;
      assert.ok(res.body.equals(v2), 'body is exactly the bytes of version 2');
      assert.equal(res.headers['content-md5'], md5b64(v2));
      assert.equal(res.headers['x-statelock-seq'], '2');
      assert.equal(res.headers['x-statelock-serial'], '2');
      assert.equal(res.headers['content-length'], String(v2.length));
      assert.match(String(res.headers['content-type']), /^application\/json/);
    });

    test('?serial=3 returns the version with serial 3', async () => {
      const res = await api(`content/${K1}?serial=3`);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.body.equals(K1_BODIES[2]!));
      assert.equal(res.headers['content-md5'], md5b64(K1_BODIES[2]!));
      assert.equal(res.headers['x-statelock-seq'], '3');
      assert.equal(res.headers['x-statelock-serial'], '3');
    });

    test('no parameter returns the current version', async () => {
      const res = await api(`content/${K1}`);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.body.equals(K1_BODIES[2]!));
      assert.equal(res.headers['x-statelock-seq'], '3');
      assert.equal(res.headers['content-md5'], md5b64(K1_BODIES[2]!));
    });

    test('an unknown seq is 404 VERSION_NOT_FOUND', async () => {
      assertJsonError(await api(`content/${K1}?seq=4`), 404, 'VERSION_NOT_FOUND');
      assertJsonError(await api(`content/${K1}?serial=99`), 404, 'VERSION_NOT_FOUND');
    });
  });

  describe('locks', () => {
    test('GET /api/v1/locks lists the one held lock', async () => {
      const res = await api('locks');
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<LockJson>>();
      assert.equal(page.next, null);
      assert.deepEqual(
        page.items.map((l) => l.key),
        [K1],
      );
      assert.deepEqual(page.items[0]!.info, JSON.parse(LOCK_JSON));
      assert.equal(page.items[0]!.verdict, 'unknown');
    });

    test('GET /api/v1/locks/<key> describes the held lock', async () => {
      const res = await api(`locks/${K1}`);
      assert.equal(res.status, 200, res.text);
      const lock = res.json<LockJson>();
      assert.equal(lock.key, K1);
      assert.equal(JSON.stringify(lock.info), LOCK_JSON);
      assert.ok(Number.isInteger(lock.ageSeconds) && lock.ageSeconds >= 0, `ageSeconds ${lock.ageSeconds}`);
      assert.ok(isIso(lock.acquiredAt), `acquiredAt ${lock.acquiredAt}`);
      assert.ok(isIso(lock.lastActivityAt), `lastActivityAt ${lock.lastActivityAt}`);
      assert.ok(Date.parse(lock.lastActivityAt) >= Date.parse(lock.acquiredAt), 'the writes under the lock count as activity');
      assert.equal(lock.clientAddr, '127.0.0.1');
      assert.equal(lock.verdict, 'unknown');
    });

    test('an unlocked key is 404 LOCK_NOT_FOUND', async () => {
      assertJsonError(await api(`locks/${K_OTHER}`), 404, 'LOCK_NOT_FOUND');
    });
  });

  describe('GET /api/v1/audit', () => {
    test('records the lock and every write with its key and lock ID', async () => {
      const res = await api('audit');
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<AuditJson>>();
      assert.equal(page.next, null);
      const summary = page.items.map((e) => [e.action, e.key, e.lockId, e.outcome]);
      assert.deepEqual(summary, [
        ['lock.acquire', K1, LOCK_ID, 'ok'],
        ['state.write', K1, LOCK_ID, 'ok'],
        ['state.write', K1, LOCK_ID, 'ok'],
        ['state.write', K1, LOCK_ID, 'ok'],
        ['state.write', K_PR, null, 'ok'],
        ['state.write', K_OTHER, null, 'ok'],
        ['state.write', K_ZETA, null, 'ok'],
      ]);
      const ids = page.items.map((e) => e.id);
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => a - b),
        'oldest first',
      );
      for (const e of page.items) {
        assert.ok(isIso(e.at), `at ${e.at}`);
        assert.equal(e.clientAddr, '127.0.0.1');
      }
      assert.deepEqual(
        page.items.filter((e) => e.key === K1 && e.action === 'state.write').map((e) => e.detail.serial),
        [1, 2, 3],
      );
      assert.equal(page.items[0]!.detail.operation, 'OperationTypeApply');
      assert.equal(page.items[0]!.detail.who, 'alice@build-07');
    });

    test('?key= keeps only that key', async () => {
      const res = await api(`audit?key=${encodeURIComponent(K1)}`);
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<AuditJson>>();
      assert.deepEqual(
        page.items.map((e) => [e.action, e.key, e.lockId]),
        [
          ['lock.acquire', K1, LOCK_ID],
          ['state.write', K1, LOCK_ID],
          ['state.write', K1, LOCK_ID],
          ['state.write', K1, LOCK_ID],
        ],
      );
    });

    test('?action=state.write keeps only writes', async () => {
      const res = await api('audit?action=state.write');
      assert.equal(res.status, 200, res.text);
      const page = res.json<Page<AuditJson>>();
      assert.deepEqual(
        page.items.map((e) => [e.action, e.key]),
        [
          ['state.write', K1],
          ['state.write', K1],
          ['state.write', K1],
          ['state.write', K_PR],
          ['state.write', K_OTHER],
          ['state.write', K_ZETA],
        ],
      );
    });

    test('?action=bogus is 400 INVALID_QUERY', async () => {
      assertJsonError(await api('audit?action=bogus'), 400, 'INVALID_QUERY');
    });

    test('?since= in the future is an empty page', async () => {
      const res = await api(`audit?since=${encodeURIComponent('2999-01-01T00:00:00.000Z')}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json(), { items: [], next: null });
    });
  });

  describe('soft delete', () => {
    const KEY = 'acme/doomed/terraform.tfstate';
    const bodies = [1, 2].map((s) => Buffer.from(stateBody(s, 'lineage-doomed', { outputs: { n: { value: s, type: 'number' } } })));

    test('DELETE /state/<key> hides the key but keeps every version readable', async () => {
      for (const b of bodies) await write(KEY, b);
      assert.equal((await backend(KEY)).status, 200);

      const del = await backend(KEY, { method: 'DELETE' });
      assert.equal(del.status, 200, del.text);
      assert.deepEqual(del.json(), { deleted: KEY });

      const get = await backend(KEY);
      assert.equal(get.status, 404, get.text);
      assertJsonError(await api(`states/${KEY}`), 404, 'STATE_NOT_FOUND');

      const list = await api('states');
      assert.equal(list.status, 200);
      assert.deepEqual(
        list.json<Page<StateSummaryJson>>().items.map((s) => s.key),
        ALL_KEYS_ORDERED,
      );

      const versions = await api(`versions/${KEY}`);
      assert.equal(versions.status, 200, versions.text);
      assert.deepEqual(
        versions.json<Page<VersionJson>>().items.map((v) => [v.seq, v.serial, v.md5]),
        bodies.map((b, i) => [i + 1, i + 1, md5b64(b)]),
      );

      const content = await api(`content/${KEY}?seq=1`);
      assert.equal(content.status, 200, content.text);
      assert.ok(content.body.equals(bodies[0]!), 'version 1 bytes after the delete');
      assert.equal(content.headers['content-md5'], md5b64(bodies[0]!));
      assert.equal(content.headers['x-statelock-seq'], '1');

      const audit = await api(`audit?key=${encodeURIComponent(KEY)}&action=state.delete`);
      assert.equal(audit.status, 200, audit.text);
      const entries = audit.json<Page<AuditJson>>().items;
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.action, 'state.delete');
      assert.equal(entries[0]!.key, KEY);
      assert.equal(entries[0]!.outcome, 'ok');
      assert.deepEqual(entries[0]!.detail, { serial: 2, seq: 2 });
    });
  });

  describe('GET /api/v1/openapi.json', () => {
    const ROUTES = [
      '/api/v1/states',
      '/api/v1/states/{key}',
      '/api/v1/versions/{key}',
      '/api/v1/content/{key}',
      '/api/v1/locks',
      '/api/v1/locks/{key}',
      '/api/v1/audit',
      '/api/v1/diff/{key}',
      '/api/v1/openapi.json',
    ];

    test('is an OpenAPI 3 document describing every route the API answers', async () => {
      const res = await api('openapi.json');
      assert.equal(res.status, 200, res.text);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      const doc = res.json<{ openapi: string; info: { title: string }; paths: Record<string, { get?: unknown }> }>();
      assert.equal(typeof doc.openapi, 'string');
      assert.ok(doc.openapi.startsWith('3.'), `openapi ${doc.openapi}`);
      assert.equal(typeof doc.info.title, 'string');
      for (const route of ROUTES) {
        assert.ok(route in doc.paths, `${route} is missing from openapi.json`);
        assert.ok(doc.paths[route]!.get, `${route} has no GET operation`);
      }
      // And the other way round: every described operation is answered by the server. GETs on a real key
      // answer 200; the writing operations are probed on a key that does not exist, so they change nothing,
      // and must not be unknown routes (NOT_FOUND) or wrong methods (405).
      for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
        for (const method of Object.keys(ops)) {
          const params = ((ops[method] as { parameters?: Array<{ name: string; in: string; required?: boolean }> }).parameters ?? []);
          const needsMore = params.some((p) => p.required && p.name !== 'key');
          if (method === 'get' && !needsMore) {
            const concrete = path.replace('{key}', K1);
            const probe = await rawRequest(`${server.url}${concrete}`);
            assert.equal(probe.status, 200, `GET ${concrete} answers ${probe.status}: ${probe.text.slice(0, 200)}`);
          } else {
            const concrete = path.replace('{key}', 'no/such/key').replace('{id}', 'no-such-id');
            const probe = await rawRequest(`${server.url}${concrete}?id=x&seq=1`, { method: method.toUpperCase() });
            assert.notEqual(probe.status, 405, `${method} ${concrete}: ${probe.text}`);
            assert.notEqual(probe.json<{ error: { code: string } }>().error.code, 'NOT_FOUND', `${method} ${concrete} is not routed`);
          }
        }
      }
    });
  });

  describe('errors', () => {
    test('POST /api/v1/states is 405 with an Allow header', async () => {
      const res = await api('states', { method: 'POST', body: '{}' });
      assertJsonError(res, 405, 'METHOD_NOT_ALLOWED');
      assert.equal(res.headers['allow'], 'GET, HEAD');
    });

    test('an unknown API path is 404 NOT_FOUND as JSON', async () => {
      assertJsonError(await api('nope'), 404, 'NOT_FOUND');
    });
  });
});
