import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTlsCert, serverRequest, startAwsServer, type AwsServer } from './support/aws.js';
import { lockBody, stateBody } from './support/http.js';
import { tempDir } from './support/server-process.js';
import { HttpBackendClient, makeState, newLineage, type BackendConfig } from './support/terraform-client.js';
import { findExecutable } from '../src/cli/child-process-guard.js';

/**
 * The http backend over HTTPS, as Terraform and OpenTofu configure it with `client_ca_certificate_pem`:
 * the server's CA is given explicitly (never through SSL_CERT_FILE or the system store). With the CA the
 * whole init/lock/write/read/unlock cycle works; without it (or with another CA) the client refuses the
 * server's certificate instead of silently talking to it; plain HTTP to the HTTPS port gets no answer.
 * The real `terraform` binary, when on PATH, does the same with `backend "http"` over HTTPS.
 */

const FAST_RETRIES: Partial<BackendConfig> = { retryMax: 1, retryWaitMinMs: 10, retryWaitMaxMs: 50 };

describe('http backend over HTTPS (client_ca_certificate_pem)', () => {
  let server: AwsServer;
  let caPem: string;
  const clients: HttpBackendClient[] = [];

  const backend = (key: string, extra: Partial<BackendConfig> = {}, base = server.url): HttpBackendClient => {
    const address = `${base}/state/${key}`;
    const c = new HttpBackendClient({ address, lockAddress: address, unlockAddress: address, ...FAST_RETRIES, ...extra }, { who: 'tls-test@ci' });
    clients.push(c);
    return c;
  };
  const api = async (path: string) => {
    const res = await serverRequest(server, 'GET', path);
    return { status: res.status, json: () => JSON.parse(res.body.toString('utf8')) as Record<string, unknown> };
  };
  const versionCount = async (key: string) => {
    const res = await api(`/api/v1/versions/${key}`);
    return res.status === 200 ? (res.json().items as unknown[]).length : 0;
  };

  before(async () => {
    server = await startAwsServer({ tls: true });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    caPem = server.tls!.cert.toString('utf8');
  });
  after(async () => {
    for (const c of clients) c.close();
    await server?.stop();
  });

  test('with the CA given explicitly: init, lock, write, read, unlock round trip', async () => {
    const key = 'tls/round-trip/terraform.tfstate';
    const client = backend(key, { caCertificatePem: caPem });

    const init = await client.init();
    assert.equal(init.remote, null, 'a fresh key has no state');
    assert.ok(init.client.log.every((r) => r.url.startsWith('https://')), 'every request went over HTTPS');

    // The low-level protocol, step by step, as one terraform process.
    const p = client.newProcess();
    const lineage = newLineage();
    const lockId = await p.lock('OperationTypeApply');
    assert.notEqual(lockId, '');
    const held = await api(`/api/v1/locks/${key}`);
    assert.equal(held.status, 200);
    assert.equal((held.json().info as { ID: string }).ID, lockId);
    const first = makeState({ serial: 1, lineage });
    await p.write(first);
    assert.deepEqual(await p.get(), first, 'reads back the bytes it wrote');
    await p.unlock(lockId);
    assert.equal((await api(`/api/v1/locks/${key}`)).status, 404, 'unlocked');

    // The apply flow: GET, LOCK, GET, POST ?ID=, UNLOCK — all over TLS.
    const applied = await client.apply([makeState({ serial: 1, lineage, outputs: { greeting: { value: 'hello over tls', type: 'string' } } })]);
    assert.equal(applied.uploads.length, 1);
    const methods = applied.client.log.map((r) => r.method);
    assert.deepEqual(methods, ['GET', 'LOCK', 'GET', 'POST', 'UNLOCK']);
    assert.ok(applied.client.log.every((r) => r.url.startsWith('https://') && r.status === 200), JSON.stringify(applied.client.log.map((r) => [r.method, r.url, r.status])));
    const read = await client.newProcess().get();
    assert.deepEqual(read, applied.uploads[0]);
    assert.equal(await versionCount(key), 2);
    assert.equal((await api(`/api/v1/locks/${key}`)).status, 404, 'the apply released its lock');
  });

  test('the legacy `ca` option still works (existing callers keep their behaviour)', async () => {
    const client = backend('tls/legacy-ca/terraform.tfstate', { ca: caPem });
    const applied = await client.apply([makeState({ serial: 1, lineage: newLineage() })]);
    assert.equal(applied.uploads.length, 1);
  });

  test('without the CA the client refuses the certificate (no silent success), nothing is stored', async () => {
    const key = 'tls/no-ca/terraform.tfstate';
    const client = backend(key);
    await assert.rejects(client.init(), (err: Error) => {
      assert.match(err.message, /tls: failed to verify certificate: x509: /, err.message);
      assert.match(err.message, /self[- ]signed/i);
      return true;
    });
    await assert.rejects(client.apply([makeState({ serial: 1, lineage: newLineage() })]), /tls: failed to verify certificate/);
    // A certificate error is not retried (go-retryablehttp gives up on x509 errors at once).
    const attempts = client.log.filter((r) => r.method === 'GET');
    assert.ok(attempts.length >= 1 && attempts.every((r) => r.status === 0 && /certificate/.test(r.error ?? '')), JSON.stringify(attempts));
    assert.equal(await versionCount(key), 0, 'nothing was stored');
    assert.equal((await api(`/api/v1/locks/${key}`)).status, 404, 'no lock was taken');
  });

  test('another CA is refused too', async () => {
    const other = makeTlsCert();
    const key = 'tls/wrong-ca/terraform.tfstate';
    const client = backend(key, { caCertificatePem: other.cert.toString('utf8') });
    await assert.rejects(client.apply([makeState({ serial: 1, lineage: newLineage() })]), /tls: failed to verify certificate: x509: /);
    assert.equal(await versionCount(key), 0);
    assert.equal((await api(`/api/v1/locks/${key}`)).status, 404);
  });

  test('plain HTTP to the HTTPS port fails and changes nothing', async () => {
    const key = 'tls/plain-http/terraform.tfstate';
    const plainBase = server.url.replace(/^https:/, 'http:');
    const client = backend(key, {}, plainBase);
    await assert.rejects(client.apply([makeState({ serial: 1, lineage: newLineage() })]), (err: Error) => {
      assert.match(err.message, /giving up after \d+ attempt\(s\)/, err.message);
      return true;
    });
    assert.ok(client.log.length > 0 && client.log.every((r) => r.status === 0), `no HTTP answer at all: ${JSON.stringify(client.log.map((r) => [r.method, r.status, r.error]))}`);

    // On the wire: a plain request gets no HTTP response (the TLS server cannot parse it) and the connection ends.
    const port = Number(new URL(server.url).port);
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(`GET /state/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
      let data = '';
      const timer = setTimeout(() => socket.destroy(), 10_000);
      socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(data);
      });
      socket.on('error', () => undefined);
    });
    assert.doesNotMatch(answer, /^HTTP\/1\.1 2\d\d/, 'never a success over plain HTTP');
    assert.equal(await versionCount(key), 0);
    assert.equal((await serverRequest(server, 'GET', '/readyz')).status, 200, 'the server is still serving HTTPS');
  });
});

/* ------------------------------------------------------------------ */
/* The real terraform binary                                           */
/* ------------------------------------------------------------------ */


const terraformBin = findExecutable('terraform');
const TERRAFORM_SKIP = terraformBin ? false : 'no terraform binary on PATH';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runTerraform(dir: string, env: NodeJS.ProcessEnv, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(terraformBin!, [...args, '-no-color'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 90_000);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the real terraform binary: backend "http" over HTTPS with client_ca_certificate_pem', { skip: TERRAFORM_SKIP }, () => {
  let server: AwsServer;
  const dirs: string[] = [];

  /** A fresh working directory with its own HOME and TF_DATA_DIR; nothing of the user's environment leaks in. */
  const workspace = (config: string) => {
    const dir = tempDir('statelock-tls-tf-');
    dirs.push(dir);
    const home = join(dir, '.home');
    mkdirSync(home);
    writeFileSync(join(dir, 'main.tf'), config);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: home,
      TMPDIR: dir,
      TF_IN_AUTOMATION: '1',
      TF_INPUT: '0',
      CHECKPOINT_DISABLE: '1',
      TF_DATA_DIR: join(dir, '.tfdata'),
    };
    return { dir, env };
  };
  const config = (address: string, caPem: string | null) => `terraform {
  backend "http" {
    address        = "${address}"
    lock_address   = "${address}"
    unlock_address = "${address}"
    retry_max      = 1
    retry_wait_min = 0
    retry_wait_max = 1
${caPem === null ? '' : `    client_ca_certificate_pem = <<-EOT\n${caPem.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n    EOT\n`}  }
}

resource "terraform_data" "over_tls" {
  input = "hello over https"
}

output "echo" {
  value = terraform_data.over_tls.output
}
`;

  before(async () => {
    server = await startAwsServer({ tls: true });
  });
  after(async () => {
    await server?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('terraform init + apply store the state over HTTPS and release the lock', async () => {
    const key = 'tls/real-terraform/terraform.tfstate';
    const ws = workspace(config(`${server.url}/state/${key}`, server.tls!.cert.toString('utf8')));
    const init = await runTerraform(ws.dir, ws.env, ['init', '-input=false']);
    assert.equal(init.code, 0, `terraform init failed\n${init.stdout}\n${init.stderr}`);
    const apply = await runTerraform(ws.dir, ws.env, ['apply', '-auto-approve', '-input=false']);
    assert.equal(apply.code, 0, `terraform apply failed\n${apply.stdout}\n${apply.stderr}`);
    assert.match(apply.stdout, /Apply complete! Resources: 1 added/);

    const stored = await serverRequest(server, 'GET', `/state/${key}`);
    assert.equal(stored.status, 200);
    const state = JSON.parse(stored.body.toString('utf8')) as { serial: number; resources: Array<{ type: string; name: string }>; outputs: Record<string, { value: unknown }> };
    assert.deepEqual(state.resources.map((r) => `${r.type}.${r.name}`), ['terraform_data.over_tls']);
    assert.equal(state.outputs['echo']?.value, 'hello over https');
    assert.equal((await serverRequest(server, 'GET', `/api/v1/locks/${key}`)).status, 404, 'the lock was released');

    const again = await runTerraform(ws.dir, ws.env, ['plan', '-detailed-exitcode', '-input=false']);
    assert.equal(again.code, 0, `a second plan over HTTPS sees no changes\n${again.stdout}\n${again.stderr}`);
  });

  test('the same configuration without client_ca_certificate_pem fails with a certificate error', async () => {
    const key = 'tls/real-terraform-no-ca/terraform.tfstate';
    const ws = workspace(config(`${server.url}/state/${key}`, null));
    const init = await runTerraform(ws.dir, ws.env, ['init', '-input=false']);
    const apply = init.code === 0 ? await runTerraform(ws.dir, ws.env, ['apply', '-auto-approve', '-input=false']) : init;
    assert.notEqual(apply.code, 0, `terraform must not succeed without the CA\n${apply.stdout}\n${apply.stderr}`);
    assert.match(apply.stderr.replace(/\s+/g, ' '), /x509: certificate signed by unknown authority|failed to verify certificate/);
    assert.equal((await serverRequest(server, 'GET', `/state/${key}`)).status, 404, 'nothing was stored');
  });
});

/* ------------------------------------------------------------------ */
/* The raw protocol over node:https, as client_ca_certificate_pem does */
/* ------------------------------------------------------------------ */

interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request over node:https to the server; `ca` is the PEM Terraform's client_ca_certificate_pem carries (none: the system store). */
function httpsCall(server: AwsServer, method: string, path: string, opts: { body?: string; ca?: Buffer | null } = {}): Promise<HttpsAnswer> {
  const url = new URL(server.url);
  const payload = opts.body === undefined ? undefined : Buffer.from(opts.body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: Number(url.port),
        path,
        method,
        agent: false,
        headers: payload ? { 'Content-Length': String(payload.length), 'Content-Type': 'application/json', 'Content-MD5': createHash('md5').update(payload).digest('base64') } : {},
        ...(opts.ca ? { ca: opts.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

const TERRAFORM_BIN = ((): string | null => {
  try {
    accessSync('/usr/local/bin/terraform', constants.X_OK);
    return '/usr/local/bin/terraform';
  } catch {
    return findExecutable('terraform');
  }
})();

describe('node:https with the server CA: LOCK, POST, GET, UNLOCK on /state/tls/terraform.tfstate', () => {
  let server: AwsServer;
  const key = 'tls/terraform.tfstate';
  const lockId = 'b6a4c3d2-1e0f-4a9b-8c7d-6e5f4a3b2c1d';
  const dirs: string[] = [];

  before(async () => {
    server = await startAwsServer({ tls: true });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await server?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('the lock / write / read / unlock cycle over HTTPS; bytes and Content-MD5 round-trip', async () => {
    const ca = server.tls!.cert;
    const locked = await httpsCall(server, 'LOCK', `/state/${key}`, { body: lockBody(lockId), ca });
    assert.equal(locked.status, 200, locked.body.toString());

    const state = stateBody(1, 'tls-lineage-0001', { outputs: { over: { value: 'https', type: 'string' } } });
    const written = await httpsCall(server, 'POST', `/state/${key}?ID=${lockId}`, { body: state, ca });
    assert.equal(written.status, 200, written.body.toString());

    const read = await httpsCall(server, 'GET', `/state/${key}`, { ca });
    assert.equal(read.status, 200);
    assert.equal(read.body.toString('utf8'), state, 'the same bytes come back');
    const md5 = createHash('md5').update(state).digest('base64');
    assert.equal(read.headers['content-md5'], md5, 'Content-MD5 of the stored bytes');

    const unlocked = await httpsCall(server, 'UNLOCK', `/state/${key}`, { body: lockBody(lockId), ca });
    assert.equal(unlocked.status, 200, unlocked.body.toString());
    assert.equal((await serverRequest(server, 'GET', `/api/v1/locks/${key}`)).status, 404, 'unlocked');
  });

  test('without the CA the self-signed certificate is refused', async () => {
    await assert.rejects(httpsCall(server, 'GET', `/state/${key}`, { ca: null }), (err: NodeJS.ErrnoException) => {
      assert.ok(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'].includes(err.code ?? ''), `certificate error code, got ${err.code}: ${err.message}`);
      return true;
    });
  });

  test('plain http:// to the HTTPS port gets no valid HTTP answer or a 400, never a 200', async () => {
    const url = new URL(server.url);
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: url.hostname, port: Number(url.port), path: `/state/${key}`, method: 'GET', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(`status ${res.statusCode}`));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      req.end();
    });
    assert.ok(outcome.startsWith('error ') || outcome === 'status 400', `plain HTTP got: ${outcome}`);
    assert.notEqual(outcome, 'status 200');
    assert.equal((await httpsCall(server, 'GET', '/readyz', { ca: server.tls!.cert })).status, 200, 'still serving HTTPS');
  });

  test('real terraform init + apply with backend "http" over HTTPS (client_ca_certificate_pem)', { skip: TERRAFORM_BIN ? false : 'no terraform binary (/usr/local/bin/terraform or on PATH)', timeout: 180_000 }, async () => {
    const dir = tempDir('statelock-tls-real-');
    dirs.push(dir);
    const home = join(dir, 'home');
    mkdirSync(home);
    const address = `${server.url}/state/tls/real.tfstate`;
    const pem = server.tls!.cert.toString('utf8').trim();
    writeFileSync(
      join(dir, 'main.tf'),
      `terraform {
  backend "http" {
    address        = "${address}"
    lock_address   = "${address}"
    unlock_address = "${address}"
    client_ca_certificate_pem = <<EOT
${pem}
EOT
  }
}

resource "terraform_data" "x" {
  input = 1
}
`,
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin', HOME: home, TF_DATA_DIR: join(dir, 'tfdata'), CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_INPUT: '0' };
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve, reject) => {
        const p = spawn(TERRAFORM_BIN!, [...args, '-no-color'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
        const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
        p.once('error', reject);
        p.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        });
      });
    const init = await run(['init', '-input=false']);
    assert.equal(init.code, 0, `terraform init:\n${init.out}`);
    const apply = await run(['apply', '-auto-approve', '-input=false']);
    assert.equal(apply.code, 0, `terraform apply:\n${apply.out}`);

    const got = await httpsCall(server, 'GET', '/state/tls/real.tfstate', { ca: server.tls!.cert });
    assert.equal(got.status, 200);
    const st = JSON.parse(got.body.toString('utf8')) as { resources: Array<{ type: string; name: string }> };
    assert.deepEqual(st.resources.map((r) => `${r.type}.${r.name}`), ['terraform_data.x']);
    assert.equal((await httpsCall(server, 'GET', '/api/v1/locks/tls/real.tfstate', { ca: server.tls!.cert })).status, 404, 'terraform released its lock');
  });
});
