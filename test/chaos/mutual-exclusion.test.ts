import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { lockBody, rawRequest } from '../support/http.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { chaosSeed, derivedRng, envInt, formatDuration } from './chaos-support.js';

/**
 * 64 clients take and release locks on 4 keys as fast as they can, against one server: seven in eight
 * queue server-side (`LOCK ?wait=30s`), the rest poll with plain LOCK and a tiny back-off. Every
 * acquisition's [granted, releasing] interval is recorded on the client's clock (granted when the 200
 * arrived, releasing when the UNLOCK is sent — inside the server's own hold), and a checker verifies
 * that no two holders of a key ever overlapped. The server's own counters must agree: exactly as many
 * grants and releases as the clients saw.
 *
 * STATELOCK_CHAOS_ACQUISITIONS is the total (default 3,000; `npm run test:chaos` runs 640,000 =
 * 64 × 10,000); STATELOCK_CHAOS_SEED replays the random choices (keys, back-offs, which holds read).
 */

const TOTAL = envInt('STATELOCK_CHAOS_ACQUISITIONS', 3_000);
const CLIENTS = 64;
const KEYS = ['chaos/mutex/a', 'chaos/mutex/b', 'chaos/mutex/c', 'chaos/mutex/d'];
const SEED = chaosSeed();
/** One client in eight polls with plain LOCK and a tiny back-off; the others wait in line server-side. */
const polls = (c: number) => c % 8 === 7;

describe(`mutual exclusion: ${CLIENTS} clients, ${TOTAL} acquisitions on ${KEYS.length} keys (seed ${SEED})`, () => {
  let server: RunningServer;
  before(async () => (server = await startServer()));
  after(async () => {
    await server.stop();
    rmSync(server.dataDir, { recursive: true, force: true }); // a full run leaves hundreds of MB of audit behind
  });

  test('no two holders of a key ever overlap', { timeout: 120_000 + TOTAL * 5 }, async () => {
    console.log(`# chaos mutex: seed ${SEED} (replay with STATELOCK_CHAOS_SEED=${SEED}), ${CLIENTS} clients (${CLIENTS / 8} polling), ${TOTAL} acquisitions`);
    // One slot per acquisition, filled in completion order: key, holder and its interval.
    const granted = new Float64Array(TOTAL);
    const released = new Float64Array(TOTAL);
    const keyOf = new Uint8Array(TOTAL);
    const clientOf = new Uint8Array(TOTAL);
    let filled = 0;
    let refusals = 0;
    const problems: string[] = [];
    const problem = (what: string) => {
      problems.push(what);
      if (problems.length <= 20) console.log(`# VIOLATION: ${what}`);
    };
    let nextReport = TOTAL >= 100_000 ? Math.floor(TOTAL / 10) : Infinity;
    const started = performance.now();

    async function client(c: number, count: number): Promise<void> {
      const r = derivedRng(SEED, c);
      const poll = polls(c);
      for (let n = 0; n < count; n++) {
        const k = Math.floor(r() * KEYS.length);
        const at = `${server.url}/state/${KEYS[k]}`;
        const id = `c${c}-n${n}`;
        const body = lockBody(id);
        for (let tries = 0; ; tries++) {
          const lock = await rawRequest(poll ? at : `${at}?wait=30s`, { method: 'LOCK', body });
          if (lock.status === 200) break;
          if (lock.status !== 423) throw new Error(`${id}: LOCK answered ${lock.status} ${lock.text}`);
          refusals++;
          // A tiny jittered back-off, doubling from 1 ms up to 8 ms.
          if (poll) await new Promise((res) => setTimeout(res, r() * Math.min(8, 2 ** tries)));
        }
        const g = performance.now();
        if (r() < 0.125) {
          // Now and then the holder does something in between, as a plan would: a read.
          const read = await rawRequest(at);
          if (read.status !== 404) problem(`${id}: GET while holding answered ${read.status}`);
        }
        const rel = performance.now();
        const unlock = await rawRequest(at, { method: 'UNLOCK', body });
        if (unlock.status !== 200 || unlock.json<{ outcome: string }>().outcome !== 'released') problem(`${id}: the holder's UNLOCK answered ${unlock.status} ${unlock.text} (the lock was no longer its own)`);
        const slot = filled++;
        granted[slot] = g;
        released[slot] = rel;
        keyOf[slot] = k;
        clientOf[slot] = c;
        if (filled >= nextReport) {
          console.log(`# chaos mutex: ${filled} / ${TOTAL} acquisitions after ${formatDuration(performance.now() - started)}`);
          nextReport += Math.floor(TOTAL / 10);
        }
      }
    }

    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c, Math.floor(TOTAL / CLIENTS) + (c < TOTAL % CLIENTS ? 1 : 0))));
    const loadMs = performance.now() - started;
    assert.equal(filled, TOTAL);

    // The checker: per key, sorted by grant time, each grant comes after every earlier holder released.
    let checked = 0;
    for (let k = 0; k < KEYS.length; k++) {
      const slots: number[] = [];
      for (let i = 0; i < TOTAL; i++) if (keyOf[i] === k) slots.push(i);
      slots.sort((a, b) => granted[a]! - granted[b]!);
      let latest = -1;
      for (const i of slots) {
        if (latest >= 0 && granted[i]! < released[latest]!) {
          problem(`${KEYS[k]}: client ${clientOf[i]} was granted at ${granted[i]!.toFixed(3)} ms while client ${clientOf[latest]} held it (${granted[latest]!.toFixed(3)}–${released[latest]!.toFixed(3)} ms)`);
        }
        if (latest < 0 || released[i]! > released[latest]!) latest = i;
        checked++;
      }
    }
    assert.equal(checked, TOTAL);

    // The server's counters: as many grants and holder releases as the clients saw, and nothing left held.
    const metrics = (await rawRequest(`${server.url}/metrics`)).text;
    const counter = (name: string, result: string) => Number(new RegExp(`^${name}\\{result="${result}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    const grants = counter('statelock_lock_attempts_total', 'acquired') + counter('statelock_lock_attempts_total', 'acquired_after_wait');
    const releases = counter('statelock_unlocks_total', 'released');
    if (grants !== TOTAL) problem(`the server granted ${grants} locks; the clients saw ${TOTAL}`);
    if (releases !== TOTAL) problem(`the server released ${releases} locks for their holders; the clients released ${TOTAL}`);
    for (const key of KEYS) {
      const held = await rawRequest(`${server.url}/api/v1/locks/${key}`);
      if (held.status !== 404) problem(`${key} is still locked after every holder released it: ${held.text}`);
    }

    const rate = Math.round(TOTAL / (loadMs / 1000));
    console.log(
      `# chaos mutex: ${checked} acquisitions checked on ${KEYS.length} keys by ${CLIENTS} clients in ${formatDuration(loadMs)} (${rate}/s), ` +
        `${refusals} refusals (423) along the way, violations = ${problems.length}, seed ${SEED}`,
    );
    assert.deepEqual(problems, [], `violations (replay with STATELOCK_CHAOS_SEED=${SEED})`);
  });
});
