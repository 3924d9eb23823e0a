// Providers: each provider's pooled connections and its targets' health as the router
// sees it now (GET /admin/providers), refreshed every 2 s while open.
import * as api from './api.js';
import { h, num, table, every, id } from './ui.js';

export const title = 'Providers';

export function render(root) {
  const out = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'Providers'),
    h('p', { class: 'muted' }, 'Health as the router sees it, refreshed every 2 s. A target cools down after failures in a row (routing.cooldown_after_failures).'),
    out);
  let last = '';
  const stop = every(2000, async () => {
    const r = await api.get('/admin/providers');
    // Drawn again only when something changed, and never under the keyboard's focus.
    const now = JSON.stringify(r.data);
    if (now === last || out.contains(document.activeElement)) return;
    last = now;
    out.replaceChildren(...r.data.map((p) => {
      const hid = id('prov');
      return h('section', { class: 'provider', 'aria-labelledby': hid },
        h('h2', { id: hid }, p.provider, h('span', { class: 'muted' }, ` ${p.kind}`)),
        h('p', { class: 'muted mono' }, p.base_url),
        h('p', {}, `Connections: ${num(p.connections.active)} active, ${num(p.connections.idle)} idle`),
        table(`Targets of ${p.provider}`, [
          { label: 'Model', cell: (t) => t.model },
          { label: 'Upstream model', cell: (t) => t.upstream_model },
          { label: 'Weight', num: true, cell: (t) => num(t.weight) },
          { label: 'In flight', num: true, cell: (t) => num(t.in_flight) },
          { label: 'Failures in a row', num: true, cell: (t) => num(t.failures_in_a_row) },
          {
            label: 'Health',
            cell: (t) => (t.cooling
              ? h('span', { class: 'badge bad' }, `cooling until ${(t.cooling_until ?? '').slice(11, 19)} UTC`)
              : h('span', { class: 'badge ok' }, 'serving')),
          },
          { label: 'Time to answer (avg)', num: true, cell: (t) => (t.ttfb_ms_avg === null ? '–' : `${t.ttfb_ms_avg.toFixed(1)} ms`) },
        ], p.targets, 'No model routes to this provider.'));
    }));
    if (!r.data.length) out.replaceChildren(h('p', {}, 'No providers are configured.'));
    root.dataset.ready = 'true';
  });
  return stop;
}
