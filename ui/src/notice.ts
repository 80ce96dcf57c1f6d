/** The notice area under the header: one message at a time, success (`ok`) or failure (`error`). */
import { ApiError } from './api.js';
import { h } from './dom.js';

const message = h('p', { testid: 'notice', className: 'notice-text' });
const dismiss = h('button', { className: 'notice-dismiss', attrs: { type: 'button', 'aria-label': 'Dismiss message' }, on: { click: () => clearNotice() } }, '×');
const bar = h('div', { className: 'notice', attrs: { role: 'status', 'aria-live': 'polite', hidden: true } }, message, dismiss);

export function noticeArea(): HTMLElement {
  return bar;
}

export function showNotice(kind: 'ok' | 'error', text: string, code?: string): void {
  message.textContent = text;
  message.dataset.kind = kind;
  bar.dataset.kind = kind;
  if (code) message.dataset.code = code;
  else delete message.dataset.code;
  bar.hidden = false;
}

/** The server's message for an API failure, anything else as text. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

export function showError(err: unknown): void {
  showNotice('error', errorText(err), err instanceof ApiError ? err.code : undefined);
}

export function clearNotice(): void {
  message.textContent = '';
  delete message.dataset.kind;
  delete message.dataset.code;
  delete bar.dataset.kind;
  bar.hidden = true;
}
