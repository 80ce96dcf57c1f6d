import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { runCli } from '../support/cli.js';
import { startServer, type RunningServer } from '../support/server-process.js';
import { rawRequest } from '../support/http.js';
import { HttpBackendClient, makeState, newLineage } from '../support/terraform-client.js';
import { ApiClient } from '../../src/cli/api-client.js';
import type { CliContext } from '../../src/cli/command.js';
import { pruneCommand } from '../../src/cli/commands/prune.js';
import { exitCodeFor } from '../../src/cli/exit-codes.js';

/**
 * `statelock prune --prefix P [--older-than D] [--dry-run] [--yes]` — the lesson's post-merge
 * `aws s3 rm` of PR states — through the built binary against a real server (stdin a pipe, so never a
 * TTY), plus in-process runs for what a subprocess cannot show deterministically: the prompt on a
 * terminal, a lock taken between listing and deleting, and ages measured from a clock moved forward.
 */

const PROD = 'lesson-17/terraform.tfstate';
const pr = (n: number) => `lesson-17/pr-${n}/terraform.tfstate`;
const PR_KEYS = [1, 2, 3, 4].map(pr);
const LOCKED = pr(3);
const WHO = 'ci@runner-07';

interface AuditItem {
  action: string;
  key: string;
  outcome: string;
}

