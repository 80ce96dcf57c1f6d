import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { startServer, tempDir, type RunningServer } from '../support/server-process.js';
import { rawRequest } from '../support/http.js';

/**
 * `statelock backend-config <key> [--pr N] [--s3]` through the built binary. The command only prints,
 * so most tests need no server: the address comes from the global --server. The last test runs the
 * printed configuration with a real `terraform` against a real server when terraform is installed.
 */

const SERVER = 'http://statelock.internal:8080';
const PROD = 'lesson-17/terraform.tfstate';
const LESSON_BUCKET = 'acme-terraform-state-123456789012';

const cli = (...args: string[]) => runCli(['--server', SERVER, 'backend-config', ...args]);

/** The shape `terraform fmt` leaves: balanced braces, two-space nesting, `=` aligned within each run of one-line attributes. */
function assertFmtLike(hcl: string): void {
  let depth = 0;
  let run: { indent: number; eq: number; widest: number }[] = [];
  const closeRun = () => {
    if (run.length > 0) {
      const cols = new Set(run.map((r) => r.eq));
      assert.equal(cols.size, 1, `"=" not aligned in a run of attributes:\n${hcl}`);
      // the widest name has exactly one space before "=", as terraform fmt leaves it
      assert.equal(run[0]!.eq, Math.max(...run.map((r) => r.widest)) + 1, `"=" not one space after the widest name:\n${hcl}`);
    }
    run = [];
  };
  for (const line of hcl.split('\n')) {
    const code = line.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/#.*$/, '');
    if (code.trim() === '') {
      closeRun();
      continue;
    }
    const opens = (code.match(/\{/g) ?? []).length;
    const closes = (code.match(/\}/g) ?? []).length;
    const indent = line.length - line.trimStart().length;
    assert.equal(indent, 2 * (depth - (code.trim().startsWith('}') ? 1 : 0)), `bad indentation of ${JSON.stringify(line)} in:\n${hcl}`);
    const attr = /^(\s*)([A-Za-z_][\w-]*)(\s*)= /.exec(line);
    if (attr && opens === closes) {
      if (run.length > 0 && run[0]!.indent !== indent) closeRun();
      run.push({ indent, eq: line.indexOf('= '), widest: indent + attr[2]!.length });
    } else closeRun();
    depth += opens - closes;
    assert.ok(depth >= 0, `unbalanced "}" in:\n${hcl}`);
  }
  closeRun();
  assert.equal(depth, 0, `unbalanced braces in:\n${hcl}`);
}

const terraformBin = ((): string | null => {
  const found = spawnSync('sh', ['-c', 'command -v terraform'], { encoding: 'utf8' });
  return found.status === 0 && found.stdout.trim() ? found.stdout.trim() : null;
})();
const TF_ENV = { TF_CLI_CONFIG_FILE: '/dev/null', CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_INPUT: '0' };

/** `terraform fmt -check -` on the text, when terraform is installed (the helper above checks the same either way). */
function terraformFmtCheck(hcl: string): void {
  if (!terraformBin) return;
  const r = spawnSync(terraformBin, ['fmt', '-check', '-diff', '-'], { input: hcl, encoding: 'utf8', env: { ...process.env, ...TF_ENV } });
  assert.equal(r.status, 0, `terraform fmt would change:\n${r.stdout}${r.stderr}`);
}

/** The HCL part of a --pr output: the lines of the terraform { … } block. */
function blockOf(out: string): string {
  const start = out.indexOf('terraform {\n');
  const end = out.indexOf('\n}\n', start);
  assert.ok(start >= 0 && end > start, `no terraform block in:\n${out}`);
  return out.slice(start, end + 3);
}

/** The `terraform init \ … -reconfigure` command line of a --pr output, as lines. */
function initCommandOf(out: string): string[] {
  const lines = out.split('\n');
  const start = lines.indexOf('terraform init \\');
  assert.ok(start >= 0, `no "terraform init \\" line in:\n${out}`);
  const end = lines.indexOf('  -reconfigure', start);
  assert.ok(end > start, `no "  -reconfigure" line ending the command in:\n${out}`);
  const command = lines.slice(start, end + 1);
  for (const l of command.slice(0, -1)) assert.ok(l.endsWith(' \\'), `line does not continue the command: ${JSON.stringify(l)}`);
  return command;
}

