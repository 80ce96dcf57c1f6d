/** What a held lock says about its holder: the lock info Terraform sent and the liveness evidence the server keeps. */
import type { Lock } from '../api-types.js';
import { externalLink, facts, h, safeHttpUrl, type Child } from '../dom.js';
import { compactValue, formatAge, formatTime } from '../format.js';
import { verdictBadge } from './badges.js';

/** A field of the lock info as text ('' when absent). */
export function infoText(lock: Lock, field: string): string {
  const v = lock.info[field];
  return v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
}

/** `Info` parsed, when `statelock run` (or another wrapper) put a JSON object there. */
function infoObject(lock: Lock): Record<string, unknown> | null {
  const raw = lock.info.Info;
  if (typeof raw === 'object' && raw !== null) return raw as Record<string, unknown>;
  if (typeof raw !== 'string' || !raw.trim().startsWith('{')) return null;
  try {
    const doc: unknown = JSON.parse(raw);
    return typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function record(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

const PROVIDERS: Record<string, string> = { 'github-actions': 'GitHub Actions', 'gitlab-ci': 'GitLab CI', buildkite: 'Buildkite', jenkins: 'Jenkins' };

/**
 * The CI jobs the lock points at: the session's `evidence.ci` (from `statelock run`) and a JSON `Info`
 * carrying `ci` or `url`. Each has a label and an http(s) URL or null (other schemes are never links).
 */
export function ciJobs(lock: Lock): Array<{ label: string; url: string | null }> {
  const info = infoObject(lock);
  const found: Array<{ label: string; url: string | null }> = [];
  for (const ci of [record(lock.evidence.ci), record(info?.ci), info]) {
    if (!ci) continue;
    const url = safeHttpUrl(ci.url);
    const provider = typeof ci.provider === 'string' ? (PROVIDERS[ci.provider] ?? ci.provider) : null;
    const run = typeof ci.runNumber === 'string' ? ci.runNumber : typeof ci.runId === 'string' ? ci.runId : null;
    if (!url && !provider) continue;
    if (found.some((f) => f.url !== null && f.url === url)) continue;
    const label = [provider ?? 'CI job', run ? `run ${run}` : null, typeof ci.project === 'string' ? ci.project : null].filter(Boolean).join(' · ');
    found.push({ label, url });
  }
  const plain = safeHttpUrl(lock.info.Info);
  if (plain && !found.some((f) => f.url === plain)) found.push({ label: 'CI job', url: plain });
  return found;
}

/** The CI jobs as links (or text when there is no http(s) URL), separated by commas; null when none. */
export function ciJobLinks(lock: Lock): HTMLSpanElement | null {
  const jobs = ciJobs(lock);
  if (!jobs.length) return null;
  const out = h('span', { className: 'ci-jobs' });
  jobs.forEach((job, i) => {
    if (i) out.append(', ');
    out.append(job.url ? externalLink(job.url, job.url === job.label ? job.url : `${job.label} ↗`) : job.label);
  });
  return out;
}

function secondsAgo(v: unknown): string | null {
  return typeof v === 'number' && Number.isFinite(v) ? `${formatAge(v)} ago` : null;
}

function timeWithAge(iso: string, seconds: number): Child {
  return h('span', null, h('time', { attrs: { datetime: iso, title: formatTime(iso) } }, `${formatAge(seconds)} ago`), h('span', { className: 'muted' }, ` (${formatTime(iso)})`));
}

/** The lock's facts as a definition list, with the stable test hooks on ID, verdict, age and holder. */
export function lockFacts(lock: Lock): HTMLElement {
  const ev = lock.evidence;
  const reason = typeof ev.reason === 'string' ? ev.reason : '';
  const rawInfo = infoText(lock, 'Info');
  const leaseExpires = typeof ev.leaseExpiresAt === 'string' ? ev.leaseExpiresAt : null;
  const leaseExpired = typeof ev.leaseExpiredAt === 'string' ? ev.leaseExpiredAt : null;
  return facts([
    ['Lock ID', h('code', { testid: 'lock-id', className: 'lock-id' }, String(lock.info.ID ?? ''))],
    [
      'Holder',
      h('span', { className: 'verdict-line' }, verdictBadge(lock.verdict, { testid: 'lock-verdict' }), lock.stale ? h('span', { className: 'badge badge-stale' }, 'stale') : null, reason ? h('span', { className: 'reason' }, reason) : null),
    ],
    ['Who', h('span', { testid: 'lock-holder' }, infoText(lock, 'Who') || '(not given)')],
    ['Operation', infoText(lock, 'Operation')],
    ['Age', h('span', null, h('span', { testid: 'lock-age' }, formatAge(lock.ageSeconds)), h('span', { className: 'muted' }, ` (acquired ${formatTime(lock.acquiredAt)})`))],
    ['Created (client)', infoText(lock, 'Created') ? h('span', null, infoText(lock, 'Created'), h('span', { className: 'muted' }, ' — is it recent or old?')) : null],
    ['Last activity', timeWithAge(lock.lastActivityAt, lock.idleSeconds)],
    ['Last heartbeat', secondsAgo(ev.lastHeartbeatSeconds)],
    ['Lease expires', leaseExpires ? formatTime(leaseExpires) : null],
    ['Lease expired', leaseExpired ? formatTime(leaseExpired) : null],
    ['Session ended', typeof ev.endedAt === 'string' ? formatTime(ev.endedAt) : null],
    ['Session', lock.sessionId ? h('code', null, lock.sessionId) : null],
    ['CI job', ciJobLinks(lock)],
    ['Held through', lock.holds.join(', ')],
    ['Waiting', typeof lock.waiters === 'number' && lock.waiters > 0 ? `${lock.waiters} LOCK request(s) in line` : null],
    ['Terraform', infoText(lock, 'Version')],
    ['Path', infoText(lock, 'Path')],
    ['Info', rawInfo ? compactValue(rawInfo, 300) : null],
    ['Client', [lock.clientAddr, lock.userAgent].filter(Boolean).join(' · ')],
  ]);
}
