// Config: the running configuration as the gateway understood it (secrets are *** on the
// server's side, GET /admin/config), and a reload that shows the result or the problems.
import * as api from './api.js';
import { h, say, errorText } from './ui.js';

export const title = 'Config';

export function render(root) {
  const reload = h('button', { type: 'button', class: 'primary' }, 'Reload the config file');
  const result = h('div', { role: 'status', class: 'result' });
  const pre = h('pre', { class: 'config', tabindex: '0', 'aria-label': 'Running configuration (JSON)' }, 'Loading…');
  root.append(
    h('div', { class: 'titlebar' }, h('h1', {}, 'Config'), reload),
    h('p', { class: 'muted' }, 'The configuration serving now, defaults filled in; every secret shows as ***. Reload re-reads the file (like SIGHUP): a file that fails the check is refused and this one keeps serving.'),
    result,
    pre);

  async function load() {
    try {
      const c = await api.get('/admin/config');
      pre.textContent = JSON.stringify(c, null, 2);
      root.dataset.ready = 'true';
    } catch (e) {
      pre.textContent = errorText(e);
    }
  }

  reload.addEventListener('click', async () => {
    reload.disabled = true;
    result.replaceChildren();
    try {
      await api.post('/admin/reload');
      result.replaceChildren(h('p', { class: 'ok' }, `Reloaded at ${new Date().toLocaleTimeString()}: the new configuration is serving.`));
      say('Configuration reloaded.');
      await load();
    } catch (e) {
      const problems = e.code === 'invalid_config' ? e.message.split('; ') : [errorText(e)];
      result.replaceChildren(h('div', { class: 'error' },
        h('p', {}, 'The file was refused; the running configuration stays:'),
        h('ul', {}, problems.map((p) => h('li', {}, p)))));
    } finally {
      reload.disabled = false;
    }
  });

  load();
  return null;
}