describe('statelock backend-config: backend "http"', () => {
  test('prints the http block with address, lock_address and unlock_address = <server>/state/<key>', async () => {
    const r = await cli(PROD);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'terraform {',
        '  backend "http" {',
        '    address        = "http://statelock.internal:8080/state/lesson-17/terraform.tfstate"',
        '    lock_address   = "http://statelock.internal:8080/state/lesson-17/terraform.tfstate"',
        '    unlock_address = "http://statelock.internal:8080/state/lesson-17/terraform.tfstate"',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    assert.equal(r.stderr, '');
    assertFmtLike(r.stdout);
    terraformFmtCheck(r.stdout);
  });

  test('takes the server from the global option, trailing slash dropped, and percent-encodes key segments', async () => {
    const r = await runCli(['backend-config', 'team a/app/terraform.tfstate', '--server', 'https://sl.example.com:8443/']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {4}address {8}= "https:\/\/sl\.example\.com:8443\/state\/team%20a\/app\/terraform\.tfstate"$/m);
    assertFmtLike(r.stdout);
  });

  test("--pr 42: the lesson's per-PR key, the -backend-config flags for terraform init -reconfigure, and the cleanup", async () => {
    const r = await cli(PROD, '--pr', '42');
    assert.equal(r.code, 0, r.stderr);
    // the block in versions.tf keeps the production key
    const block = blockOf(r.stdout);
    assert.match(block, /^ {4}address {8}= "http:\/\/statelock\.internal:8080\/state\/lesson-17\/terraform\.tfstate"$/m);
    assertFmtLike(block);
    terraformFmtCheck(block);
    assert.match(r.stdout, /lesson-17\/pr-42\/terraform\.tfstate/);
    assert.deepEqual(initCommandOf(r.stdout), [
      'terraform init \\',
      '  -backend-config="address=http://statelock.internal:8080/state/lesson-17/pr-42/terraform.tfstate" \\',
      '  -backend-config="lock_address=http://statelock.internal:8080/state/lesson-17/pr-42/terraform.tfstate" \\',
      '  -backend-config="unlock_address=http://statelock.internal:8080/state/lesson-17/pr-42/terraform.tfstate" \\',
      '  -reconfigure',
    ]);
    assert.match(r.stdout, /^statelock prune --prefix lesson-17\/pr-42\/ --yes --server http:\/\/statelock\.internal:8080$/m);
    // every line that is not the block or the command is a shell comment: the output pastes as is
    const rest = r.stdout.replace(block, '').split('\n');
    for (const l of rest) assert.ok(l === '' || l.startsWith('#') || l.startsWith('terraform init') || l.startsWith('  -') || l.startsWith('statelock prune'), `unexpected line ${JSON.stringify(l)}`);
  });

  test('--pr on a one-segment key puts pr-N in front', async () => {
    const r = await cli('terraform.tfstate', '--pr', '7');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /-backend-config="address=http:\/\/statelock\.internal:8080\/state\/pr-7\/terraform\.tfstate" \\/);
    assert.match(r.stdout, /^statelock prune --prefix pr-7\/ /m);
  });
});

describe('statelock backend-config --s3', () => {
  const key = `${LESSON_BUCKET}/${PROD}`;

  test("prints the lesson's backend \"s3\" block aimed at the server, as the reference says a custom endpoint needs", async () => {
    const r = await cli(key, '--s3');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'terraform {',
        '  backend "s3" {',
        `    bucket = "${LESSON_BUCKET}"`,
        '    key    = "lesson-17/terraform.tfstate"',
        '    region = "us-east-1"',
        '',
        '    endpoints = {',
        '      s3       = "http://statelock.internal:8080"',
        '      dynamodb = "http://statelock.internal:8080"',
        '      sts      = "http://statelock.internal:8080"',
        '      iam      = "http://statelock.internal:8080"',
        '    }',
        '    use_path_style          = true',
        '    skip_metadata_api_check = true',
        '',
        '    dynamodb_table = "terraform-state-lock"',
        '    use_lockfile   = true',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    assert.match(r.stderr, /AWS_ACCESS_KEY_ID/);
    assertFmtLike(r.stdout);
    terraformFmtCheck(r.stdout);
  });

  test("--pr 42 --s3: the lesson's -backend-config=\"key=lesson-17/pr-${PULL_REQUEST_NUMBER}/terraform.tfstate\" flag", async () => {
    const r = await cli(key, '--pr', '42', '--s3');
    assert.equal(r.code, 0, r.stderr);
    const block = blockOf(r.stdout);
    assert.match(block, /^ {4}key {4}= "lesson-17\/terraform\.tfstate"$/m);
    assertFmtLike(block);
    terraformFmtCheck(block);
    assert.deepEqual(initCommandOf(r.stdout), ['terraform init \\', '  -backend-config="key=lesson-17/pr-42/terraform.tfstate" \\', '  -reconfigure']);
    assert.match(r.stdout, new RegExp(`^statelock prune --prefix ${LESSON_BUCKET}/lesson-17/pr-42/ --yes --server http://statelock\\.internal:8080$`, 'm'));
  });

  test('escapes HCL template sequences and quotes in keys', async () => {
    const r = await cli('b/${x}%{y}"q"\\z', '--s3');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {4}key {4}= "\$\$\{x\}%%\{y\}\\"q\\"\\\\z"$/m);
    assertFmtLike(r.stdout);
    terraformFmtCheck(r.stdout);
  });
});

