import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProgress, renderProgress, REDRAW_MS } from '../../src/cli/progress.js';
import { runCli } from '../support/cli.js';
import { startServer, STATELOCK_BIN, tempDir, type RunningServer } from '../support/server-process.js';
import { makeState, newLineage, sampleResources } from '../support/terraform-client.js';

/** The progress bar of `state push` and `state pull` for states over 5 MB: on a TTY only. */

const HAVE_SCRIPT = spawnSync('which', ['script']).status === 0;
const BAR = /\[#+-*\]/;

/** A ~6 MB state as Terraform writes it: 3000 for_each instances of an S3 object, plus the sample resources. */
function bigState(lineage: string): Buffer {
  const resources = sampleResources() as Array<Record<string, unknown> & { type: string; instances: Array<Record<string, unknown> & { attributes: Record<string, unknown> }> }>;
  const marker = resources.find((r) => r.type === 'aws_s3_object')!;
  const template = marker.instances[0]!;
  marker.instances = Array.from({ length: 3000 }, (_, i) => {
    const key = `objects/object-${String(i).padStart(4, '0')}.json`;
    return { ...structuredClone(template), index_key: key, attributes: { ...structuredClone(template.attributes), key, id: `lesson17-ab5c3665/${key}`, content: `object ${i}\n`.padEnd(200, '.') } };
  });
  return makeState({ serial: 1, lineage, resources });
}

/** Runs a command line under a pseudo-terminal (util-linux `script`), so that stdout and stderr are a TTY. */
function underTty(command: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', COLUMNS: '100' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

describe('progress bar', () => {
  let server: RunningServer;
  const dir = tempDir('statelock-progress-');
  const file = join(dir, 'big.tfstate');
  const bytes = bigState(newLineage());
  before(async () => {
    server = await startServer();
    writeFileSync(file, bytes);
  });
  after(async () => void (await server.stop()));

  test('the fixture is a state over 5 MB', () => {
    assert.ok(bytes.length > 6 * 1000 * 1000 && bytes.length < 7 * 1024 * 1024, `${bytes.length} bytes`);
  });

  test('push and pull on a TTY show the bar up to 100%, then the result; the bytes arrive unchanged', { skip: HAVE_SCRIPT ? false : 'util-linux script is not installed' }, async () => {
    const cli = `${sh(process.execPath)} ${sh(STATELOCK_BIN)} --server ${sh(server.url)}`;
    const push = await underTty(`${cli} state push tty/big ${sh(file)}`);
    assert.equal(push.code, 0, push.output);
    assert.match(push.output, /\rpushing {2}[\d.]+ (KiB|MiB) \/ 6\.\d MiB +\d+% \[[#-]+\] {2}[\d.]+ MiB\/s/);
    assert.match(push.output, BAR);
    assert.match(push.output, /\rpushing {2}6\.\d MiB \/ 6\.\d MiB {2}100% \[#+\] {2}[\d.]+ MiB\/s\u001b\[K/, 'a 100% frame');
    assert.match(push.output, /\r\u001b\[Kpushed serial 1 \(lineage [0-9a-f-]+\) to tty\/big/, 'the bar is erased before the result');

    const out = join(dir, 'pulled.tfstate');
    const pull = await underTty(`${cli} state pull tty/big -o ${sh(out)}`);
    assert.equal(pull.code, 0, pull.output);
    assert.match(pull.output, /\rpulling {2}6\.\d MiB \/ 6\.\d MiB {2}100% \[#+\]/);
    assert.ok(readFileSync(out).equals(bytes), 'pushed and pulled byte for byte');
  });

  test('without a TTY there is no bar', async () => {
    const push = await runCli(['--server', server.url, 'state', 'push', 'pipe/big', file]);
    assert.equal(push.code, 0, push.stderr);
    assert.equal(push.stderr, '');
    assert.match(push.stdout, /^pushed serial 1 \(lineage [0-9a-f-]+\) to pipe\/big\n$/);
    const out = join(dir, 'pulled-pipe.tfstate');
    const pull = await runCli(['--server', server.url, 'state', 'pull', 'pipe/big', '-o', out]);
    assert.equal(pull.code, 0, pull.stderr);
    assert.equal(pull.stderr, '');
    assert.doesNotMatch(pull.stdout, /%|\r/);
    assert.ok(readFileSync(out).equals(bytes));
  });

  test('a small state on a TTY shows no bar', { skip: HAVE_SCRIPT ? false : 'util-linux script is not installed' }, async () => {
    const small = join(dir, 'small.tfstate');
    writeFileSync(small, makeState({ serial: 1, lineage: newLineage(), resources: sampleResources() }));
    const r = await underTty(`${sh(process.execPath)} ${sh(STATELOCK_BIN)} --server ${sh(server.url)} state push tty/small ${sh(small)}`);
    assert.equal(r.code, 0, r.output);
    assert.doesNotMatch(r.output, /%|pushing/);
  });
});

describe('createProgress (a fake TTY and a fake clock)', () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 80, write: (s: string) => void writes.push(s) } as unknown as NodeJS.WriteStream };
  };
  const total = 6 * 1024 * 1024;

  test('redraws at most every 100 ms, draws 100% at the end, then erases the line', () => {
    const { writes, stream } = fakeStream(true);
    let now = 0;
    const p = createProgress('pushing', total, stream, () => now);
    assert.equal(p.active, true);
    for (let i = 0; i < 96; i++) {
      p.add(64 * 1024);
      now += 10; // 96 chunks over 960 ms
    }
    p.done();
    const frames = writes.filter((w) => w.startsWith('\r') && w.length > 4);
    assert.ok(frames.length <= Math.ceil(960 / REDRAW_MS) + 2, `${frames.length} frames`);
    assert.ok(frames.length >= 2);
    assert.match(frames.at(-1)!, /100% \[#{10,}\]/);
    assert.equal(writes.at(-1), '\r\u001b[K');
    p.done();
    p.add(1);
    assert.equal(writes.at(-1), '\r\u001b[K', 'nothing after done');
  });

  test('off when the stream is not a TTY, or the transfer is 5 MB or less', () => {
    const pipe = fakeStream(false);
    const p = createProgress('pushing', total, pipe.stream, () => 0);
    p.add(total);
    p.done();
    assert.equal(p.active, false);
    assert.deepEqual(pipe.writes, []);
    const tty = fakeStream(true);
    const small = createProgress('pushing', 5 * 1024 * 1024, tty.stream, () => 0);
    small.add(1);
    small.done();
    assert.deepEqual(tty.writes, []);
  });

  test('a frame: bytes done / total, percentage, bar, MiB/s, within the width', () => {
    const line = renderProgress('pulling', 3 * 1024 * 1024, 6 * 1024 * 1024, 500, 80);
    assert.match(line, /^pulling {2}3\.0 MiB \/ 6\.0 MiB +50% \[(#+)(-+)\] {2}6\.0 MiB\/s$/);
    const [, filled, empty] = /\[(#+)(-+)\]/.exec(line)!;
    assert.ok(Math.abs(filled!.length - empty!.length) <= 1, line);
    assert.ok(line.length <= 80, `${line.length} columns`);
  });
});
