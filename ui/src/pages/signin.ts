/** `#/signin`: trade a token for a session cookie (POST /ui/auth/login {token}); the page never keeps the token. */
import { ApiError, request } from '../api.js';
import type { LoginAnswer } from '../api-types.js';
import { h, routeLink } from '../dom.js';
import { errorText } from '../notice.js';
import type { PageContext } from '../page-context.js';
import { hashes } from '../router.js';
import { session, updateSession } from '../session.js';

export async function renderSignIn(ctx: PageContext, afterSignIn: () => void): Promise<void> {
  if (!session().authRequired) {
    ctx.main.append(
      h('h1', null, 'Sign in'),
      h('p', { className: 'panel' }, 'This server has no token yet: every request from this machine (loopback) is allowed, and you are signed in as ', h('strong', null, session().name ?? 'anonymous'), '.'),
      h('p', null, routeLink(hashes.overview(), 'Go to the overview')),
    );
    ctx.ready();
    return;
  }
  const token = h('input', { testid: 'signin-token', attrs: { id: 'signin-token', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false', placeholder: 'slk_…' } });
  const submit = h('button', { testid: 'signin-submit', className: 'primary', attrs: { type: 'submit' } }, 'Sign in');
  const error = h('p', { testid: 'signin-error', className: 'dialog-error', attrs: { role: 'alert', hidden: true } });
  const form = h(
    'form',
    { className: 'signin-form panel' },
    h('label', { attrs: { for: 'signin-token' } }, 'Token'),
    token,
    h('p', { className: 'hint' }, 'A statelock token (', h('code', null, 'statelock token create'), '). It is sent once; the dashboard then uses an HttpOnly session cookie for 8 hours.'),
    error,
    submit,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      error.hidden = true;
      error.textContent = '';
      submit.disabled = true;
      try {
        const answer = await request<LoginAnswer>('/ui/auth/login', { method: 'POST', json: { token: token.value.trim() }, signInOn401: false });
        token.value = '';
        updateSession({ signedIn: true, name: answer.name, grants: answer.grants, csrf: answer.csrf });
        afterSignIn();
      } catch (err) {
        error.textContent = err instanceof ApiError && err.status === 401 ? err.message : errorText(err);
        error.hidden = false;
        submit.disabled = false;
        if (ctx.isCurrent()) ctx.ready();
      }
    })();
  });
  ctx.main.append(h('h1', null, 'Sign in to statelock'), form);
  token.focus();
  ctx.ready();
}
