// Usage: the ledger's aggregates by key, model and day over a date range, as a chart and
// a table, with CSV export of what the table shows.
import * as api from './api.js';
import { bars, fit } from './charts.js';
import { h, field, num, usd, table, utcDate, addDays, downloadText, errorText, id, say } from './ui.js';

export const title = 'Usage';

const GROUPS = ['key', 'model', 'day'];

// A text cell a spreadsheet would take for a formula (= + - @ first) gets a ' in front;
// numbers stay numbers.
function csvCell(v) {
  if (typeof v === 'number') return String(v);
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function render(root) {
  const today = utcDate(new Date());
  const since = h('input', { type: 'date', value: addDays(today, -6), required: true });
  const until = h('input', { type: 'date', value: today, required: true });
  const keySel = h('select', {}, h('option', { value: '' }, 'every key'));
  const modelSel = h('select', {}, h('option', { value: '' }, 'every model'));
  const groups = Object.fromEntries(GROUPS.map((g) => [g, h('input', { type: 'checkbox', checked: true, id: id('g') })]));
  const metric = h('select', {}, h('option', { value: 'tokens' }, 'tokens'), h('option', { value: 'cost' }, 'cost (USD)'));
  const exportBtn = h('button', { type: 'button', disabled: true }, 'Export CSV');
  const out = h('div', { class: 'results' });
  const form = h('form', { class: 'filters', 'aria-label': 'Usage filters' },
    field('From (UTC day)', since),
    field('To (UTC day, included)', until),
    field('Key', keySel),
    field('Model', modelSel),
    h('fieldset', { class: 'groups' }, h('legend', {}, 'Group by'),
      GROUPS.map((g) => h('label', { for: groups[g].id, class: 'check' }, groups[g], ` ${g}`))),
    field('Chart', metric),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Show'), exportBtn));
  root.append(h('h1', {}, 'Usage'), form, out);

  // The filters' choices: keys and models the gateway knows.
  Promise.all([api.get('/admin/keys'), api.get('/admin/config')]).then(([k, c]) => {
    for (const key of k.data) keySel.append(h('option', { value: key.id }, key.id));
    for (const m of Object.keys(c.models ?? {}).sort()) modelSel.append(h('option', { value: m }, m));
  }).catch(() => {});

  let shown = null;
  let asked = 0;
  async function show() {
    if (!since.value || !until.value || since.value > until.value) {
      out.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Choose a start day on or before the end day.'));
      return;
    }
    const mine = ++asked; // a later show() wins over an earlier one still loading
    const range = { since: since.value, until: addDays(until.value, 1), key: keySel.value, model: modelSel.value };
    const groupBy = GROUPS.filter((g) => groups[g].checked);
    out.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    let rows;
    let perDay;
    try {
      [rows, perDay] = await Promise.all([
        api.get(`/admin/usage${api.query({ ...range, group_by: groupBy.join(',') })}`),
        api.get(`/admin/usage${api.query({ ...range, group_by: 'day' })}`),
      ]);
    } catch (e) {
      if (mine !== asked) return;
      out.replaceChildren(h('p', { class: 'error', role: 'alert' },
        e.status === 404 ? 'No usage ledger is open (the chain has neither usage nor budget).' : errorText(e)));
      return;
    }
    if (mine !== asked) return;
    rows = rows.data;
    const days = [];
    for (let d = range.since; d < range.until && days.length < 400; d = addDays(d, 1)) days.push(d);
    const byDay = new Map(perDay.data.map((r) => [r.day, r]));
    const useCost = metric.value === 'cost';
    const values = days.map((d) => (useCost ? byDay.get(d)?.cost_usd : byDay.get(d)?.total_tokens) ?? 0);
    const columns = [
      ...groupBy.map((g) => ({ label: g[0].toUpperCase() + g.slice(1), field: g, cell: (r) => r[g] })),
      { label: 'Requests', field: 'requests', num: true, cell: (r) => num(r.requests) },
      { label: 'Prompt tokens', field: 'prompt_tokens', num: true, cell: (r) => num(r.prompt_tokens) },
      { label: 'Completion tokens', field: 'completion_tokens', num: true, cell: (r) => num(r.completion_tokens) },
      { label: 'Total tokens', field: 'total_tokens', num: true, cell: (r) => num(r.total_tokens) },
      { label: 'Cost', field: 'cost_usd', num: true, cell: (r) => usd(r.cost_usd) },
    ];
    const total = rows.reduce((a, r) => ({ requests: a.requests + r.requests, tokens: a.tokens + r.total_tokens, cost: a.cost + r.cost_usd }),
      { requests: 0, tokens: 0, cost: 0 });
    out.replaceChildren(
      h('p', { class: 'totals' }, `${num(total.requests)} requests · ${num(total.tokens)} tokens · ${usd(total.cost)}`),
      h('figure', {}, h('figcaption', {}, useCost ? 'Cost per day (USD)' : 'Tokens per day'),
        bars(useCost ? 'Cost per day in USD' : 'Tokens per day', days, values, useCost ? usd : num, { width: fit() })),
      table(`Usage from ${range.since} to ${until.value}`, columns, rows, 'No usage in this range.'));
    shown = { columns, rows, name: `tollgate-usage-${range.since}-to-${until.value}.csv` };
    exportBtn.disabled = false;
    say(`${rows.length} ${rows.length === 1 ? 'row' : 'rows'} of usage.`);
  }
  const showSafely = () => show().catch((e) => say(errorText(e), 'error'));

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    showSafely();
  });
  metric.addEventListener('change', showSafely);
  exportBtn.addEventListener('click', () => {
    if (!shown) return;
    const lines = [shown.columns.map((c) => c.field).join(',')];
    for (const r of shown.rows) lines.push(shown.columns.map((c) => csvCell(r[c.field])).join(','));
    downloadText(shown.name, 'text/csv', `${lines.join('\r\n')}\r\n`);
  });
  showSafely();
  return null;
}
