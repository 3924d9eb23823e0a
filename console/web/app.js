// The console's shell: sign-in, the page router (#/overview, #/usage, ...), sign-out.
import * as api from './api.js';
import { h, field, errorText, say } from './ui.js';
import * as overview from './page_overview.js';
import * as usage from './page_usage.js';
import * as keys from './page_keys.js';
import * as providers from './page_providers.js';
import * as config from './page_config.js';

const pages = { overview, usage, keys, providers, config };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signout = document.getElementById('signout');
let stopPage = null;

function leavePage() {
  if (stopPage) stopPage();
  stopPage = null;
}

function showSignIn(message) {
  leavePage();
  nav.hidden = true;
  signout.hidden = true;
  document.title = 'Sign in · tollgate console';
  const input = h('input', {
    type: 'password',
    name: 'token',
    autocomplete: 'off', // not for the password manager: the token is for this tab only
    required: true,
    spellcheck: 'false',
  });
  const error = h('p', { class: 'error', id: 'signin-error', role: 'alert' }, message ?? '');
  input.setAttribute('aria-describedby', error.id);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title', tabindex: '-1' }, 'Sign in'),
    h('p', {}, 'The console uses the admin API. Enter the admin token (admin.token in the configuration). It is kept for this browser tab only and sent with each call, never in an address.'),
    field('Admin token', input),
    error,
    button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    button.disabled = true;
    error.textContent = '';
    try {
      await api.check(t);
      api.setToken(t);
      input.value = '';
      if (!location.hash.startsWith('#/')) location.hash = '#/overview';
      route();
    } catch (e) {
      error.textContent = e.status === 401 ? `The gateway refused this token: ${e.message}.` : errorText(e);
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
}

function route() {
  if (!api.token()) {
    showSignIn();
    return;
  }
  const name = (location.hash.match(/^#\/([a-z]+)/) ?? [])[1];
  const page = name && Object.hasOwn(pages, name) ? pages[name] : null;
  if (!page) {
    location.replace('#/overview');
    return;
  }
  leavePage();
  nav.hidden = false;
  signout.hidden = false;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = h('div', { class: 'page', dataset: { page: name } });
  main.replaceChildren(root);
  document.title = `${page.title} · tollgate console`;
  stopPage = page.render(root) ?? null;
  const h1 = root.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: true });
  }
}

api.whenRefused(() => {
  api.clearToken();
  showSignIn('The gateway refused the admin token (it may have changed). Sign in again.');
});

signout.addEventListener('click', () => {
  api.clearToken();
  say('Signed out.');
  showSignIn();
});

// The skip link moves focus without touching the page's address.
document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#/') || !api.token()) route();
});
route();
