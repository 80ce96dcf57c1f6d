/**
 * Test-only emulation of the Terraform (>= 1.15) / OpenTofu (>= 1.10) `backend "http"` client.
 *
 * It sends over real HTTP what the Go client sends (see
 * /work/shared/reference/terraform-http-backend.md): go-retryablehttp v0.7.8 retries and backoff,
 * Go net/http header order and body framing, Go's redirect rules, Go JSON encoding/decoding of
 * lock info, and the CLI-level request sequences of plan/apply/state push/migration.
 *
 * One HttpBackendClient instance = one terraform process (it remembers the lock ID and the exact
 * LOCK body). The high-level flows (init/plan/apply/statePush/migrateInto/forceUnlock) each run in a
 * *fresh* process created with newProcess(); its requests are also appended to the parent's `log`.
 */
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, RequestOptions } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { hostname as osHostname, userInfo as osUserInfo } from 'node:os';

/* ================================================================== */
/* Public types                                                        */
/* ================================================================== */

export type Flavor = 'terraform' | 'opentofu';

export interface BackendConfig {
  address: string;
  lockAddress?: string;
  unlockAddress?: string;
  /** default POST */
  updateMethod?: string;
  /** default LOCK */
  lockMethod?: string;
  /** default UNLOCK */
  unlockMethod?: string;
  username?: string;
  password?: string;
  /** OpenTofu only (ignored for flavor 'terraform', like an option Terraform does not have). */
  headers?: Record<string, string>;
  /** default 2 (so 3 attempts in total) */
  retryMax?: number;
  /** default 1000 */
  retryWaitMinMs?: number;
  /** default 30000 */
  retryWaitMaxMs?: number;
  /** PEM bundle replacing the system roots (client_ca_certificate_pem). */
  ca?: string;
  /**
   * client_ca_certificate_pem under its Terraform name: the PEM CA bundle that replaces the system roots
   * for HTTPS addresses (given explicitly, not through SSL_CERT_FILE). Wins over `ca` when both are set.
   */
  caCertificatePem?: string;
  /** skip_cert_verification */
  skipCertVerification?: boolean;
  /** client_certificate_pem / client_private_key_pem (mTLS) */
  clientCertificatePem?: string;
  clientPrivateKeyPem?: string;
}

export interface ClientOptions {
  flavor?: Flavor;
  /** CLI core version, e.g. '1.15.0' (terraform default) or '1.10.3' (opentofu default). */
  version?: string;
  /** LockInfo.Who, e.g. 'alice@build-07'; default `<os user>@<hostname>` like the CLIs. */
  who?: string;
}

/** Lock info as the Go struct has it. `Created` is the RFC 3339 string (zero time = '0001-01-01T00:00:00Z'). */
export interface LockInfo {
  ID: string;
  Operation: string;
  Info: string;
  Who: string;
  Version: string;
  Created: string;
  Path: string;
}

/** One HTTP exchange as it happened on the wire (one entry per attempt and per redirect hop). */
export interface WireRecord {
  method: string;
  /** scheme://host/path?query exactly as requested (no userinfo). */
  url: string;
  /** 1-based go-retryablehttp attempt number this exchange belongs to. */
  attempt: number;
  /** Lower-cased header name → value, as sent. */
  requestHeaders: Record<string, string>;
  /** Headers in wire order with wire spelling (Go canonical form, e.g. `Content-Md5`). */
  rawRequestHeaders: Array<[string, string]>;
  requestBody: Buffer;
  /** 0 when no response was received (transport error, see `error`). */
  status: number;
  responseHeaders: IncomingHttpHeaders;
  /** Body as the Go client sees it (gzip already decoded). */
  responseBody: Buffer;
  /** Transport error (Go-style text) or body read error. */
  error?: string;
}

export interface ResponseSnapshot {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface LockOptions {
  id?: string;
  /** Date (formatted RFC3339Nano UTC) or a literal string sent verbatim. */
  created?: Date | string;
  info?: string;
}

export interface FlowOptions {
  /** false = `-lock=false`: no LOCK/UNLOCK and no `?ID=` on writes. Default true. */
  lock?: boolean;
  /** `-lock-timeout` in ms (default 0 = one attempt). */
  lockTimeoutMs?: number;
  /** Scale for the 1s,2s,4s… lock-retry delays (1000 = real time). */
  backoffScaleMs?: number;
}

export interface FlowResult {
  /** The fresh "process" that ran the flow (its `log` holds only this flow's requests). */
  client: HttpBackendClient;
  /** Lock ID used ('' when not locked). */
  lockId: string;
  /** Remote state bytes as last read by the flow (null = no state). */
  remote: Buffer | null;
  /** Bodies actually uploaded, in order. */
  uploads: Buffer[];
}

export const DEFAULT_VERSIONS: Readonly<Record<Flavor, string>> = { terraform: '1.15.0', opentofu: '1.10.3' };
/**
 * Content-MD5 of zero bytes (MD5 d41d8cd98f00b204e9800998ecf8427e). NB: the protocol reference
 * quotes '1B2M2Y8AsgTpfCZ7Ml6ysQ==', which is NOT the MD5 of the empty string.
 */
export const EMPTY_BODY_MD5 = '1B2M2Y8AsgTpgAmY7PhCfg==';
export const ZERO_TIME = '0001-01-01T00:00:00Z';
export const GO_USER_AGENT = 'Go-http-client/1.1';

const LOCK_INFO_KEYS = ['ID', 'Operation', 'Info', 'Who', 'Version', 'Created', 'Path'] as const;
type LockInfoKey = (typeof LOCK_INFO_KEYS)[number];

/* ================================================================== */
/* Errors                                                              */
/* ================================================================== */

/** statemgr.LockError: `message` is the wrapped error's text, `holder` the attached lock info. */
export class LockError extends Error {
  readonly holder: LockInfo | undefined;
  constructor(message: string, holder?: LockInfo) {
    super(message);
    this.name = 'LockError';
    this.holder = holder ? { ...holder } : undefined;
  }
  /** What `-lock-timeout` looks at: lock info attached and its ID non-empty. */
  get retryable(): boolean {
    return this.holder !== undefined && this.holder.ID !== '';
  }
  /** Go's LockError.Error(): message, newline, then the "Lock Info:" block (when info is attached). */
  goErrorText(): string {
    return this.holder ? `${this.message}\n${lockInfoString(this.holder)}` : this.message;
  }
}

/** CheckValidImport refusal from statePush (no write was sent; the lock was released). */
export class ImportError extends Error {
  /** The bare CheckValidImport message. */
  readonly reason: string;
  constructor(reason: string, flavor: Flavor) {
    super(flavor === 'opentofu' ? `Failed to write the imported state: ${reason}` : `Failed to write state: ${reason}`);
    this.name = 'ImportError';
    this.reason = reason;
  }
}

/** A Go `*url.Error` from http.Client.Do (transport failure, redirect failure…). */
class TransportError extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

/* ================================================================== */
/* IDs, time, JSON, base64, md5 (Go-compatible primitives)             */
/* ================================================================== */

function uuidLayout(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Random 128-bit value, lowercase hex, 8-4-4-4-12, no RFC 4122 version/variant bits. */
export function newLockId(): string {
  return uuidLayout(randomBytes(16));
}

/** Same layout as lock IDs (go-uuid GenerateUUID). */
export function newLineage(): string {
  return uuidLayout(randomBytes(16));
}

/** Go time.RFC3339Nano of a UTC time: trailing fractional zeros (and a bare '.') trimmed, 'Z' suffix. */
export function formatRfc3339Nano(d: Date): string {
  const iso = d.toISOString();
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/.exec(iso);
  if (!m) throw new Error(`cannot format ${iso}`);
  const frac = (m[2] ?? '').replace(/0+$/, '');
  return frac ? `${m[1]}.${frac}Z` : `${m[1]}Z`;
}

function daysIn(month: number, year: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Whether Go's time.Time.UnmarshalJSON accepts the string (Go's strict RFC 3339 fast path, plus
 * what its time.Parse(RFC3339) fallback tolerates: 1-digit hour, ',' before the fraction, zone
 * offset hour up to 24 / minute up to 60).
 */
export function isGoRfc3339(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:[.,]\d+)?(Z|[+-](\d{2}):(\d{2}))$/.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, y)) return false;
  if (h > 23 || mi > 59 || se > 59) return false;
  if (m[7] !== 'Z' && (Number(m[8]) > 24 || Number(m[9]) > 60)) return false;
  return true;
}