describe('statelock backend-config: usage errors exit 2 and print nothing on stdout', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['no key', [], /usage: statelock backend-config <key>/],
    ['two keys', ['a/b', 'c/d'], /usage: statelock backend-config <key>/],
    ['an empty segment', ['lesson-17//terraform.tfstate'], /empty segment/],
    ['a trailing slash', ['lesson-17/'], /empty segment/],
    ['a ".." segment', ['lesson-17/../terraform.tfstate'], /"\.\." segment/],
    ['a "." segment', ['./terraform.tfstate'], /"\." segment/],
    ['an empty key', [''], /empty/],
    ['--pr 0', [PROD, '--pr', '0'], /--pr must be a positive integer/],
    ['--pr -3', [PROD, '--pr=-3'], /--pr must be a positive integer/],
    ['--pr 4.2', [PROD, '--pr', '4.2'], /--pr must be a positive integer/],
    ['--pr abc', [PROD, '--pr', 'abc'], /--pr must be a positive integer/],
    ['--pr without a value', [PROD, '--pr'], /--pr/],
    ['a one-segment key with --s3', ['terraform.tfstate', '--s3'], /bucket and a key/],
    ['an unknown option', [PROD, '--s4'], /--s4/],
  ];
  for (const [name, args, message] of cases) {
    test(name, async () => {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    });
  }
});

describe('statelock backend-config with a real terraform', { skip: terraformBin ? false : 'terraform is not installed' }, () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  const terraform = (cwd: string, args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(terraformBin!, args, { cwd, env: { ...process.env, ...TF_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, out }));
    });

  test('the printed block and the printed --pr init line store the states where they say, and the printed prune removes the PR one', async () => {
    const dir = tempDir('statelock-tf-');
    const block = await runCli(['--server', server.url, 'backend-config', PROD]);
    assert.equal(block.code, 0, block.stderr);
    writeFileSync(join(dir, 'versions.tf'), block.stdout);
    writeFileSync(join(dir, 'main.tf'), 'resource "terraform_data" "x" {\n  input = "lesson-17"\n}\n');
    let r = await terraform(dir, ['init', '-no-color']);
    assert.equal(r.code, 0, r.out);
    r = await terraform(dir, ['apply', '-auto-approve', '-no-color']);
    assert.equal(r.code, 0, r.out);
    assert.equal((await rawRequest(`${server.url}/state/${PROD}`)).status, 200);

    const pr = await runCli(['--server', server.url, 'backend-config', PROD, '--pr', '42']);
    assert.equal(pr.code, 0, pr.stderr);
    const flags = initCommandOf(pr.stdout)
      .slice(1)
      .map((l) => l.replace(/ \\$/, '').trim())
      .map((f) => f.replace(/^-backend-config="(.*)"$/, '-backend-config=$1'));
    r = await terraform(dir, ['init', '-no-color', ...flags]);
    assert.equal(r.code, 0, r.out);
    r = await terraform(dir, ['apply', '-auto-approve', '-no-color']);
    assert.equal(r.code, 0, r.out);
    assert.equal((await rawRequest(`${server.url}/state/lesson-17/pr-42/terraform.tfstate`)).status, 200);

    const pruneLine = /^statelock (prune .*)$/m.exec(pr.stdout)![1]!.split(' ');
    const pruned = await runCli(pruneLine);
    assert.equal(pruned.code, 0, pruned.stdout + pruned.stderr);
    assert.equal((await rawRequest(`${server.url}/state/lesson-17/pr-42/terraform.tfstate`)).status, 404);
    assert.equal((await rawRequest(`${server.url}/state/${PROD}`)).status, 200);
  });
});
