// Overview: live figures from /metrics (polled every 2 s while the page is open) and
// tokens and cost per hour over the last 24 hours from /admin/usage.
import * as api from './api.js';
import { parse, summarize } from './metrics.js';
import { bars, sparkline, fit } from './charts.js';
import { h, num, usd, seconds, percent, bytes, every, table, errorText } from './ui.js';

export const title = 'Overview';

function card(label, valueEl, detail) {
  return h('div', { class: 'card' }, h('h3', {}, label), valueEl, detail ?? null);
}

export function render(root) {
  const v = {};
  for (const k of ['rps', 'e5', 'e4', 'inflight', 'lat', 'ttft', 'mem', 'ledger']) {
    v[k] = h('p', { class: 'value', dataset: { figure: k } }, '…');
  }
  const spark = h('div', { class: 'spark-wrap' });
  const since = h('p', { class: 'muted' });
  const hours = h('section', { 'aria-labelledby': 'ov-24h' }, h('h2', { id: 'ov-24h' }, 'Last 24 hours'),
    h('p', { class: 'muted' }, 'Loading…'));
  root.append(
    h('h1', {}, 'Overview'),
    since,
    h('section', { 'aria-labelledby': 'ov-now' },
      h('h2', { id: 'ov-now' }, 'Now'),
      h('div', { class: 'cards' },
        card('Requests per second', v.rps, spark),
        card('Server errors (5xx)', v.e5),
        card('Refused (4xx)', v.e4),
        card('In flight', v.inflight),
        card('Latency p50 / p95 / p99', v.lat),
        card('Time to first token p50 / p95 / p99', v.ttft),
        card('Memory (resident)', v.mem),
        card('Usage ledger', v.ledger))),
    hours);

  let prev = null;
  let prevAt = 0;
  const history = [];
  const stopMetrics = every(2000, async () => {
    const text = await api.getText('/metrics');
    const at = performance.now();
    const cur = parse(text);
    const f = summarize(cur, prev, (at - prevAt) / 1000);
    prev = cur;
    prevAt = at;
    v.rps.textContent = f.rps === null ? 'measuring…' : f.rps.toFixed(f.rps < 10 ? 2 : 1);
    if (f.rps !== null) {
      history.push(f.rps);
      if (history.length > 60) history.shift();
      spark.replaceChildren(sparkline('Requests per second over the last two minutes', history));
    }
    v.e5.textContent = percent(f.share5xx);
    v.e4.textContent = percent(f.share4xx);
    v.inflight.textContent = num(f.inflight);
    v.lat.textContent = f.latency.map(seconds).join(' / ');
    v.ttft.textContent = f.ttft.map(seconds).join(' / ');
    v.mem.textContent = bytes(f.rss);
    v.ledger.textContent = f.ledgerHealthy === null ? 'not open'
      : `${f.ledgerHealthy ? 'healthy' : 'failing'}, ${num(f.ledgerQueue)} queued`;
    const up = f.started ? Math.max(0, Date.now() / 1000 - f.started) : null;
    since.textContent = `tollgate ${f.version ?? ''} · ${num(f.requests)} requests since the start${up === null ? '' : `, ${Math.floor(up / 3600)} h ${Math.floor((up % 3600) / 60)} min ago`}`;
    root.dataset.ready = 'true';
  });

  const stopHours = every(60000, async () => {
    const now = new Date();
    const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() - 23));
    const slots = [];
    for (let i = 0; i < 24; i += 1) slots.push(new Date(first.getTime() + i * 3600e3).toISOString().slice(0, 13));
    let rows;
    try {
      rows = (await api.get(`/admin/usage${api.query({ group_by: 'hour', since: first.toISOString().replace('.000', '') })}`)).data;
    } catch (e) {
      hours.replaceChildren(hours.firstChild, h('p', { class: 'muted' },
        e.status === 404 ? 'No usage ledger is open (the chain has neither usage nor budget).' : errorText(e)));
      return;
    }
    const by = new Map(rows.map((r) => [r.hour, r]));
    const tokens = slots.map((s) => by.get(s)?.total_tokens ?? 0);
    const cost = slots.map((s) => by.get(s)?.cost_usd ?? 0);
    const labels = slots.map((s) => `${s.slice(11, 13)}:00`);
    const total = rows.reduce((a, r) => ({
      requests: a.requests + r.requests, tokens: a.tokens + r.total_tokens, cost: a.cost + r.cost_usd,
    }), { requests: 0, tokens: 0, cost: 0 });
    hours.replaceChildren(
      hours.firstChild,
      h('p', { class: 'totals' }, `${num(total.requests)} requests · ${num(total.tokens)} tokens · ${usd(total.cost)} (UTC hours)`),
      h('div', { class: 'charts' },
        h('figure', {}, h('figcaption', {}, 'Tokens per hour'), bars('Tokens per hour, last 24 hours', labels, tokens, num, { width: fit(0.5) })),
        h('figure', {}, h('figcaption', {}, 'Cost per hour'), bars('Cost per hour in USD, last 24 hours', labels, cost, usd, { width: fit(0.5) }))),
      h('details', {}, h('summary', {}, 'The figures as a table'),
        table('Tokens and cost per hour', [
          { label: 'Hour (UTC)', cell: (r) => r.hour.replace('T', ' ') + ':00' },
          { label: 'Requests', num: true, cell: (r) => num(r.requests) },
          { label: 'Tokens', num: true, cell: (r) => num(r.total_tokens) },
          { label: 'Cost', num: true, cell: (r) => usd(r.cost_usd) },
        ], rows, 'No requests in the last 24 hours.')));
  });

  return () => {
    stopMetrics();
    stopHours();
  };
}