/** Go encoding/json output: like JSON.stringify but with <, >, &, U+2028, U+2029 escaped. */
export function goJsonMarshal(value: unknown, indent?: string): string {
  const s = indent === undefined ? JSON.stringify(value) : JSON.stringify(value, null, indent);
  return s.replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Standard base64 of the MD5 of the exact bytes (the Content-MD5 the clients send). */
export function contentMd5(body: Buffer): string {
  return createHash('md5').update(body).digest('base64');
}

/**
 * Port of Go's base64.StdEncoding.DecodeString validation. Returns null when valid, else Go's
 * error text (`illegal base64 data at input byte N`).
 */
export function goBase64StdError(raw: string): string | null {
  const src = Buffer.from(raw, 'latin1');
  const nl = (c: number | undefined) => c === 0x0a || c === 0x0d;
  const alpha = (c: number) =>
    (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
  const corrupt = (n: number) => `illegal base64 data at input byte ${n}`;
  let si = 0;
  while (si < src.length) {
    for (let j = 0; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return null;
        return corrupt(si - j);
      }
      const c = src[si++]!;
      if (alpha(c)) continue;
      if (nl(c)) {
        j--;
        continue;
      }
      if (c !== 0x3d) return corrupt(si - 1);
      if (j === 0 || j === 1) return corrupt(si - 1);
      if (j === 2) {
        while (si < src.length && nl(src[si])) si++;
        if (si === src.length) return corrupt(src.length);
        if (src[si] !== 0x3d) return corrupt(si - 1);
        si++;
      }
      while (si < src.length && nl(src[si])) si++;
      if (si < src.length) return corrupt(si);
      return null;
    }
  }
  return null;
}

/* ================================================================== */
/* Lock info                                                           */
/* ================================================================== */

export function zeroLockInfo(): LockInfo {
  return { ID: '', Operation: '', Info: '', Who: '', Version: '', Created: ZERO_TIME, Path: '' };
}

function defaultWho(): string {
  let user = '';
  try {
    user = osUserInfo().username;
  } catch {
    user = '';
  }
  return `${user}@${osHostname()}`;
}

/** statemgr.NewLockInfo + the CLI's Operation/Info: new random ID, Created = now (UTC), Path ''. */
export function newLockInfo(opts: { operation: string; who: string; version: string } & LockOptions): LockInfo {
  const created = opts.created === undefined ? formatRfc3339Nano(new Date()) : typeof opts.created === 'string' ? opts.created : formatRfc3339Nano(opts.created);
  return {
    ID: opts.id ?? newLockId(),
    Operation: opts.operation,
    Info: opts.info ?? '',
    Who: opts.who,
    Version: opts.version,
    Created: created,
    Path: '',
  };
}

/** LockInfo.Marshal(): compact Go JSON, keys in struct order ID, Operation, Info, Who, Version, Created, Path. */
export function marshalLockInfo(info: LockInfo): Buffer {
  const ordered: Record<string, string> = {};
  for (const k of LOCK_INFO_KEYS) ordered[k] = info[k];
  return Buffer.from(goJsonMarshal(ordered), 'utf8');
}

/** Go's name folding for struct-field matching (ASCII upper-case; non-ASCII ToUpper(ToLower(r))). */
function goFold(s: string): string {
  let out = '';
  for (const ch of s) out += ch.toLowerCase().toUpperCase();
  return out;
}

function goJsonKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'boolean') return 'bool';
  return 'object';
}

/**
 * json.Unmarshal(body, &statemgr.LockInfo{}) with Go semantics: keys matched exactly first, then
 * case-insensitively; unknown keys ignored; null leaves a field zero; wrong types are errors;
 * Created must be an RFC 3339 string (or null/absent). Throws on failure.
 */
export function decodeLockInfoGo(body: Buffer): LockInfo {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new Error(`json: ${(e as Error).message}`);
  }
  const info = zeroLockInfo();
  if (v === null) return info;
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw new Error(`json: cannot unmarshal ${goJsonKind(v)} into Go value of type statemgr.LockInfo`);
  }
  let firstErr: Error | undefined;
  for (const [key, val] of Object.entries(v as Record<string, unknown>)) {
    const field: LockInfoKey | undefined =
      LOCK_INFO_KEYS.find((f) => f === key) ?? LOCK_INFO_KEYS.find((f) => goFold(f) === goFold(key));
    if (!field || val === null) continue;
    if (field === 'Created') {
      if (typeof val !== 'string') {
        firstErr ??= new Error('Time.UnmarshalJSON: input is not a JSON string');
      } else if (!isGoRfc3339(val)) {
        firstErr ??= new Error(`parsing time ${JSON.stringify(val)} as RFC 3339: cannot parse`);
      } else {
        info.Created = val;
      }
      continue;
    }
    if (typeof val !== 'string') {
      firstErr ??= new Error(`json: cannot unmarshal ${goJsonKind(val)} into Go struct field LockInfo.${field} of type string`);
      continue;
    }
    info[field] = val;
  }
  if (firstErr) throw firstErr;
  return info;
}

/** Go's time.Time.String() rendering of a Created string (best effort, for the Lock Info block). */
function goTimeString(created: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{1,2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|([+-])(\d{2}):(\d{2}))$/.exec(created);
  if (!m) return created;
  const frac = (m[3] ?? '').slice(0, 9).replace(/0+$/, '');
  const base = `${m[1]} ${m[2]!.padStart(8, '0')}${frac ? '.' + frac : ''}`;
  if (m[4] === 'Z') return `${base} +0000 UTC`;
  const off = `${m[5]}${m[6]}${m[7]}`;
  return `${base} ${off} ${off}`;
}

/** statemgr.LockInfo.String(): the "Lock Info:" block printed by the CLI. */
export function lockInfoString(info: LockInfo): string {
  return (
    'Lock Info:\n' +
    `  ID:        ${info.ID}\n` +
    `  Path:      ${info.Path}\n` +
    `  Operation: ${info.Operation}\n` +
    `  Who:       ${info.Who}\n` +
    `  Version:   ${info.Version}\n` +
    `  Created:   ${goTimeString(info.Created)}\n` +
    `  Info:      ${info.Info}\n`
  );
}

/* ================================================================== */
/* URLs and query strings (Go net/url semantics)                        */
/* ================================================================== */

interface GoURL {
  scheme: string;
  username?: string;
  password?: string;
  /** host[:port] exactly as written (sent as the Host header). */
  host: string;
  hostname: string;
  port: number;
  /** Escaped path (Go EscapedPath). '' allowed (request line then uses '/'). */
  path: string;
  rawQuery: string;
}

const HEX = '0123456789ABCDEF';

function isUnreserved(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function pctByte(c: number): string {
  return '%' + HEX[c >> 4]! + HEX[c & 15]!;
}

/** Percent-decode to a binary (latin1) string; null on a malformed escape. `plusSpace` for query mode. */
function goUnescape(s: string, plusSpace: boolean): string | null {
  const src = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x25) {
      const h = src.subarray(i + 1, i + 3).toString('latin1');
      if (!/^[0-9A-Fa-f]{2}$/.test(h)) return null;
      out.push(parseInt(h, 16));
      i += 2;
    } else if (c === 0x2b && plusSpace) {
      out.push(0x20);
    } else {
      out.push(c);
    }
  }
  return Buffer.from(out).toString('latin1');
}

/** url.QueryEscape of a binary string. */
function goQueryEscape(bin: string): string {
  let out = '';
  for (let i = 0; i < bin.length; i++) {
    const c = bin.charCodeAt(i);
    if (isUnreserved(c)) out += String.fromCharCode(c);
    else if (c === 0x20) out += '+';
    else out += pctByte(c);
  }
  return out;
}

/** url.ParseQuery: pairs with ';' or bad escapes are dropped (Go returns an error and skips them). */
function goParseQuery(raw: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const part of raw.split('&')) {
    if (part === '' || part.includes(';')) continue;
    const eq = part.indexOf('=');
    const k = goUnescape(eq < 0 ? part : part.slice(0, eq), true);
    const v = goUnescape(eq < 0 ? '' : part.slice(eq + 1), true);
    if (k === null || v === null) continue;
    const list = m.get(k);
    if (list) list.push(v);
    else m.set(k, [v]);
  }
  return m;
}

