/** A `<dialog>` shown modally, removed from the page when it closes. */
import { h, type Child } from '../dom.js';

/** The page's ready signal, cleared while a dialog's request is under way (a PageContext is one). */
export interface Progress {
  busy(): void;
  ready(): void;
}

export interface Modal {
  dialog: HTMLDialogElement;
  close(): void;
}

export function openModal(testid: string, title: string, ...body: Child[]): Modal {
  const titleId = `${testid}-title`;
  const dialog = h('dialog', { testid, className: 'modal', attrs: { 'aria-labelledby': titleId } }, h('h2', { attrs: { id: titleId } }, title), ...body);
  // Navigating away (a link, Back) closes it: a dialog never acts on a page that is no longer shown.
  const onNavigate = () => dialog.close();
  window.addEventListener('hashchange', onNavigate);
  dialog.addEventListener('close', () => {
    window.removeEventListener('hashchange', onNavigate);
    dialog.remove();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close: () => dialog.close() };
}

/** An error line inside a dialog: hidden while empty, announced when filled. */
export function dialogError(testid: string): { node: HTMLParagraphElement; show(text: string): void; clear(): void } {
  const node = h('p', { testid, className: 'dialog-error', attrs: { role: 'alert', hidden: true } });
  return {
    node,
    show(text: string) {
      node.textContent = text;
      node.hidden = false;
    },
    clear() {
      node.textContent = '';
      node.hidden = true;
    },
  };
}
