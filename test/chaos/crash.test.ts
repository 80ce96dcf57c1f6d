import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest, stateBody } from '../support/http.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { between, chaosSeed, derivedRng, envInt, findOverlaps, formatDuration, listVersions, rng, type Hold } from './chaos-support.js';

/**
 * The server is SIGKILLed at a random moment under load, round after round, and restarted on the same
 * SQLite data directory. Checked from the clients' own records after every restart:
 * - every acknowledged write is stored exactly once, byte for byte; nothing stored is torn or foreign;
 * - each key's versions have strictly increasing serials, and a reader under the lock never sees an
 *   older serial than one already acknowledged;
 * - no two clients held a lock at once; an acknowledged LOCK survives the crash, an acknowledged
 *   UNLOCK is not undone by it.
 * A lock left held by a killed round's client is force-unlocked (Terraform's empty-body UNLOCK) before
 * the next round: its holder is dead.
 *
 * STATELOCK_CHAOS_ROUNDS (default 12; `npm run test:chaos` runs 100), STATELOCK_CHAOS_SEED to replay
 * the random choices (kill moments, keys, back-offs; the interleaving itself is the OS's).
 */

const ROUNDS = envInt('STATELOCK_CHAOS_ROUNDS', 12);
const CLIENTS = 8;
const KEYS = ['chaos/crash/a', 'chaos/crash/b', 'chaos/crash/c'];
const SEED = chaosSeed();
const lineageOf = (key: string) => `lineage-${key}`;

interface Attempt {
  key: string;
  id: string;
  round: number;
  lockAcked: boolean;
  granted: number;
  unlockSent: boolean;
  released: number;
  unlockAcked: boolean;
}

interface Sent {
  key: string;
  round: number;
  serial: number;
  acked: boolean;
}