/** url.Values.Encode: keys sorted (byte order), `k=v` joined with '&'. */
function goEncodeQuery(m: Map<string, string[]>): string {
  const keys = [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  for (const k of keys) for (const v of m.get(k)!) parts.push(`${goQueryEscape(k)}=${goQueryEscape(v)}`);
  return parts.join('&');
}

/** What Put does to the query: Query(), Set("ID", id), Encode(). */
export function queryWithLockId(rawQuery: string, id: string): string {
  const m = goParseQuery(rawQuery);
  m.set('ID', [id]);
  return goEncodeQuery(m);
}

/** Bytes Go keeps unescaped in a valid RawPath (validEncoded, encodePath mode). */
function validPathByte(c: number): boolean {
  return isUnreserved(c) || '!$&\'()*+,;=:@[]/%'.includes(String.fromCharCode(c));
}

/** Bytes escape(path, encodePath) leaves alone. */
function pathKeepByte(c: number): boolean {
  return isUnreserved(c) || '$&+,/:;=@'.includes(String.fromCharCode(c));
}

function goEscapedPath(rawPath: string): string {
  const decoded = goUnescape(rawPath, false);
  if (decoded === null) throw new Error(`invalid URL escape in ${JSON.stringify(rawPath)}`);
  const bytes = Buffer.from(rawPath, 'utf8');
  if (bytes.every((c) => validPathByte(c))) return rawPath;
  let out = '';
  for (let i = 0; i < decoded.length; i++) {
    const c = decoded.charCodeAt(i);
    out += pathKeepByte(c) ? String.fromCharCode(c) : pctByte(c);
  }
  return out;
}

function parseGoUrl(raw: string): GoURL {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/s.exec(raw);
  if (!m) {
    const sm = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw);
    if (sm) throw new SchemeError(sm[1]!.toLowerCase());
    throw new Error(`parse ${JSON.stringify(raw)}: invalid URI for request`);
  }
  const scheme = m[1]!.toLowerCase();
  let authority = m[2]!;
  let username: string | undefined;
  let password: string | undefined;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const ui = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = ui.indexOf(':');
    const u = goUnescape(colon < 0 ? ui : ui.slice(0, colon), false);
    const p = colon < 0 ? undefined : goUnescape(ui.slice(colon + 1), false);
    if (u === null || p === null) throw new Error(`parse ${JSON.stringify(raw)}: invalid userinfo`);
    username = Buffer.from(u, 'latin1').toString('utf8');
    if (p !== undefined) password = Buffer.from(p, 'latin1').toString('utf8');
  }
  let hostname: string;
  let portStr = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) throw new Error(`parse ${JSON.stringify(raw)}: missing ']' in host`);
    hostname = authority.slice(1, close);
    const rest = authority.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new Error(`parse ${JSON.stringify(raw)}: invalid port ${JSON.stringify(rest)} after host`);
      portStr = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    hostname = colon < 0 ? authority : authority.slice(0, colon);
    portStr = colon < 0 ? '' : authority.slice(colon + 1);
  }
  if (portStr !== '' && !/^\d+$/.test(portStr)) {
    throw new Error(`parse ${JSON.stringify(raw)}: invalid port ${JSON.stringify(':' + portStr)} after host`);
  }
  const port = portStr === '' ? (scheme === 'https' ? 443 : 80) : Number(portStr);
  return { scheme, username, password, host: authority, hostname, port, path: goEscapedPath(m[3]!), rawQuery: m[4] ?? '' };
}

class SchemeError extends Error {
  constructor(readonly scheme: string) {
    super(`unsupported protocol scheme ${JSON.stringify(scheme)}`);
  }
}

function escapeUserinfo(s: string): string {
  let out = '';
  for (const c of Buffer.from(s, 'utf8')) out += isUnreserved(c) || '$&+,;='.includes(String.fromCharCode(c)) ? String.fromCharCode(c) : pctByte(c);
  return out;
}

function requestUri(u: GoURL): string {
  return (u.path === '' ? '/' : u.path) + (u.rawQuery !== '' ? `?${u.rawQuery}` : '');
}

/** url.URL.String() with the password replaced by `pw` (retryablehttp redactURL uses 'xxxxx', url.Error uses '***'). */
function urlString(u: GoURL, opts: { userinfo: boolean; pw?: string } = { userinfo: true }): string {
  let ui = '';
  if (opts.userinfo && u.username !== undefined) {
    ui = escapeUserinfo(u.username);
    if (u.password !== undefined) ui += ':' + (opts.pw ?? escapeUserinfo(u.password));
    ui += '@';
  }
  return `${u.scheme}://${ui}${u.host}${u.path}${u.rawQuery !== '' ? `?${u.rawQuery}` : ''}`;
}

/** Address with `?ID=<id>` merged into its query exactly as Terraform's Put does it. */
export function addressWithLockId(address: string, id: string): string {
  const u = parseGoUrl(address);
  return urlString({ ...u, rawQuery: queryWithLockId(u.rawQuery, id) });
}

function wireUrl(u: GoURL): string {
  return `${u.scheme}://${u.host}${requestUri(u)}`;
}

/* ================================================================== */
/* Go net/http request shaping                                         */
/* ================================================================== */

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** textproto.CanonicalMIMEHeaderKey. */
export function canonicalHeaderKey(k: string): string {
  if (!TOKEN_RE.test(k)) return k;
  let out = '';
  let upper = true;
  for (const ch of k) {
    out += upper ? ch.toUpperCase() : ch.toLowerCase();
    upper = ch === '-';
  }
  return out;
}

function basicAuth(user: string, pass: string): string {
  return 'Basic ' + Buffer.from(`${user}:${pass}`, 'utf8').toString('base64');
}

const LACKS_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'PROPFIND', 'SEARCH']);
const WRITE_EXCLUDED = new Set(['Host', 'User-Agent', 'Content-Length', 'Transfer-Encoding', 'Trailer']);

interface WirePlan {
  headers: Array<[string, string]>;
  /** bytes to write (null: none) */
  body: Buffer | null;
  /** true: neither Content-Length nor Transfer-Encoding is sent */
  noFraming: boolean;
  requestedGzip: boolean;
}

/**
 * Request.write + Transport: Host, User-Agent, framing (Content-Length or chunked, per
 * transferWriter rules), remaining headers sorted by key, then Accept-Encoding: gzip.
 * `body` null = Body nil; an empty Buffer = non-nil empty body (Terraform's force-unlock), which Go
 * sends chunked for methods that usually carry a body and drops (probe) for GET/DELETE/….
 */
function planWire(method: string, u: GoURL, header: Map<string, string>, body: Buffer | null): WirePlan {
  const headers: Array<[string, string]> = [['Host', u.host]];
  const ua = header.has('User-Agent') ? header.get('User-Agent')! : GO_USER_AGENT;
  if (ua !== '') headers.push(['User-Agent', ua]);
  let sendBody: Buffer | null = body;
  let noFraming = false;
  const nilBodyFraming = () => {
    sendBody = null;
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') headers.push(['Content-Length', '0']);
    else noFraming = true;
  };
  if (body === null) nilBodyFraming();
  else if (body.length > 0) headers.push(['Content-Length', String(body.length)]);
  else if (method === 'CONNECT') noFraming = true;
  else if (LACKS_BODY.has(method)) nilBodyFraming();
  else headers.push(['Transfer-Encoding', 'chunked']);
  const keys = [...header.keys()].filter((k) => !WRITE_EXCLUDED.has(k)).sort();
  for (const k of keys) headers.push([k, header.get(k)!.trim()]);
  const requestedGzip = !header.has('Accept-Encoding') && !header.has('Range') && method !== 'HEAD';
  if (requestedGzip) headers.push(['Accept-Encoding', 'gzip']);
  return { headers, body: sendBody, noFraming, requestedGzip };
}

interface Exchange {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  readError?: string;
}

function firstHeader(rawHeaders: string[], name: string): string | undefined {
  const lower = name.toLowerCase();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === lower) return rawHeaders[i + 1];
  return undefined;
}

const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Approximate Go wording of a transport error, and whether retryablehttp retries it. */
function goTransportCause(e: NodeJS.ErrnoException, u: GoURL): { cause: string; retryable: boolean } {
  const addr = u.hostname.includes(':') ? `[${u.hostname}]:${u.port}` : `${u.hostname}:${u.port}`;
  switch (e.code) {
    case 'ECONNREFUSED':
      return { cause: `dial tcp ${addr}: connect: connection refused`, retryable: true };
    case 'ENOTFOUND':
      return { cause: `dial tcp: lookup ${u.hostname}: no such host`, retryable: true };
    case 'ETIMEDOUT':
      return { cause: `dial tcp ${addr}: i/o timeout`, retryable: true };
    case 'ECONNRESET':
      return { cause: e.message === 'socket hang up' ? 'EOF' : `read tcp ${addr}: read: connection reset by peer`, retryable: true };
    case 'EPIPE':
      return { cause: `write tcp ${addr}: write: broken pipe`, retryable: true };
    case 'ERR_INVALID_CHAR':
    case 'ERR_INVALID_HTTP_TOKEN':
    case 'ERR_HTTP_INVALID_HEADER_VALUE':
    case 'ERR_UNESCAPED_CHARACTERS':
      return { cause: `net/http: invalid header field: ${e.message}`, retryable: false };
    default:
      if (e.code && CERT_CODES.has(e.code)) {
        return { cause: `tls: failed to verify certificate: x509: ${e.message}`, retryable: false };
      }
      return { cause: e.message, retryable: true };
  }
}

