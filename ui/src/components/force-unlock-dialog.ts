/**
 * The force-unlock dialog: the lesson-17 recovery checklist (confirm nothing runs, read the lock and its
 * Created time, back up the state, unlock, refresh-only, plan, apply), the holder's evidence, and a submit
 * that stays disabled until the lock ID is typed exactly. An alive holder needs an explicit, audited override.
 * DELETE /api/v1/locks/<key>?id=<lockId>[&evenIfAlive=true].
 */
import { keyPath, request, withQuery } from '../api.js';
import type { Lock, UnlockAnswer, Version } from '../api-types.js';
import { h } from '../dom.js';
import { formatAge, formatBytes } from '../format.js';
import { errorText, showError } from '../notice.js';
import { verdictBadge } from './badges.js';
import { ciJobLinks, infoText } from './lock-facts.js';
import { dialogError, openModal, type Progress } from './modal.js';

export function openForceUnlockDialog(key: string, lock: Lock, current: Version, progress: Progress, onUnlocked: (answer: UnlockAnswer) => void): void {
  const lockId = String(lock.info.ID ?? '');
  const ci = ciJobLinks(lock);
  const created = infoText(lock, 'Created');
  const reason = typeof lock.evidence.reason === 'string' ? lock.evidence.reason : '';
  const download = h(
    'a',
    { testid: 'force-unlock-download', attrs: { href: withQuery(keyPath('content', key), { seq: current.seq, download: true }), download: '' } },
    `Download the current version (seq ${current.seq}, serial ${current.serial}, ${formatBytes(current.size)})`,
  );
  const code = (text: string) => h('code', null, text);

  const checklist = h(
    'ol',
    { testid: 'force-unlock-checklist', className: 'checklist' },
    h(
      'li',
      null,
      h('strong', null, 'Confirm no Terraform process is running. '),
      'Check every machine that may have started it (',
      code('pgrep terraform'),
      ' should print nothing) and your CI pipeline: is any job still in progress?',
      ci ? h('span', null, ' The lock was taken by a CI job: ', ci, '.') : null,
    ),
    h(
      'li',
      null,
      h('strong', null, 'Read the lock entry and note its Created time. '),
      `Held by ${infoText(lock, 'Who') || 'an unnamed holder'} for ${formatAge(lock.ageSeconds)}`,
      created ? `, Created ${created}` : '',
      `; last used ${formatAge(lock.idleSeconds)} ago. Is it recent or old? A lock taken seconds ago may belong to a running apply.`,
    ),
    h('li', null, h('strong', null, 'Back up the current state before anything else: '), download, ' (or ', code('terraform state pull > state-backup.json'), ').'),
    h('li', null, h('strong', null, 'Force-unlock '), 'with the lock ID: type it below.'),
    h('li', null, h('strong', null, 'Sync the state with reality: '), code('terraform apply -refresh-only'), ' (finds resources an interrupted apply created but never recorded).'),
    h('li', null, h('strong', null, 'Verify: '), code('terraform plan'), '.'),
    h('li', null, h('strong', null, 'Apply any remaining changes: '), code('terraform apply'), '.'),
  );

  const evidence = h(
    'div',
    { className: `panel evidence verdict-panel-${lock.verdict}`, testid: 'force-unlock-evidence' },
    h('p', null, 'Holder verdict: ', verdictBadge(lock.verdict), lock.stale ? h('span', { className: 'badge badge-stale' }, 'stale') : null, reason ? ` — ${reason}` : ''),
  );

  const alive = lock.verdict === 'alive';
  const evenIfAlive = h('input', { testid: 'force-unlock-even-if-alive', attrs: { type: 'checkbox', id: 'force-unlock-even-if-alive' } });
  const aliveWarning = alive
    ? h(
        'div',
        { className: 'panel panel-danger', attrs: { role: 'alert' } },
        h('p', null, h('strong', null, 'The holder is alive: '), 'its session heartbeat is current. Unlocking a live apply lets a second one run beside it, and two applies writing one state corrupt it. The server refuses unless you override, and the override is audited.'),
        h('p', { className: 'check' }, evenIfAlive, h('label', { attrs: { for: 'force-unlock-even-if-alive' } }, 'The holder is alive; unlock anyway (audited)')),
      )
    : null;

  const confirmInput = h('input', {
    testid: 'force-unlock-confirm-input',
    attrs: { id: 'force-unlock-confirm', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'force-unlock-confirm-hint' },
  });
  const submit = h('button', { testid: 'force-unlock-submit', className: 'danger', attrs: { type: 'submit', disabled: true } }, 'Force-unlock');
  const cancel = h('button', { attrs: { type: 'button' } }, 'Cancel');
  const error = dialogError('force-unlock-error');
  confirmInput.addEventListener('input', () => {
    submit.disabled = confirmInput.value !== lockId;
  });

  const form = h(
    'form',
    { className: 'dialog-form' },
    h('label', { attrs: { for: 'force-unlock-confirm' } }, 'Type the lock ID to confirm'),
    h('p', { className: 'hint', attrs: { id: 'force-unlock-confirm-hint' } }, 'Lock ID: ', h('code', { className: 'lock-id' }, lockId)),
    confirmInput,
    error.node,
    h('div', { className: 'dialog-buttons' }, cancel, submit),
  );

  const modal = openModal(
    'force-unlock-dialog',
    `Force-unlock ${key}`,
    h('p', null, 'Force-unlock removes the lock whatever its holder is doing. Finding a stale lock is an event, not an emergency: follow the recovery checklist in order; steps 1 to 3 come before the unlock.'),
    checklist,
    evidence,
    aliveWarning,
    form,
  );
  cancel.addEventListener('click', () => modal.close());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (confirmInput.value !== lockId) return;
    void (async () => {
      error.clear();
      submit.disabled = true;
      progress.busy(); // the page is about to change: nobody should read the old one as the answer
      try {
        const answer = await request<UnlockAnswer>(keyPath('locks', key), { method: 'DELETE', query: { id: lockId, evenIfAlive: alive && evenIfAlive.checked ? 'true' : undefined } });
        modal.close();
        onUnlocked(answer);
      } catch (err) {
        error.show(errorText(err));
        showError(err);
        submit.disabled = confirmInput.value !== lockId;
        progress.ready();
      }
    })();
  });
  confirmInput.focus();
}
