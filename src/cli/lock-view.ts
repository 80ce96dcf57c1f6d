import { describeCi } from './ci-context.js';
import type { LockJson } from '../protocols/api/representations.js';
import { formatAge, paint, type Output } from './output.js';

/** A lock as the API returns it: the API's own type, imported for its shape only. */
export type LockView = LockJson;

/** "GitHub Actions run 1234 (https://…)" when the lock's session recorded a CI job, else null. */
export function heldByCi(lock: LockView): string | null {
  return describeCi(lock.evidence.ci as Record<string, unknown> | undefined);
}

export function verdictText(o: Output, verdict: LockView['verdict']): string {
  return verdict === 'alive' ? paint(o, 'green', 'alive') : verdict === 'dead' ? paint(o, 'red', 'dead') : paint(o, 'yellow', 'unknown');
}

/** Terraform's "Lock Info:" block (statemgr LockInfo.String), so operators see what they know. */
export function lockInfoBlock(info: Record<string, unknown>): string {
  const field = (name: string) => String(info[name] ?? '');
  return ['ID', 'Path', 'Operation', 'Who', 'Version', 'Created', 'Info'].map((f) => `  ${`${f}:`.padEnd(11)}${field(f)}`).join('\n') + '\n';
}

/** What an operator should conclude from a lock's evidence, in words. */
export function lockMeaning(lock: LockView, nowMs: number): string {
  const silent = Math.max(0, Math.round((nowMs - Date.parse(lock.lastActivityAt)) / 1000));
  const who = String(lock.info.Who ?? 'unknown');
  if (lock.verdict === 'alive') {
    return `The holder (${who}) is alive: its session heartbeat is current. Do not force-unlock: a second apply would run beside it and can corrupt the state.`;
  }
  if (lock.verdict === 'dead') {
    return `The holder (${who}) is dead: ${String(lock.evidence.reason ?? 'its lease expired and nothing has used the lock since')}. The state may be partial: back it up, force-unlock, then run terraform apply -refresh-only.`;
  }
  return [
    `statelock cannot prove whether the holder (${who}) is alive: Terraform sends no heartbeat.`,
    `The last request carrying this lock ID was ${formatAge(silent)} ago; an apply that is changing resources writes state at least every 20 s, so a long silence suggests — but does not prove — a dead holder (an apply can wait at its approval prompt for hours).`,
    `Confirm no terraform or tofu process of ${who} and no CI job is still running before you force-unlock: statelock recover ${lock.key}`,
  ].join('\n');
}