describe('statelock prune', () => {
  let server: RunningServer;
  let lockId: string;
  const serials = new Map<string, number>();
  const cli = (args: string[]) => runCli(['--server', server.url, 'prune', ...args]);
  const status = async (key: string) => (await rawRequest(`${server.url}/state/${key}`)).status;
  const liveKeys = async () => (await rawRequest(`${server.url}/api/v1/states`)).json<{ items: { key: string }[] }>().items.map((s) => s.key);
  const client = (key: string) => {
    const address = `${server.url}/state/${key}`;
    return new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, retryWaitMinMs: 10, retryWaitMaxMs: 10 }, { who: WHO });
  };
  /** A Terraform-like apply of `serial` versions to `key`. */
  const applyStates = async (key: string, count: number) => {
    const lineage = newLineage();
    for (let serial = 1; serial <= count; serial++) await client(key).apply([makeState({ serial, lineage, outputs: { pr: { value: key, type: 'string' } } })], { verbatim: true });
    serials.set(key, count);
  };

  before(async () => {
    server = await startServer();
    await applyStates(PROD, 3);
    for (const [i, key] of PR_KEYS.entries()) await applyStates(key, i + 1);
    // a PR build still planning: its lock is held while prune runs
    lockId = await client(LOCKED).lock('OperationTypePlan');
  });
  after(async () => {
    await server.stop();
  });

  describe('usage errors exit 2 and remove nothing', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['no --prefix', ['--yes'], /prune needs --prefix/],
      ['an empty --prefix', ['--prefix', '', '--yes'], /--prefix must not be empty/],
      ['an empty --prefix=', ['--prefix=', '--yes'], /--prefix must not be empty/],
      ['--older-than 7x', ['--prefix', 'lesson-17/pr-', '--older-than', '7x', '--yes'], /--older-than must be .*not "7x"/],
      ['--older-than without a unit', ['--prefix', 'lesson-17/pr-', '--older-than', '7', '--yes'], /--older-than must be/],
      ['--older-than -1d', ['--prefix', 'lesson-17/pr-', '--older-than=-1d', '--yes'], /--older-than must be/],
      ['a positional argument', [PROD, '--yes'], /unexpected argument/],
      ['an unknown option', ['--prefix', 'lesson-17/pr-', '--force'], /--force/],
    ];
    for (const [name, args, message] of cases) {
      test(name, async () => {
        const r = await cli(args);
        assert.equal(r.code, 2, r.stdout + r.stderr);
        assert.match(r.stderr, message);
        assert.equal((await liveKeys()).length, 5);
      });
    }
  });

  test('--dry-run lists the unlocked PR states (key, serial, age), names the locked one with Who and ID, and removes nothing', async () => {
    const r = await cli(['--prefix', 'lesson-17/pr-', '--dry-run']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const key of [pr(1), pr(2), pr(4)]) assert.match(r.stdout, new RegExp(`^${key}\\s+${serials.get(key)}\\s+[\\dsmh]+ ago$`, 'm'));
    assert.doesNotMatch(r.stdout, new RegExp(`^${LOCKED}\\s+\\d+\\s+[\\dsmh]+ ago$`, 'm'), 'the locked state is not among those to remove');
    assert.match(r.stdout, /^Would remove: 3 states under "lesson-17\/pr-"$/m);
    assert.match(r.stdout, /Skipped \(locked\)/);
    assert.match(r.stdout, new RegExp(`${LOCKED}\\s+${WHO}\\s+${lockId}\\s+OperationTypePlan`));
    assert.doesNotMatch(r.stdout, new RegExp(`^${PROD}`, 'm'));
    assert.match(r.stdout, /Dry run: nothing removed/);
    assert.deepEqual((await liveKeys()).sort(), [PROD, ...PR_KEYS].sort());
  });

  test('without --yes and with stdin not a terminal: exit 2, says to pass --yes, removes nothing', async () => {
    const r = await cli(['--prefix', 'lesson-17/pr-']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /pass --yes/);
    assert.doesNotMatch(r.stdout, /Removed/);
    assert.deepEqual((await liveKeys()).sort(), [PROD, ...PR_KEYS].sort());
  });

  test('--older-than 7d keeps states written minutes ago: nothing removed, exit 0', async () => {
    const r = await cli(['--prefix', 'lesson-17/pr-', '--older-than', '7d', '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /nothing to remove/);
    assert.match(r.stdout, /4 states under "lesson-17\/pr-" written less than 7d ago kept/);
    assert.deepEqual((await liveKeys()).sort(), [PROD, ...PR_KEYS].sort());
  });

  test('a prefix that matches nothing exits 0', async () => {
    const r = await cli(['--prefix', 'lesson-17/pr-999/', '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /No states under "lesson-17\/pr-999\/": nothing to remove/);
  });

  test('--older-than 0s matches every state under the prefix: one PR state removed', async () => {
    const r = await cli(['--prefix', 'lesson-17/pr-1/', '--older-than', '0s', '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^Removed ${pr(1)} \\(serial 1\\)$`, 'm'));
    assert.equal(await status(pr(1)), 404);
    assert.equal(await status(pr(2)), 200);
  });

  test('--yes removes the unlocked PR states only, names the skipped locked one, leaves production untouched', async () => {
    const prodBefore = (await rawRequest(`${server.url}/state/${PROD}`)).body;
    const r = await cli(['--prefix', 'lesson-17/pr-', '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const key of [pr(2), pr(4)]) assert.match(r.stdout, new RegExp(`^Removed ${key} \\(serial ${serials.get(key)}\\)$`, 'm'));
    assert.match(r.stdout, new RegExp(`${LOCKED}\\s+${WHO}\\s+${lockId}`));
    assert.match(r.stdout, /Removed 2 states; skipped 1 locked\./);
    assert.match(r.stdout, /soft delete/);
    assert.match(r.stdout, /statelock state restore <key> <serial>/);
    assert.match(r.stdout, /GET \/api\/v1\/versions\/<key>/);
    assert.deepEqual((await liveKeys()).sort(), [PROD, LOCKED].sort());
    assert.ok((await rawRequest(`${server.url}/state/${PROD}`)).body.equals(prodBefore));
    assert.equal(await status(LOCKED), 200);
    // the holder's lock is untouched
    assert.equal((await rawRequest(`${server.url}/api/v1/locks/${LOCKED}`)).json<{ info: { ID: string } }>().info.ID, lockId);
  });

  test('removed states keep every version and are audited as state.delete; a restore brings one back', async () => {
    for (const key of [pr(1), pr(2), pr(4)]) {
      const versions = await rawRequest(`${server.url}/api/v1/versions/${key}`);
      assert.equal(versions.status, 200, `${key}: ${versions.text}`);
      assert.deepEqual(
        versions.json<{ items: { serial: number }[] }>().items.map((v) => v.serial),
        Array.from({ length: serials.get(key)! }, (_, i) => i + 1),
      );
      const audit = (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(key)}&action=state.delete`)).json<{ items: AuditItem[] }>().items;
      assert.ok(audit.some((a) => a.key === key && a.outcome === 'ok'), JSON.stringify(audit));
    }
    const refused = (await rawRequest(`${server.url}/api/v1/audit?key=${encodeURIComponent(PROD)}&action=state.delete`)).json<{ items: AuditItem[] }>().items;
    assert.deepEqual(refused, [], 'production was never even tried');
    // the recovery the output promises: roll the last version forward again
    const restored = await rawRequest(`${server.url}/api/v1/restore/${pr(4)}?serial=${serials.get(pr(4))}`, { method: 'POST' });
    assert.equal(restored.status, 200, restored.text);
    assert.equal(await status(pr(4)), 200);
  });

  describe('in process', () => {
    const ctxFor = (opts: { api?: ApiClient; input?: string; tty?: boolean; now?: () => number } = {}) => {
      const output = { out: '', err: '' };
      const stdin = new PassThrough() as unknown as NodeJS.ReadStream;
      (stdin as { isTTY?: boolean }).isTTY = opts.tty ?? false;
      if (opts.input !== undefined) (stdin as unknown as PassThrough).end(opts.input);
      const ctx: CliContext = {
        api: opts.api ?? new ApiClient({ server: server.url }),
        io: { color: false, out: (t) => void (output.out += t), err: (t) => void (output.err += t) },
        env: {},
        stdin,
        now: opts.now ?? (() => Date.now()),
      };
      return { ctx, output };
    };

    test('on a terminal it asks; any answer but "yes" removes nothing (exit 1), "yes" removes', async () => {
      await applyStates(pr(5), 1);
      const no = ctxFor({ tty: true, input: 'y\n' });
      const err = await pruneCommand(['--prefix', 'lesson-17/pr-5/'], no.ctx).then(
        () => assert.fail('prune went ahead without "yes"'),
        (e: unknown) => e,
      );
      assert.equal(exitCodeFor(err), 1);
      assert.match(no.output.err, /Remove 1 state\? Only 'yes' will be accepted to confirm\./);
      assert.equal(await status(pr(5)), 200);

      const yes = ctxFor({ tty: true, input: 'yes\n' });
      assert.equal(await pruneCommand(['--prefix', 'lesson-17/pr-5/'], yes.ctx), 0);
      assert.match(yes.output.err, /Remove 1 state\? Only 'yes' will be accepted to confirm\./);
      assert.equal(await status(pr(5)), 404);
    });

    test('ages come from the last write: a clock 8 days ahead makes --older-than 7d match, 6 days ahead does not', async () => {
      await applyStates(pr(6), 2);
      const day = 86_400_000;
      const six = ctxFor({ now: () => Date.now() + 6 * day });
      assert.equal(await pruneCommand(['--prefix', 'lesson-17/pr-6/', '--older-than', '7d', '--dry-run'], six.ctx), 0);
      assert.match(six.output.out, /nothing to remove/);
      const eight = ctxFor({ now: () => Date.now() + 8 * day });
      assert.equal(await pruneCommand(['--prefix', 'lesson-17/pr-6/', '--older-than', '7d', '--yes'], eight.ctx), 0);
      assert.match(eight.output.out, new RegExp(`^${pr(6)}\\s+2\\s+8d00h ago$`, 'm'));
      assert.equal(await status(pr(6)), 404);
    });

    test('a state locked between listing and deleting is reported as skipped (423), the run goes on and exits 0', async () => {
      await applyStates(pr(7), 1);
      await applyStates(pr(8), 1);
      let racerId = '';
      /** An API client that lets a "terraform plan" lock pr-7 just before prune's DELETE of it reaches the server. */
      class RacingApi extends ApiClient {
        override async sendJson<T>(method: string, path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
          if (method === 'DELETE' && path.endsWith('pr-7/terraform.tfstate') && !racerId) racerId = await client(pr(7)).lock('OperationTypePlan');
          return super.sendJson<T>(method, path, query);
        }
      }
      const run = ctxFor({ api: new RacingApi({ server: server.url }) });
      assert.equal(await pruneCommand(['--prefix', 'lesson-17/pr-', '--yes'], run.ctx), 0, run.output.out + run.output.err);
      assert.ok(racerId);
      assert.match(run.output.out, /Skipped \(locked since it was listed\)/);
      assert.match(run.output.out, new RegExp(`${pr(7)}\\s+${WHO}\\s+${racerId}`));
      assert.match(run.output.out, new RegExp(`^Removed ${pr(8)} \\(serial 1\\)$`, 'm'));
      assert.match(run.output.out, /skipped 2 locked/); // pr-3 (locked from the start) and pr-7
      assert.equal(await status(pr(7)), 200);
      assert.equal(await status(pr(8)), 404);
      assert.equal(await status(PROD), 200);
    });
  });
});