describe(`SQLite server SIGKILLed under load (${ROUNDS} rounds, seed ${SEED})`, () => {
  const dataDir = tempDir('statelock-chaos-crash-');
  let server: RunningServer;
  const violations: string[] = [];
  const violation = (what: string) => {
    violations.push(what);
    if (violations.length <= 20) console.log(`# VIOLATION: ${what}`);
  };

  before(async () => (server = await startServer({ dataDir })));
  after(async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('acknowledged writes survive byte for byte, serials only increase, no lock is held twice', { timeout: 120_000 + ROUNDS * 15_000 }, async () => {
    console.log(`# chaos crash: seed ${SEED} (replay with STATELOCK_CHAOS_SEED=${SEED}), ${ROUNDS} rounds, ${CLIENTS} clients, ${KEYS.length} keys`);
    const started = performance.now();
    const rand = rng(SEED);
    const sent = new Map<string, Sent>(); // body → who sent it
    const lastSeq = new Map(KEYS.map((k) => [k, 0]));
    const lastSerial = new Map(KEYS.map((k) => [k, 0]));
    const ackedSerial = new Map(KEYS.map((k) => [k, 0])); // highest acknowledged serial per key, as clients learn it
    let acquisitions = 0;
    let ackedWrites = 0;
    let unackedLanded = 0;
    let unackedLost = 0;
    let orphanLocks = 0;
    let heldDuringKill = 0;

    /** One client of one round: lock, read, write the next serial, unlock — until a request fails (the server died). */
    async function client(url: string, round: number, c: number, attempts: Attempt[]): Promise<void> {
      const r = derivedRng(SEED, round, c);
      for (let n = 0; ; n++) {
        const key = KEYS[Math.floor(r() * KEYS.length)]!;
        const id = `r${round}-c${c}-n${n}`;
        const a: Attempt = { key, id, round, lockAcked: false, granted: NaN, unlockSent: false, released: Infinity, unlockAcked: false };
        attempts.push(a);
        const at = `${url}/state/${key}`;
        try {
          const lock = await rawRequest(at, { method: 'LOCK', body: lockBody(id) });
          if (lock.status === 423) {
            await new Promise((res) => setTimeout(res, r() * 2)); // a tiny back-off, as a retrying client would
            continue;
          }
          if (lock.status !== 200) {
            violation(`${id}: LOCK answered ${lock.status} ${lock.text}`);
            continue;
          }
          a.lockAcked = true;
          a.granted = performance.now();
          if (JSON.parse(lock.text).ID !== id) violation(`${id}: LOCK 200 carried another holder's info ${lock.text}`);

          const current = await rawRequest(at);
          let serial = 0;
          if (current.status === 200) {
            const known = sent.get(current.text);
            if (!known || known.key !== key) violation(`${id}: GET ${key} returned a body no client sent to it (${current.body.length} bytes)`);
            serial = current.json<{ serial: number }>().serial;
          } else if (current.status !== 404) violation(`${id}: GET answered ${current.status} ${current.text}`);
          if (serial < ackedSerial.get(key)!) violation(`${id}: GET under the lock saw serial ${serial} of ${key}, but serial ${ackedSerial.get(key)} was already acknowledged`);

          const body = stateBody(serial + 1, lineageOf(key), { outputs: { by: { value: id, type: 'string' } } });
          const entry: Sent = { key, round, serial: serial + 1, acked: false };
          sent.set(body, entry);
          const write = await rawRequest(`${at}?ID=${encodeURIComponent(id)}`, { method: 'POST', body });
          if (write.status === 200 && write.json<{ outcome: string }>().outcome === 'stored') {
            entry.acked = true;
            ackedSerial.set(key, Math.max(ackedSerial.get(key)!, serial + 1));
          } else violation(`${id}: POST serial ${serial + 1} under its own lock answered ${write.status} ${write.text}`);

          a.released = performance.now();
          a.unlockSent = true;
          const unlock = await rawRequest(at, { method: 'UNLOCK', body: lockBody(id) });
          if (unlock.status === 200 && unlock.json<{ outcome: string }>().outcome === 'released') a.unlockAcked = true;
          else violation(`${id}: UNLOCK by the holder answered ${unlock.status} ${unlock.text}`);
        } catch {
          return; // connection refused or reset: the server is gone; this request is unacknowledged
        }
      }
    }

    for (let round = 0; round < ROUNDS; round++) {
      // Every round starts with every key free (the previous round's orphans were force-unlocked).
      for (const key of KEYS) {
        const held = await rawRequest(`${server.url}/api/v1/locks/${key}`);
        assert.equal(held.status, 404, `round ${round}: ${key} starts unlocked (${held.text})`);
      }
      const attempts: Attempt[] = [];
      const killAfter = between(rand, 20, 200);
      const load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(server.url, round, c, attempts)));
      const killed = new Promise<void>((resolve) => setTimeout(() => void server.stop('SIGKILL').then(() => resolve()), killAfter));
      await killed;
      await load; // every client has seen its connection refused or reset
      server = await startServer({ dataDir });
      const ready = await rawRequest(`${server.url}/readyz`);
      assert.equal(ready.status, 200, `round ${round}: ready after the restart: ${ready.text}`);

      // Locks: what the restarted server holds must agree with what clients were told.
      const holderAfter = new Map<string, string | null>();
      for (const key of KEYS) {
        const res = await rawRequest(`${server.url}/api/v1/locks/${key}`);
        const holder = res.status === 200 ? String(res.json<{ info: { ID: unknown } }>().info.ID) : null;
        if (res.status !== 200 && res.status !== 404) violation(`round ${round}: GET lock ${key} answered ${res.status}`);
        holderAfter.set(key, holder);
        const mine = attempts.filter((a) => a.key === key);
        const neverReleased = mine.filter((a) => a.lockAcked && !a.unlockSent);
        heldDuringKill += neverReleased.length;
        for (const a of neverReleased) if (holder !== a.id) violation(`round ${round}: ${a.id} was granted ${key} and never released it, but after the crash the holder is ${holder ?? 'nobody'} (an acknowledged LOCK was lost)`);
        if (holder !== null) {
          const h = mine.find((a) => a.id === holder);
          if (!h) violation(`round ${round}: after the crash ${key} is held by ${holder}, which no client of this round asked for`);
          else if (h.unlockAcked) violation(`round ${round}: after the crash ${key} is held by ${holder}, whose UNLOCK was acknowledged (an acknowledged release was undone)`);
          else if (h.lockAcked) h.released = Infinity; // its UNLOCK never took effect: it held the lock until the crash
          orphanLocks++;
          const forced = await rawRequest(`${server.url}/state/${key}`, { method: 'UNLOCK', body: '' });
          if (forced.status !== 200 || forced.json<{ outcome: string }>().outcome !== 'forced') violation(`round ${round}: force-unlock of ${key} answered ${forced.status} ${forced.text}`);
        }
      }

      // Mutual exclusion within the round, from the clients' clocks.
      const holds: Hold[] = attempts.filter((a) => a.lockAcked).map((a) => ({ key: a.key, id: a.id, granted: a.granted, released: a.released }));
      acquisitions += holds.length;
      for (const p of findOverlaps(holds)) violation(`round ${round}: ${p}`);

      // Writes: every version stored this round is a body a client sent in this round, once, in serial order.
      const found = new Set<string>();
      for (const key of KEYS) {
        const versions = await listVersions(server.url, key, lastSeq.get(key)!);
        for (const v of versions) {
          if (v.seq !== lastSeq.get(key)! + 1) violation(`round ${round}: ${key} version seq ${v.seq} follows seq ${lastSeq.get(key)}`);
          lastSeq.set(key, v.seq);
          if (!(v.serial > lastSerial.get(key)!)) violation(`round ${round}: ${key} seq ${v.seq} has serial ${v.serial}, not above the previous ${lastSerial.get(key)}`);
          lastSerial.set(key, Math.max(lastSerial.get(key)!, v.serial));
          const content = await rawRequest(`${server.url}/api/v1/content/${key}?seq=${v.seq}`);
          if (content.status !== 200) {
            violation(`round ${round}: content of ${key} seq ${v.seq} answered ${content.status} ${content.text}`);
            continue;
          }
          try {
            JSON.parse(content.text);
          } catch {
            violation(`round ${round}: ${key} seq ${v.seq} is not JSON (torn): ${content.text.slice(0, 80)}…`);
          }
          const sha = createHash('sha256').update(content.body).digest('hex');
          if (sha !== v.sha256 || content.body.length !== v.size) violation(`round ${round}: ${key} seq ${v.seq}: content does not match its recorded sha256/size`);
          const origin = sent.get(content.text);
          if (!origin || origin.key !== key || origin.round !== round) {
            violation(`round ${round}: ${key} seq ${v.seq} is not a body a client of this round sent to this key`);
            continue;
          }
          if (origin.serial !== v.serial) violation(`round ${round}: ${key} seq ${v.seq} listed with serial ${v.serial}, its body says ${origin.serial}`);
          if (found.has(content.text)) violation(`round ${round}: ${key} stores the same write twice (seq ${v.seq})`);
          found.add(content.text);
        }
        const head = await rawRequest(`${server.url}/state/${key}`);
        if (lastSeq.get(key)! > 0) {
          const last = await rawRequest(`${server.url}/api/v1/content/${key}?seq=${lastSeq.get(key)}`);
          if (head.status !== 200 || !head.body.equals(last.body)) violation(`round ${round}: GET ${key} is not its newest version`);
        } else if (head.status !== 404) violation(`round ${round}: GET ${key} answered ${head.status} with no version stored`);
      }
      for (const [body, s] of sent) {
        if (s.round !== round) continue;
        if (s.acked) {
          ackedWrites++;
          if (!found.has(body)) violation(`round ${round}: the acknowledged write of ${s.key} serial ${s.serial} was lost in the crash`);
        } else if (found.has(body)) unackedLanded++;
        else unackedLost++;
      }
      // A lost unacknowledged write (or an older stored serial) may leave clients' highest acknowledged serial behind the store: resync.
      for (const key of KEYS) ackedSerial.set(key, Math.max(ackedSerial.get(key)!, lastSerial.get(key)!));
    }

    // The final pass: after every crash and restart, every acknowledged write of every round is still there, byte for byte, once.
    let finalChecked = 0;
    for (const key of KEYS) {
      const versions = await listVersions(server.url, key);
      const serials = versions.map((v) => v.serial);
      for (let i = 1; i < serials.length; i++) if (!(serials[i]! > serials[i - 1]!)) violation(`final: ${key} serials not strictly increasing at seq ${versions[i]!.seq}`);
      const stored = new Map<string, number>();
      for (const v of versions) {
        const content = await rawRequest(`${server.url}/api/v1/content/${key}?seq=${v.seq}`);
        stored.set(content.text, (stored.get(content.text) ?? 0) + 1);
        if (!sent.has(content.text)) violation(`final: ${key} seq ${v.seq} is not a body any client sent`);
      }
      for (const [body, s] of sent) {
        if (s.key !== key || !s.acked) continue;
        finalChecked++;
        const n = stored.get(body) ?? 0;
        if (n !== 1) violation(`final: the acknowledged write of ${key} serial ${s.serial} (round ${s.round}) is stored ${n} times`);
      }
    }
    assert.equal(finalChecked, ackedWrites);

    const elapsed = formatDuration(performance.now() - started);
    console.log(
      `# chaos crash: ${ROUNDS} rounds (SIGKILL 20–200 ms into each), ${ackedWrites} acknowledged writes checked byte for byte, ` +
        `${acquisitions} acquisitions checked, ${heldDuringKill} locks held at the kill, ${orphanLocks} orphaned locks force-unlocked, ` +
        `${unackedLanded} unacknowledged writes landed / ${unackedLost} did not, violations = ${violations.length}, ${elapsed}, seed ${SEED}`,
    );
    assert.ok(ackedWrites >= Math.ceil(ROUNDS / 2), `enough acknowledged writes to mean something (${ackedWrites})`);
    assert.deepEqual(violations, [], `violations (replay with STATELOCK_CHAOS_SEED=${SEED})`);
  });
});