/** url.Error Op: method with only the first letter upper-case ("Get", "Lock", "Post"). */
function urlErrorOp(method: string): string {
  return method.slice(0, 1) + method.slice(1).toLowerCase();
}

function isRetryableStatus(s: number): boolean {
  return s === 0 || s === 429 || (s >= 500 && s !== 501);
}

const RFC1123_RE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) [A-Z]{3,5}$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** retryablehttp parseRetryAfterHeader, in ms; undefined when absent/unparseable. */
function parseRetryAfter(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^[+-]?\d+$/.test(v)) {
    const n = Number(v);
    return n < 0 ? undefined : n * 1000;
  }
  const m = RFC1123_RE.exec(v);
  if (!m) return undefined;
  const t = Date.UTC(Number(m[3]), MONTHS.indexOf(m[2]!), Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Math.max(0, t - Date.now());
}

/** retryablehttp DefaultBackoff (ms). */
export function retryBackoffMs(minMs: number, maxMs: number, attemptIndex: number, status?: number, retryAfter?: string): number {
  if (status === 429 || status === 503) {
    const ra = parseRetryAfter(retryAfter);
    if (ra !== undefined) return ra;
  }
  const mult = 2 ** attemptIndex * minMs;
  if (!Number.isFinite(mult) || mult > maxMs) return maxMs;
  return mult;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

/* ================================================================== */
/* State files                                                         */
/* ================================================================== */

interface ParsedState {
  doc: Record<string, unknown>;
  lineage: string;
  serial: number;
  /** OpenTofu encrypted envelope (`encryption_version` present, no `version`). */
  encrypted: boolean;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parse a state payload (plain v4 state or OpenTofu envelope). Throws Terraform-style errors. */
export function parseStateFile(buf: Buffer): ParsedState {
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new Error(`Unsupported state file format: The state file could not be parsed as JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(v)) throw new Error('Unsupported state file format: The state file could not be parsed as JSON: not an object.');
  const encrypted = 'encryption_version' in v && !('version' in v);
  if (!encrypted && v['version'] === undefined) {
    throw new Error(
      'Unsupported state file format: The state file does not have a "version" attribute, which is required to identify the format version.',
    );
  }
  return {
    doc: v,
    lineage: typeof v['lineage'] === 'string' ? v['lineage'] : '',
    serial: typeof v['serial'] === 'number' ? v['serial'] : 0,
    encrypted,
  };
}

const HEADER_KEYS = new Set(['version', 'terraform_version', 'serial', 'lineage']);

/** Serialize a state document with the given header, in the flavor's upload format. */
function serializeState(doc: Record<string, unknown>, encrypted: boolean, h: { serial: number; lineage: string; version: string; flavor: Flavor }): Buffer {
  if (encrypted) {
    const out: Record<string, unknown> = { serial: h.serial, lineage: h.lineage };
    for (const [k, v] of Object.entries(doc)) if (k !== 'serial' && k !== 'lineage') out[k] = v;
    return Buffer.from(goJsonMarshal(out), 'utf8');
  }
  const out: Record<string, unknown> = {
    version: 4,
    terraform_version: h.version,
    serial: h.serial,
    lineage: h.lineage,
    outputs: doc['outputs'] ?? {},
    resources: doc['resources'] ?? [],
    check_results: doc['check_results'] ?? null,
  };
  for (const [k, v] of Object.entries(doc)) if (!(k in out)) out[k] = v;
  const text = h.flavor === 'opentofu' ? goJsonMarshal(out) : goJsonMarshal(out, '  ');
  return Buffer.from(text + '\n', 'utf8');
}

/** Re-serialize a state (plain or envelope) with a new serial/lineage, in the flavor's format. */
export function restampState(buf: Buffer, opts: { serial?: number; lineage?: string; flavor?: Flavor; terraformVersion?: string }): Buffer {
  const p = parseStateFile(buf);
  const flavor = opts.flavor ?? 'terraform';
  const version = opts.terraformVersion ?? (typeof p.doc['terraform_version'] === 'string' ? (p.doc['terraform_version'] as string) : DEFAULT_VERSIONS[flavor]);
  return serializeState(p.doc, p.encrypted, { serial: opts.serial ?? p.serial, lineage: opts.lineage ?? p.lineage, version, flavor });
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** statefile.StatesMarshalEqual approximation: compare everything but the header fields. */
function contentKey(p: ParsedState): string {
  const rest: Record<string, unknown> = {};
  if (p.encrypted) {
    for (const [k, v] of Object.entries(p.doc)) if (k !== 'serial' && k !== 'lineage') rest[k] = v;
  } else {
    rest['outputs'] = p.doc['outputs'] ?? {};
    rest['resources'] = p.doc['resources'] ?? [];
    rest['check_results'] = p.doc['check_results'] ?? null;
    for (const [k, v] of Object.entries(p.doc)) if (!HEADER_KEYS.has(k) && !(k in rest)) rest[k] = v;
  }
  return stableStringify(rest);
}

/** states.State.Empty(): no resources and no root outputs. Encrypted envelopes count as non-empty. */
function isEmptyState(p: ParsedState | null): boolean {
  if (p === null) return true;
  if (p.encrypted) return false;
  const res = p.doc['resources'];
  const outs = p.doc['outputs'];
  return (!Array.isArray(res) || res.length === 0) && (!isPlainObject(outs) || Object.keys(outs).length === 0);
}

function checkValidImportParsed(newFile: ParsedState, existing: ParsedState | null): string | null {
  if (existing === null || isEmptyState(existing)) return null;
  if (existing.lineage === '' || newFile.lineage === '') return null;
  if (existing.lineage !== newFile.lineage) {
    return `cannot import state with lineage ${JSON.stringify(newFile.lineage)} over unrelated state with lineage ${JSON.stringify(existing.lineage)}`;
  }
  if (existing.serial > newFile.serial) {
    return `cannot import state with serial ${newFile.serial} over newer state with serial ${existing.serial}`;
  }
  if (existing.serial === newFile.serial && contentKey(existing) !== contentKey(newFile)) {
    return `cannot overwrite existing state with serial ${newFile.serial} with a different state that has the same serial`;
  }
  return null;
}

/** statemgr.CheckValidImport: null when allowed, else the exact message. */
export function checkValidImport(newFile: Buffer, existing: Buffer | null): string | null {
  return checkValidImportParsed(parseStateFile(newFile), existing === null ? null : parseStateFile(existing));
}

/** A valid v4 state. Terraform: 2-space indent + "\n"; OpenTofu: compact + "\n". */
export function makeState(opts: {
  serial: number;
  lineage: string;
  terraformVersion?: string;
  resources?: unknown[];
  outputs?: Record<string, unknown>;
  flavor?: Flavor;
}): Buffer {
  const flavor = opts.flavor ?? 'terraform';
  return serializeState(
    { outputs: opts.outputs ?? {}, resources: opts.resources ?? [], check_results: null },
    false,
    { serial: opts.serial, lineage: opts.lineage, version: opts.terraformVersion ?? DEFAULT_VERSIONS[flavor], flavor },
  );
}

/**
 * OpenTofu client-side-encrypted envelope: compact JSON with exactly serial, lineage, meta,
 * encrypted_data, encryption_version ("v0"). encrypted_data is AES-256-GCM (random key, discarded)
 * of the plaintext state: opaque, like the real thing.
 */
export function makeEncryptedEnvelope(opts: { serial: number; lineage: string; plaintext?: Buffer }): Buffer {
  const plaintext = opts.plaintext ?? makeState({ serial: opts.serial, lineage: opts.lineage, flavor: 'opentofu' });
  const meta = { salt: randomBytes(32).toString('base64'), iterations: 600000, hash_function: 'sha512', key_length: 32 };
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', randomBytes(32), nonce);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const sealed = Buffer.concat([nonce, ct, cipher.getAuthTag()]);
  return Buffer.from(
    goJsonMarshal({
      serial: opts.serial,
      lineage: opts.lineage,
      meta: { 'key_provider.pbkdf2.main': Buffer.from(JSON.stringify(meta)).toString('base64') },
      encrypted_data: sealed.toString('base64'),
      encryption_version: 'v0',
    }),
    'utf8',
  );
}

/** A realistic `resources` array (sorted like Terraform writes it: module, mode, type, name). */
export function sampleResources(): unknown[] {
  const aws = 'provider["registry.terraform.io/hashicorp/aws"]';
  const region = 'eu-west-1';
  const account = '123456789012';
  const suffix = Buffer.from('ab5c3665', 'hex');
  const hex = suffix.toString('hex');
  const bucket = `lesson17-${hex}`;
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const timeoutsPrivate = Buffer.from(
    JSON.stringify({ 'e2bfb730-ecaa-11e6-8f88-34363bc7c4c0': { create: 1200000000000, delete: 3600000000000, read: 1200000000000, update: 1200000000000 } }),
  ).toString('base64');
  const markers = [0, 1].map((i) => {
    const key = `markers/marker-${i}.txt`;
    const content = `lesson 17 marker ${i}\n`;
    const etag = createHash('md5').update(content).digest('hex');
    return {
      index_key: i,
      schema_version: 0,
      attributes: {
        acl: null,
        arn: `${bucketArn}/${key}`,
        bucket,
        bucket_key_enabled: false,
        cache_control: '',
        checksum_algorithm: null,
        content,
        content_base64: null,
        content_disposition: '',
        content_encoding: '',
        content_language: '',
        content_type: 'text/plain',
        etag,
        force_destroy: false,
        id: `${bucket}/${key}`,
        key,
        kms_key_id: null,
        metadata: {},
        object_lock_legal_hold_status: '',
        object_lock_mode: '',
        object_lock_retain_until_date: '',
        override_provider: [],
        region,
        server_side_encryption: 'AES256',
        source: null,
        source_hash: null,
        storage_class: 'STANDARD',
        tags: { Lesson: '17', Marker: String(i) },
        tags_all: { Lesson: '17', ManagedBy: 'terraform', Marker: String(i) },
        version_id: '',
        website_redirect: '',
      },
      sensitive_attributes: [],
      identity_schema_version: 0,
      identity: { account_id: account, bucket, key, region },
      private: 'bnVsbA==',
      dependencies: ['aws_s3_bucket.lesson17', 'random_id.suffix'],
    };
  });
  return [
    {
      mode: 'managed',
      type: 'aws_s3_bucket',
      name: 'lesson17',
      provider: aws,
      instances: [
        {
          schema_version: 0,
          attributes: {
            acceleration_status: '',
            acl: null,
            arn: bucketArn,
            bucket,
            bucket_domain_name: `${bucket}.s3.amazonaws.com`,
            bucket_prefix: '',
            bucket_region: region,
            bucket_regional_domain_name: `${bucket}.s3.${region}.amazonaws.com`,
            cors_rule: [],
            force_destroy: false,
            grant: [{ id: 'e07865a5679c7977370948f1f1e51c21b12d8cfdd396a7a8b7be2ea4b4d2f7b1', permissions: ['FULL_CONTROL'], type: 'CanonicalUser', uri: '' }],
            hosted_zone_id: 'Z1BKCTXD74EZPE',
            id: bucket,
            lifecycle_rule: [],
            logging: [],
            object_lock_configuration: [],
            object_lock_enabled: false,
            policy: '',
            region,
            replication_configuration: [],
            request_payer: 'BucketOwner',
            server_side_encryption_configuration: [
              { rule: [{ apply_server_side_encryption_by_default: [{ kms_master_key_id: '', sse_algorithm: 'AES256' }], bucket_key_enabled: false }] },
            ],
            tags: { Lesson: '17' },
            tags_all: { Lesson: '17', ManagedBy: 'terraform' },
            timeouts: null,
            versioning: [{ enabled: false, mfa_delete: false }],
            website: [],
            website_domain: null,
            website_endpoint: null,
          },
          sensitive_attributes: [],
          identity_schema_version: 0,
          identity: { account_id: account, bucket, region },
          private: timeoutsPrivate,
          dependencies: ['random_id.suffix'],
        },
      ],
    },
    { mode: 'managed', type: 'aws_s3_object', name: 'marker', provider: aws, instances: markers },
    {
      mode: 'managed',
      type: 'random_id',
      name: 'suffix',
      provider: 'provider["registry.terraform.io/hashicorp/random"]',
      instances: [
        {
          schema_version: 0,
          attributes: {
            b64_std: suffix.toString('base64'),
            b64_url: suffix.toString('base64url'),
            byte_length: 4,
            dec: String(suffix.readUInt32BE(0)),
            hex,
            id: suffix.toString('base64url'),
            keepers: { lesson: '17' },
            prefix: null,
          },
          sensitive_attributes: [],
          identity_schema_version: 0,
        },
      ],
    },
    {
      module: 'module.net',
      mode: 'managed',
      type: 'aws_vpc',
      name: 'main',
      provider: aws,
      instances: [
        {
          index_key: 'primary',
          schema_version: 1,
          attributes: {
            arn: `arn:aws:ec2:${region}:${account}:vpc/vpc-0a1b2c3d4e5f60718`,
            assign_generated_ipv6_cidr_block: false,
            cidr_block: '10.17.0.0/16',
            default_network_acl_id: 'acl-06f1e2d3c4b5a6978',
            default_route_table_id: 'rtb-0c9d8e7f6a5b4c3d2',
            default_security_group_id: 'sg-0123abcd4567ef890',
            dhcp_options_id: 'dopt-0f1e2d3c4b5a69788',
            enable_dns_hostnames: true,
            enable_dns_support: true,
            enable_network_address_usage_metrics: false,
            id: 'vpc-0a1b2c3d4e5f60718',
            instance_tenancy: 'default',
            ipv4_ipam_pool_id: null,
            ipv4_netmask_length: null,
            ipv6_association_id: '',
            ipv6_cidr_block: '',
            ipv6_cidr_block_network_border_group: '',
            ipv6_ipam_pool_id: '',
            ipv6_netmask_length: 0,
            main_route_table_id: 'rtb-0c9d8e7f6a5b4c3d2',
            owner_id: account,
            region,
            tags: { Name: 'lesson17-primary' },
            tags_all: { ManagedBy: 'terraform', Name: 'lesson17-primary' },
          },
          sensitive_attributes: [],
          identity_schema_version: 0,
          identity: { account_id: account, id: 'vpc-0a1b2c3d4e5f60718', region },
          private: 'eyJzY2hlbWFfdmVyc2lvbiI6IjEifQ==',
        },
      ],
    },
  ];
}

/* ================================================================== */
/* Remote state manager (internal/states/remote.State)                 */
/* ================================================================== */

class RemoteStateMgr {
  /** last snapshot read from / written to the remote */
  readState: ParsedState | null = null;
  readLineage = '';
  readSerial = 0;
  /** in-memory state */
  state: ParsedState | null = null;
  lineage = '';
  serial = 0;
  lastPayload: Buffer | null = null;

  constructor(private readonly c: HttpBackendClient) {}

  async refresh(): Promise<void> {
    const payload = await this.c.get();
    this.lastPayload = payload;
    if (payload === null) {
      this.readState = null;
      this.lineage = '';
      this.serial = 0;
      return;
    }
    const f = parseStateFile(payload);
    this.lineage = f.lineage;
    this.serial = f.serial;
    this.state = f;
    this.readLineage = f.lineage;
    this.readSerial = f.serial;
    this.readState = f;
  }

  writeState(s: ParsedState): void {
    this.state = s;
  }

  writeStateForMigration(f: ParsedState): void {
    this.state = f;
    this.lineage = f.lineage;
    this.serial = f.serial;
  }

  /** Returns the uploaded body, or null when the write was skipped. */
  async persist(): Promise<Buffer | null> {
    if (this.readState !== null) {
      const lineageUnchanged = this.readLineage !== '' && this.lineage === this.readLineage;
      const serialUnchanged = this.readSerial !== 0 && this.serial === this.readSerial;
      const stateUnchanged = this.state !== null && contentKey(this.state) === contentKey(this.readState);
      if (stateUnchanged && lineageUnchanged && serialUnchanged) return null;
      this.serial++;
    } else {
      try {
        await this.refresh();
      } catch (e) {
        throw new Error(`failed checking for existing remote state: ${(e as Error).message}`, { cause: e });
      }
      if (this.lineage === '') {
        this.lineage = newLineage();
        this.serial++;
      }
    }
    const s = this.state ?? { doc: {}, lineage: '', serial: 0, encrypted: false };
    const body = serializeState(s.doc, s.encrypted, { serial: this.serial, lineage: this.lineage, version: this.c.version, flavor: this.c.flavor });
    await this.c.write(body);
    const written = { ...s, lineage: this.lineage, serial: this.serial };
    this.state = written;
    this.readState = written;
    this.readLineage = this.lineage;
    this.readSerial = this.serial;
    return body;
  }
}

/* ================================================================== */
/* The client                                                          */
/* ================================================================== */

function parseBackendUrl(raw: string, name: 'address' | 'lock' | 'unlock', flavor: Flavor): GoURL {
  const label = name === 'address' ? 'address' : name === 'lock' ? 'lockAddress' : 'unlockAddress';
  let u: GoURL;
  try {
    u = parseGoUrl(raw);
  } catch (e) {
    // A scheme we could not parse past: report the scheme check like the CLIs do.
    if (e instanceof SchemeError && e.scheme !== 'http' && e.scheme !== 'https') u = { scheme: e.scheme } as GoURL;
    else throw new Error(`failed to parse ${label} URL: ${(e as Error).message}`);
  }
  if (u.scheme !== 'http' && u.scheme !== 'https') {
    if (name === 'address') throw new Error('address must be HTTP or HTTPS');
    throw new Error(flavor === 'opentofu' ? `${label} must be HTTP or HTTPS` : `${name}_address must be HTTP or HTTPS`);
  }
  return u;
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) return true;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

export class HttpBackendClient {
  readonly config: Readonly<BackendConfig>;
  readonly flavor: Flavor;
  readonly version: string;
  readonly who: string;
  /** Every HTTP exchange of this process (and of the fresh processes its flows spawned). */
  readonly log: WireRecord[] = [];
  /** Final response of the last client call (after retries/redirects), as Go sees it. */
  lastResponse: ResponseSnapshot | undefined;

  private readonly opts: ClientOptions;
  private sinks: WireRecord[][];
  private readonly url: GoURL;
  private readonly lockUrl: GoURL | undefined;
  private readonly unlockUrl: GoURL | undefined;
  private readonly updateMethod: string;
  private readonly lockMethod: string;
  private readonly unlockMethod: string;
  private readonly retryMax: number;
  private readonly waitMinMs: number;
  private readonly waitMaxMs: number;
  private readonly customHeaders: Map<string, string> = new Map();
  private readonly httpAgent = new HttpAgent({ keepAlive: true });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true });
  private lockIdValue = '';
  private lockBodyValue: Buffer | null = null;

  constructor(config: BackendConfig, opts: ClientOptions = {}) {
    this.config = { ...config };
    this.opts = { ...opts };
    this.flavor = opts.flavor ?? 'terraform';
    this.version = opts.version ?? DEFAULT_VERSIONS[this.flavor];
    this.who = opts.who ?? defaultWho();
    this.sinks = [this.log];
    if (!config.address) throw new Error('address argument is required');
    this.url = parseBackendUrl(config.address, 'address', this.flavor);
    this.lockUrl = config.lockAddress ? parseBackendUrl(config.lockAddress, 'lock', this.flavor) : undefined;
    this.unlockUrl = config.unlockAddress ? parseBackendUrl(config.unlockAddress, 'unlock', this.flavor) : undefined;
    this.updateMethod = config.updateMethod || 'POST';
    this.lockMethod = config.lockMethod || 'LOCK';
    this.unlockMethod = config.unlockMethod || 'UNLOCK';
    this.retryMax = config.retryMax ?? 2;
    this.waitMinMs = config.retryWaitMinMs ?? 1000;
    this.waitMaxMs = config.retryWaitMaxMs ?? 30000;
    if (this.flavor === 'opentofu' && config.headers) {
      for (const [k, v] of Object.entries(config.headers)) {
        if (!/^[A-Za-z0-9_-]+$/.test(k)) throw new Error(`headers ${JSON.stringify(k)} name must not be empty and only contain A-Za-z0-9-_ characters`);
        if (v === '' || /[^\x00-\x7f]/.test(v)) throw new Error(`headers ${JSON.stringify(k)} value must not be empty and only contain ascii characters`);
        const lower = k.toLowerCase();
        if (lower === 'content-type' || lower === 'content-md5') throw new Error(`headers ${JSON.stringify(k)} is reserved`);
        if (lower === 'authorization' && config.username) throw new Error(`headers ${JSON.stringify(k)} cannot be set when providing username`);
        this.customHeaders.set(canonicalHeaderKey(k), v);
      }
    }
  }

  /** Lock ID this process holds ('' if none). Never cleared by unlock (Terraform quirk). */
  get lockId(): string {
    return this.lockIdValue;
  }

  /** Exact body of the last successful LOCK (null if this process never locked). */
  get lockBody(): Buffer | null {
    return this.lockBodyValue;
  }

  /** A new "terraform process" with the same configuration; its requests also go to this.log. */
  newProcess(): HttpBackendClient {
    const child = new HttpBackendClient(this.config, this.opts);
    child.sinks = [child.log, ...this.sinks];
    return child;
  }

  /** Close idle keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /* ---------------------------- low-level protocol ---------------------------- */

  /** GET <address>. null = no state (200 empty, 204, 404). */
  async get(): Promise<Buffer | null> {
    const r = await this.send('GET', this.url, null, 'get state');
    switch (r.status) {
      case 200:
        break;
      case 204:
      case 404:
        return null;
      case 401:
        throw new Error('HTTP remote state endpoint requires auth');
      case 403:
        throw new Error('HTTP remote state endpoint invalid auth');
      case 500:
        throw new Error('HTTP remote state internal server error');
      default:
        throw new Error(`Unexpected HTTP response code ${r.status}`);
    }
    if (r.readError !== undefined) throw new Error(`Failed to read remote state: ${r.readError}`);
    if (r.body.length === 0) return null;
    const md5 = firstHeader(r.rawHeaders, 'Content-MD5');
    if (md5 !== undefined && md5 !== '') {
      const err = goBase64StdError(md5);
      if (err !== null) throw new Error(`Failed to decode Content-MD5 '${md5}': ${err}`);
    }
    return r.body;
  }

  /** Build the lock info this process would send for `operation`. */
  buildLockInfo(operation: string, opts: LockOptions = {}): LockInfo {
    return newLockInfo({ operation, who: this.who, version: this.version, ...opts });
  }

  /** One lock attempt (client Lock). Returns the lock ID ('' and no request without lockAddress). */
  async lock(operation: string, opts: LockOptions = {}): Promise<string> {
    const info = this.buildLockInfo(operation, opts);
    return this.lockOnce(info, marshalLockInfo(info));
  }

  /** statemgr.LockWithContext with `-lock-timeout`: retries LockErrors whose info has a non-empty ID. */
  async lockWithTimeout(operation: string, timeoutMs: number, opts: { backoffScaleMs?: number } & LockOptions = {}): Promise<string> {
    const info = this.buildLockInfo(operation, opts);
    const body = marshalLockInfo(info);
    const deadline = Date.now() + timeoutMs;
    const scale = (opts.backoffScaleMs ?? 1000) / 1000;
    let delay = 1000;
    for (;;) {
      try {
        return await this.lockOnce(info, body);
      } catch (e) {
        if (!(e instanceof LockError) || !e.retryable) throw e;
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw e;
        const wait = delay * scale;
        if (wait >= remaining) {
          await sleep(remaining);
          throw e;
        }
        await sleep(wait);
        if (delay < 16000) delay *= 2;
      }
    }
  }

  private async lockOnce(info: LockInfo, body: Buffer): Promise<string> {
    if (!this.lockUrl) return '';
    this.lockIdValue = '';
    const r = await this.send(this.lockMethod, this.lockUrl, body, 'lock');
    switch (r.status) {
      case 200:
        this.lockIdValue = info.ID;
        this.lockBodyValue = body;
        return info.ID;
      case 401:
        throw new Error('HTTP remote state endpoint requires auth');
      case 403:
        throw new Error('HTTP remote state endpoint invalid auth');
      case 409:
      case 423: {
        // TF >= 1.15: server info, none on failure. TF 1.3-1.14: always the requester's info.
        // OpenTofu: server info on success, the requester's info on failure.
        const tfModern = this.flavor === 'terraform' && versionAtLeast(this.version, 1, 15);
        const tfOld = this.flavor === 'terraform' && !tfModern;
        const onFailure = tfModern ? undefined : info;
        if (r.readError !== undefined) throw new LockError('HTTP remote state already locked, failed to read body', onFailure);
        let existing: LockInfo;
        try {
          existing = decodeLockInfoGo(r.body);
        } catch {
          throw new LockError('HTTP remote state already locked, failed to unmarshal body', onFailure);
        }
        throw new LockError(`HTTP remote state already locked: ID=${existing.ID}`, tfOld ? info : existing);
      }
      default:
        throw new Error(`Unexpected HTTP response code ${r.status}`);
    }
  }

  /** Client Unlock. No-op without unlockAddress. */
  async unlock(id?: string): Promise<void> {
    if (!this.unlockUrl) return;
    let body: Buffer;
    if (this.flavor === 'terraform') {
      body = this.lockBodyValue ?? Buffer.alloc(0);
    } else {
      let info: LockInfo;
      if (this.lockBodyValue !== null) {
        info = decodeLockInfoGo(this.lockBodyValue);
        const want = id ?? info.ID;
        if (want !== info.ID) throw new LockError(`lock id ${JSON.stringify(want)} does not match existing lock`, info);
      } else {
        info = zeroLockInfo();
      }
      info.ID = id ?? info.ID;
      body = marshalLockInfo(info);
    }
    const r = await this.send(this.unlockMethod, this.unlockUrl, body, 'unlock');
    if (r.status !== 200) throw new Error(`Unexpected HTTP response code ${r.status}`);
  }

  /** `<updateMethod> <address>[?ID=<lockID>]`. */
  async write(state: Buffer | string): Promise<void> {
    const data = typeof state === 'string' ? Buffer.from(state, 'utf8') : state;
    const target = this.lockIdValue !== '' ? { ...this.url, rawQuery: queryWithLockId(this.url.rawQuery, this.lockIdValue) } : this.url;
    const r = await this.send(this.updateMethod, target, data, 'upload state');
    if (r.status !== 200 && r.status !== 201 && r.status !== 204) throw new Error(`HTTP error: ${r.status}`);
  }

  /** DELETE <address> (no CLI flow sends it). */
  async delete(): Promise<void> {
    const r = await this.send('DELETE', this.url, null, 'delete state');
    if (r.status !== 200) throw new Error(`HTTP error: ${r.status}`);
  }

  /* ---------------------------- CLI flows ---------------------------- */

  /** TF >= 1.15's http StateMgr() already does a GET; OpenTofu and older TF do not. */
  private get stateMgrGets(): boolean {
    return this.flavor === 'terraform' && versionAtLeast(this.version, 1, 15);
  }

  private async openStateMgr(): Promise<RemoteStateMgr> {
    const mgr = new RemoteStateMgr(this);
    if (this.stateMgrGets) await mgr.refresh();
    return mgr;
  }

  private async runLocked(operation: string, opts: FlowOptions, body: () => Promise<void>, ignoreUnlockErrors = false): Promise<string> {
    let lockId = '';
    if (opts.lock !== false) lockId = await this.lockWithTimeout(operation, opts.lockTimeoutMs ?? 0, { backoffScaleMs: opts.backoffScaleMs });
    try {
      await body();
    } catch (e) {
      if (lockId !== '') await this.unlock(lockId).catch(() => undefined);
      throw e;
    }
    if (lockId !== '') {
      if (ignoreUnlockErrors) await this.unlock(lockId).catch(() => undefined);
      else await this.unlock(lockId);
    }
    return lockId;
  }

  /** `terraform init` with an unchanged/new http backend: StateMgr (GET in TF >= 1.15) + RefreshState (GET). */
  async init(): Promise<FlowResult> {
    const p = this.newProcess();
    const mgr = await p.openStateMgr();
    await mgr.refresh();
    return { client: p, lockId: '', remote: mgr.lastPayload, uploads: [] };
  }

  /** `plan`: GET → LOCK(OperationTypePlan) → GET → UNLOCK. */
  async plan(opts: FlowOptions = {}): Promise<FlowResult> {
    const p = this.newProcess();
    const mgr = await p.openStateMgr();
    const lockId = await p.runLocked('OperationTypePlan', opts, () => mgr.refresh());
    return { client: p, lockId, remote: mgr.lastPayload, uploads: [] };
  }

  /**
   * `apply`: GET → LOCK(OperationTypeApply) → GET → one PersistState per entry of `states` → UNLOCK.
   * Each entry is the state *content* core produced: like Terraform, the manager stamps the serial
   * (remote serial + 1 per change), lineage (remote's; a new one with serial 1 after a re-GET when
   * the remote is empty) and terraform_version, and skips a write when nothing changed.
   * `verbatim: true` uploads the buffers unchanged instead (same request sequence, no skipping).
   */
  async apply(states: Buffer[], opts: FlowOptions & { operation?: string; verbatim?: boolean } = {}): Promise<FlowResult> {
    const p = this.newProcess();
    const mgr = await p.openStateMgr();
    const uploads: Buffer[] = [];
    const lockId = await p.runLocked(opts.operation ?? 'OperationTypeApply', opts, async () => {
      await mgr.refresh();
      for (const s of states) {
        if (opts.verbatim) {
          await p.write(s);
          uploads.push(s);
          continue;
        }
        mgr.writeState(parseStateFile(s));
        const up = await mgr.persist();
        if (up) uploads.push(up);
      }
    });
    return { client: p, lockId, remote: mgr.lastPayload, uploads };
  }

  /** `state push [-force] FILE`: GET → LOCK(state-push) → GET → [CheckValidImport] → write → UNLOCK. */
  async statePush(file: Buffer, opts: FlowOptions & { force?: boolean } = {}): Promise<FlowResult> {
    const src = parseStateFile(file);
    const p = this.newProcess();
    const mgr = await p.openStateMgr();
    const uploads: Buffer[] = [];
    const lockId = await p.runLocked('state-push', opts, async () => {
      await mgr.refresh();
      if (!opts.force) {
        const existing = mgr.state === null ? null : { ...mgr.state, lineage: mgr.lineage, serial: mgr.serial };
        const msg = checkValidImportParsed(src, existing);
        if (msg !== null) throw new ImportError(msg, p.flavor);
      }
      mgr.writeStateForMigration(src);
      mgr.writeState(src);
      const up = await mgr.persist();
      if (up) uploads.push(up);
    });
    return { client: p, lockId, remote: mgr.lastPayload, uploads };
  }

  /**
   * `init -migrate-state -force-copy`, destination side (§7.3): GET(s) → [skip when equal and same
   * lineage] → LOCK(migration destination state) → GET → PersistState with force → UNLOCK
   * (release errors ignored). An empty source sends nothing.
   */
  async migrateInto(source: Buffer, opts: FlowOptions = {}): Promise<FlowResult> {
    const src = parseStateFile(source);
    const p = this.newProcess();
    if (isEmptyState(src)) return { client: p, lockId: '', remote: null, uploads: [] };
    const mgr = await p.openStateMgr();
    await mgr.refresh();
    if (mgr.state !== null && mgr.lastPayload !== null && contentKey(mgr.state) === contentKey(src) && mgr.lineage === src.lineage) {
      return { client: p, lockId: '', remote: mgr.lastPayload, uploads: [] };
    }
    const uploads: Buffer[] = [];
    const lockId = await p.runLocked(
      'migration destination state',
      opts,
      async () => {
        await mgr.refresh();
        mgr.writeStateForMigration(src);
        const up = await mgr.persist();
        if (up) uploads.push(up);
      },
      true,
    );
    return { client: p, lockId, remote: mgr.lastPayload, uploads };
  }

  /** `force-unlock -force ID` in a new process: (TF >= 1.15: GET) → UNLOCK as a client that never locked. */
  async forceUnlock(id: string): Promise<FlowResult> {
    const p = this.newProcess();
    if (p.flavor === 'opentofu' && !p.unlockUrl) throw new Error('Locking disabled: Locking is disabled for this backend.');
    const mgr = await p.openStateMgr();
    await p.unlock(id);
    return { client: p, lockId: '', remote: mgr.lastPayload, uploads: [] };
  }

  /* ---------------------------- HTTP machinery ---------------------------- */

  /** httpRequest(): headers per flavor, then retryablehttp Do. */
  private async send(method: string, url: GoURL, body: Buffer | null, what: string): Promise<Exchange> {
    const header = new Map<string, string>();
    let data = body;
    if (this.flavor === 'opentofu') {
      for (const [k, v] of this.customHeaders) header.set(k, v);
      if (data !== null && data.length === 0) data = null;
    }
    if (this.config.username) header.set('Authorization', basicAuth(this.config.username, this.config.password ?? ''));
    if (data !== null) {
      header.set('Content-Type', 'application/json');
      header.set('Content-Md5', contentMd5(data));
    }
    return this.retryableDo(method, url, header, data, what);
  }

  private async retryableDo(method: string, url: GoURL, header: Map<string, string>, body: Buffer | null, what: string): Promise<Exchange> {
    let attempt = 0;
    let resp: Exchange | undefined;
    let doErr: TransportError | undefined;
    let shouldRetry = false;
    for (let i = 0; ; i++) {
      attempt++;
      resp = undefined;
      doErr = undefined;
      try {
        resp = await this.clientDo(method, url, header, body, attempt);
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        doErr = e;
      }
      shouldRetry = doErr ? doErr.retryable : isRetryableStatus(resp!.status);
      if (!shouldRetry) break;
      if (this.retryMax - i <= 0) break;
      await sleep(retryBackoffMs(this.waitMinMs, this.waitMaxMs, i, resp?.status, resp ? firstHeader(resp.rawHeaders, 'Retry-After') : undefined));
    }
    if (resp) this.lastResponse = { status: resp.status, headers: resp.headers, body: resp.body };
    if (!doErr && !shouldRetry) return resp!;
    const base = `${method} ${urlString(url, { userinfo: true, pw: 'xxxxx' })} giving up after ${attempt} attempt(s)`;
    throw new Error(`Failed to ${what}: ${doErr ? `${base}: ${doErr.message}` : base}`);
  }

  /** http.Client.Do: URL basic auth, redirects (Go rules), one exchange per hop. */
  private async clientDo(method: string, url: GoURL, ireqHeader: Map<string, string>, body: Buffer | null, attempt: number): Promise<Exchange> {
    const op = urlErrorOp(method);
    let curMethod = method;
    let curUrl = url;
    let curBody = body;
    let curHeader = new Map(ireqHeader);
    let stripSensitive = false;
    const via: GoURL[] = [];
    for (;;) {
      const h = new Map(curHeader);
      if (curUrl.username !== undefined && !h.has('Authorization')) h.set('Authorization', basicAuth(curUrl.username, curUrl.password ?? ''));
      const plan = planWire(curMethod, curUrl, h, curBody);
      const ex = await this.exchange(curMethod, curUrl, plan, attempt, op);
      via.push(curUrl);
      if (![301, 302, 303, 307, 308].includes(ex.status)) return ex;
      const loc = firstHeader(ex.rawHeaders, 'Location');
      if (loc === undefined || loc === '') return ex;
      let next: GoURL;
      try {
        const resolved = new URL(loc, urlString(curUrl, { userinfo: false }));
        next = parseGoUrl(resolved.href);
      } catch (e) {
        throw new TransportError(`${op} ${JSON.stringify(urlString(curUrl, { userinfo: true, pw: '***' }))}: failed to parse Location header ${JSON.stringify(loc)}: ${(e as Error).message}`, true);
      }
      let includeBody = true;
      if (ex.status === 301 || ex.status === 302 || ex.status === 303) {
        includeBody = false;
        if (curMethod !== 'GET' && curMethod !== 'HEAD') curMethod = 'GET';
      }
      if (via.length >= 10) throw new TransportError(`${op} ${JSON.stringify(loc)}: stopped after 10 redirects`, false);
      if (!stripSensitive && via[0]!.host !== next.host) {
        const a = via[0]!.hostname.toLowerCase();
        const b = next.hostname.toLowerCase();
        if (!(a === b || b.endsWith('.' + a))) stripSensitive = true;
      }
      curHeader = new Map(ireqHeader);
      if (stripSensitive) for (const k of ['Authorization', 'Www-Authenticate', 'Cookie', 'Cookie2']) curHeader.delete(k);
      if (!(curUrl.scheme === 'https' && next.scheme === 'http')) curHeader.set('Referer', urlString(curUrl, { userinfo: false }));
      curBody = includeBody ? body : null;
      curUrl = next;
    }
  }

  private record(r: WireRecord): void {
    for (const s of this.sinks) s.push(r);
  }

  /** One HTTP/1.1 exchange. Resolves with the response (body read errors in readError) or rejects with a TransportError. */
  private exchange(method: string, url: GoURL, plan: WirePlan, attempt: number, op: string, reusedRetries = 0): Promise<Exchange> {
    const isHttps = url.scheme === 'https';
    const reqHeadersLower: Record<string, string> = {};
    for (const [k, v] of plan.headers) reqHeadersLower[k.toLowerCase()] = v;
    const base: Omit<WireRecord, 'status' | 'responseHeaders' | 'responseBody'> = {
      method,
      url: wireUrl(url),
      attempt,
      requestHeaders: reqHeadersLower,
      rawRequestHeaders: plan.headers.map(([k, v]) => [k, v] as [string, string]),
      requestBody: plan.body ?? Buffer.alloc(0),
    };
    const fail = (e: NodeJS.ErrnoException): TransportError => {
      const { cause, retryable } = goTransportCause(e, url);
      const te = new TransportError(`${op} ${JSON.stringify(urlString(url, { userinfo: true, pw: '***' }))}: ${cause}`, retryable);
      this.record({ ...base, status: 0, responseHeaders: {}, responseBody: Buffer.alloc(0), error: te.message });
      return te;
    };
    return new Promise<Exchange>((resolve, reject) => {
      const options: RequestOptions & { rejectUnauthorized?: boolean; ca?: string; cert?: string; key?: string } = {
        protocol: isHttps ? 'https:' : 'http:',
        hostname: url.hostname,
        port: url.port,
        method,
        path: requestUri(url),
        setHost: false,
        agent: isHttps ? this.httpsAgent : this.httpAgent,
      };
      if (isHttps) {
        const ca = this.config.caCertificatePem ?? this.config.ca;
        if (ca) options.ca = ca;
        if (this.config.skipCertVerification) options.rejectUnauthorized = false;
        if (this.config.clientCertificatePem) options.cert = this.config.clientCertificatePem;
        if (this.config.clientPrivateKeyPem) options.key = this.config.clientPrivateKeyPem;
      }
      let req: ClientRequest;
      try {
        req = (isHttps ? httpsRequest : httpRequest)(options);
        req.removeHeader('Connection');
        if (plan.noFraming) {
          req.removeHeader('Content-Length');
          req.removeHeader('Transfer-Encoding');
        }
        for (const [k, v] of plan.headers) req.setHeader(k, v);
      } catch (e) {
        reject(fail(e as NodeJS.ErrnoException));
        return;
      }
      let responded = false;
      req.on('response', (res: IncomingMessage) => {
        responded = true;
        const chunks: Buffer[] = [];
        let readError: string | undefined;
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          let bodyBuf = Buffer.concat(chunks);
          const ce = res.headers['content-encoding'];
          if (plan.requestedGzip && typeof ce === 'string' && ce.toLowerCase() === 'gzip' && bodyBuf.length > 0 && readError === undefined) {
            try {
              bodyBuf = gunzipSync(bodyBuf);
            } catch (e) {
              const msg = (e as Error).message;
              readError = /incorrect header check/.test(msg) ? 'gzip: invalid header' : /unexpected end of file/.test(msg) ? 'unexpected EOF' : `gzip: ${msg}`;
              bodyBuf = Buffer.alloc(0);
            }
          }
          const ex: Exchange = {
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: bodyBuf,
            readError,
          };
          this.record({ ...base, status: ex.status, responseHeaders: ex.headers, responseBody: ex.body, ...(readError !== undefined ? { error: readError } : {}) });
          resolve(ex);
        };
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e: Error) => {
          readError ??= e.message === 'aborted' ? 'unexpected EOF' : e.message;
        });
        res.on('end', finish);
        res.on('close', () => {
          if (!res.complete) readError ??= 'unexpected EOF';
          finish();
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (responded) return;
        // Go's Transport transparently retries a request that failed on a reused keep-alive
        // connection the server had already closed; don't surface that race as an attempt.
        if (req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE') && reusedRetries < 3) {
          this.exchange(method, url, plan, attempt, op, reusedRetries + 1).then(resolve, reject);
          return;
        }
        reject(fail(e));
      });
      if (plan.body !== null && plan.body.length > 0) req.end(plan.body);
      else req.end();
    });
  }
}
