/**
 * The restore dialog: explains roll-forward (the old content comes back as a new version with a higher
 * serial; nothing is overwritten or lost), then POST /api/v1/restore/<key>?seq=N. The server refuses while
 * the state is locked; the dialog shows its message.
 */
import { keyPath, request } from '../api.js';
import type { RestoreAnswer, Version } from '../api-types.js';
import { h } from '../dom.js';
import { formatTime } from '../format.js';
import { errorText, showError } from '../notice.js';
import { dialogError, openModal, type Progress } from './modal.js';

export function openRestoreDialog(key: string, target: Version, current: Version, locked: boolean, progress: Progress, onRestored: (answer: RestoreAnswer) => void): void {
  const submit = h('button', { testid: 'restore-submit', className: 'primary', attrs: { type: 'submit' } }, 'Restore as a new version');
  const cancel = h('button', { attrs: { type: 'button' } }, 'Cancel');
  const error = dialogError('restore-error');
  const form = h('form', { className: 'dialog-form' }, error.node, h('div', { className: 'dialog-buttons' }, cancel, submit));
  const modal = openModal(
    'restore-dialog',
    `Restore version ${target.seq} of ${key}`,
    h(
      'p',
      null,
      `Restore rolls forward: the content of version seq ${target.seq} (serial ${target.serial}, written ${formatTime(target.createdAt)}) is written as a new version whose serial is higher than any this state has had (the current version is seq ${current.seq}, serial ${current.serial}).`,
    ),
    h('p', null, 'Nothing is lost: the current version stays in the history and can itself be restored later. Every Terraform client sees the serial only increase.'),
    h('p', null, 'Afterwards run ', h('code', null, 'terraform plan'), ': the restored state may no longer match the real infrastructure.'),
    target.encrypted ? h('p', { className: 'panel panel-warning' }, 'This version is an OpenTofu encrypted state: the server cannot rewrite its serial and will refuse; pull it and push it with tofu state push instead.') : null,
    locked ? h('p', { className: 'panel panel-warning' }, 'The state is locked: the server refuses a restore while a lock is held. Wait for the lock to be released (or recover it) first.') : null,
    form,
  );
  cancel.addEventListener('click', () => modal.close());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      error.clear();
      submit.disabled = true;
      progress.busy();
      try {
        const answer = await request<RestoreAnswer>(keyPath('restore', key), { method: 'POST', query: { seq: target.seq } });
        modal.close();
        onRestored(answer);
      } catch (err) {
        error.show(errorText(err));
        showError(err);
        submit.disabled = false;
        progress.ready();
      }
    })();
  });
  submit.focus();
}
