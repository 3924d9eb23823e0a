// Keys: every key with its limits and its spend against its budget; create (the secret
// shown once), edit models/limits/budget, revoke after a confirmation.
import * as api from './api.js';
import { h, field, num, usd, table, utcDate, modal, say, errorText, id } from './ui.js';

export const title = 'Keys';

function periodStart(period) {
  const now = new Date();
  if (period === 'day') return utcDate(now);
  if (period === 'month') return `${utcDate(now).slice(0, 8)}01`;
  return null; // total
}

function limitsText(l) {
  if (!l) return 'none';
  const parts = [];
  if (l.rpm !== undefined && l.rpm !== null) parts.push(`${num(l.rpm)} rpm`);
  if (l.tpm !== undefined && l.tpm !== null) parts.push(`${num(l.tpm)} tpm`);
  if (l.concurrency !== undefined && l.concurrency !== null) parts.push(`${num(l.concurrency)} at once`);
  return parts.length ? parts.join(', ') : 'none';
}

function budgetText(b) {
  if (!b) return 'none';
  const parts = [];
  if (b.usd !== undefined && b.usd !== null) parts.push(usd(b.usd));
  if (b.tokens !== undefined && b.tokens !== null) parts.push(`${num(b.tokens)} tokens`);
  return `${parts.join(' and ') || 'none'} per ${b.period === 'total' ? 'lifetime' : b.period ?? 'month'}`;
}

function spendCell(k, spend) {
  const b = k.budget;
  if (!b) return h('span', { class: 'muted' }, spend ? `${usd(spend.cost_usd)} this month` : '–');
  const s = spend ?? { cost_usd: 0, total_tokens: 0 };
  const parts = [];
  const meter = (value, max, text) => {
    const m = h('meter', { min: 0, max, value: Math.min(value, max), 'aria-label': `${k.id} spend: ${text}` });
    if (value >= max) m.classList.add('over');
    return h('span', { class: 'spend' }, m, ` ${text}`);
  };
  if (b.usd !== undefined && b.usd !== null) parts.push(meter(s.cost_usd, b.usd || 1e-9, `${usd(s.cost_usd)} of ${usd(b.usd)}`));
  if (b.tokens !== undefined && b.tokens !== null) parts.push(meter(s.total_tokens, b.tokens || 1, `${num(s.total_tokens)} of ${num(b.tokens)} tokens`));
  return h('span', { class: 'spends' }, parts);
}

// The create/edit form's fields; value() gives the key's JSON (or throws a message).
function keyFields(models, key, ipAllow) {
  const idIn = h('input', {
    type: 'text', required: true, maxlength: 128, pattern: '[A-Za-z0-9_.:@\\-]+', value: key?.id ?? '',
    disabled: !!key, autocomplete: 'off', spellcheck: 'false',
  });
  const every = h('input', { type: 'checkbox', id: id('every'), checked: !key || key.models === null });
  const modelBoxes = models.map((m) => h('input', {
    type: 'checkbox', id: id('m'), value: m, checked: !!key?.models?.includes(m),
  }));
  const syncModels = () => { for (const b of modelBoxes) b.disabled = every.checked; };
  every.addEventListener('change', syncModels);
  syncModels();
  const numIn = (v, step = '1') => h('input', { type: 'number', min: 0, step, inputmode: step === '1' ? 'numeric' : 'decimal', value: v ?? '' });
  const rpm = numIn(key?.limits?.rpm);
  const tpm = numIn(key?.limits?.tpm);
  const conc = numIn(key?.limits?.concurrency);
  const busd = numIn(key?.budget?.usd, 'any');
  const btok = numIn(key?.budget?.tokens);
  const period = h('select', {}, ['day', 'month', 'total'].map((p) => h('option', { value: p }, p)));
  period.value = key?.budget?.period ?? 'month';
  // Address ranges (allowed_cidrs) mean something only where ip_allow runs: the field is
  // offered then, or when the key has ranges already (so they can be cleared).
  const hadCidrs = Array.isArray(key?.allowed_cidrs);
  const cidrs = h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false',
    value: hadCidrs ? key.allowed_cidrs.join(', ') : '', placeholder: 'any address',
  });
  const el = h('div', { class: 'keyform' },
    field('Key id', idIn, 'Letters, digits and - _ . : @ (up to 128). Shown in metrics and usage.'),
    h('fieldset', {}, h('legend', {}, 'Models'),
      h('label', { for: every.id, class: 'check' }, every, ' Every model'),
      h('div', { class: 'models' }, modelBoxes.map((b) => h('label', { for: b.id, class: 'check' }, b, ` ${b.value}`)))),
    h('fieldset', {}, h('legend', {}, 'Limits (empty: none)'),
      h('div', { class: 'row' },
        field('Requests per minute', rpm),
        field('Tokens per minute', tpm),
        field('Requests at once', conc))),
    h('fieldset', {}, h('legend', {}, 'Budget (empty: none)'),
      h('div', { class: 'row' },
        field('USD', busd),
        field('Tokens', btok),
        field('Period', period))),
    ipAllow || hadCidrs
      ? field('Allowed client addresses', cidrs, 'CIDR ranges or addresses, separated by commas (10.0.0.0/8, 2001:db8::/32); empty: any address. Needs ip_allow in the chain.')
      : null);
  const read = (input, label, integer) => {
    // A number the browser cannot read shows as '' too: never take it for "none".
    if (input.validity.badInput) throw new Error(`${label}: not a number`);
    if (input.value === '') return undefined;
    const v = Number(input.value);
    if (!Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) {
      throw new Error(`${label}: ${integer ? 'a whole number' : 'a number'} ≥ 0, or empty`);
    }
    return v;
  };
  const value = () => {
    const out = {};
    if (!key) {
      if (!idIn.value) throw new Error('Key id: required');
      if (!idIn.checkValidity()) throw new Error('Key id: only letters, digits and - _ . : @');
      out.id = idIn.value;
    }
    out.models = every.checked ? null : modelBoxes.filter((b) => b.checked).map((b) => b.value);
    const limits = { rpm: read(rpm, 'Requests per minute', true), tpm: read(tpm, 'Tokens per minute', true), concurrency: read(conc, 'Requests at once', true) };
    for (const k of Object.keys(limits)) if (limits[k] === undefined) delete limits[k];
    out.limits = Object.keys(limits).length ? limits : null;
    const budget = { usd: read(busd, 'Budget USD', false), tokens: read(btok, 'Budget tokens', true) };
    for (const k of Object.keys(budget)) if (budget[k] === undefined) delete budget[k];
    out.budget = Object.keys(budget).length ? { ...budget, period: period.value } : null;
    const ranges = cidrs.value.split(/[\s,]+/).filter((x) => x);
    if (ranges.length) out.allowed_cidrs = ranges;
    else if (hadCidrs) out.allowed_cidrs = null; // cleared: any address again
    return out;
  };
  return { el, value, first: key ? (every.checked ? rpm : every) : idIn };
}

// A dialog holding a form: `submit(value)` runs the call; the dialog stays open with the
// error when it fails. Resolves with the call's result, or null when cancelled.
function formDialog(title, fields, submitLabel, submit) {
  return new Promise((resolve) => {
    const titleId = id('dlg');
    const error = h('p', { class: 'error', role: 'alert' });
    const ok = h('button', { type: 'submit', class: 'primary' }, submitLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog' }, fields.el, error, h('div', { class: 'actions' }, cancel, ok));
    const dlg = h('dialog', { 'aria-labelledby': titleId }, h('h2', { id: titleId }, title), form);
    let result = null;
    let busy = false;
    // While the call runs the dialog stays: closing it then could lose a new key's secret.
    cancel.addEventListener('click', () => { if (!busy) dlg.close(); });
    dlg.addEventListener('cancel', (ev) => { if (busy) ev.preventDefault(); });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      let body;
      try {
        body = fields.value();
      } catch (e) {
        error.textContent = errorText(e);
        return;
      }
      ok.disabled = true;
      cancel.disabled = true;
      busy = true;
      try {
        result = await submit(body);
      } catch (e) {
        error.textContent = errorText(e);
      } finally {
        busy = false;
        ok.disabled = false;
        cancel.disabled = false;
      }
      if (result) dlg.close();
    });
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(result);
    });
    document.body.append(dlg);
    dlg.showModal();
    fields.first.focus();
  });
}

async function showSecret(created) {
  const secret = h('input', { type: 'text', readonly: true, value: created.key, class: 'secret', spellcheck: 'false' });
  const copied = h('span', { class: 'muted', role: 'status' });
  const copy = h('button', { type: 'button' }, 'Copy');
  copy.addEventListener('click', async () => {
    secret.select();
    try {
      await navigator.clipboard.writeText(created.key);
      copied.textContent = 'Copied.';
    } catch {
      copied.textContent = 'Selected: copy it with Ctrl+C.';
    }
  });
  await modal(`Key ${created.id} created`, h('div', {},
    h('p', {}, 'This is the only time the secret is shown: the gateway keeps only its hash. Store it now.'),
    field('Secret key', secret), h('div', { class: 'row' }, copy, copied)),
  [{ label: 'Done', value: 'done', kind: 'primary' }]);
}

export function render(root) {
  const create = h('button', { type: 'button', class: 'primary' }, 'Create key');
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('div', { class: 'titlebar' }, h('h1', {}, 'Keys'), create), list);
  let models = [];
  let ipAllow = false;

  async function load() {
    let keys;
    try {
      const [k, c] = await Promise.all([api.get('/admin/keys'), api.get('/admin/config')]);
      keys = k.data;
      models = Object.keys(c.models ?? {}).sort();
      ipAllow = (c.policies ?? []).includes('ip_allow');
    } catch (e) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, errorText(e)));
      return;
    }
    // Spend in each key's budget period, from the ledger (the ledger of record).
    const spend = { day: new Map(), month: new Map(), total: new Map() };
    const periods = new Set(keys.filter((k) => k.budget).map((k) => k.budget.period ?? 'month'));
    periods.add('month');
    await Promise.all([...periods].map(async (p) => {
      try {
        const r = await api.get(`/admin/usage${api.query({ group_by: 'key', since: periodStart(p) })}`);
        for (const row of r.data) spend[p].set(row.key, row);
      } catch {
        // No ledger: spend unknown.
      }
    }));
    const rows = keys;
    list.replaceChildren(table('Keys', [
      { label: 'Id', cell: (k) => h('span', { class: 'mono' }, k.id) },
      { label: 'Source', cell: (k) => (k.source === 'config' ? 'config file' : 'admin API') },
      { label: 'Models', cell: (k) => (k.models === null ? 'every model' : k.models.length ? k.models.join(', ') : 'none') },
      {
        label: 'Limits',
        cell: (k) => (Array.isArray(k.allowed_cidrs)
          ? [limitsText(k.limits), h('br'), h('span', { class: 'muted' }, `from ${k.allowed_cidrs.join(', ') || 'no address'}`)]
          : limitsText(k.limits)),
      },
      { label: 'Budget', cell: (k) => budgetText(k.budget) },
      { label: 'Spent this period', cell: (k) => spendCell(k, spend[k.budget ? k.budget.period ?? 'month' : 'month'].get(k.id)) },
      { label: 'Status', cell: (k) => (k.revoked ? h('span', { class: 'badge bad' }, 'revoked') : h('span', { class: 'badge ok' }, 'active')) },
      { label: 'Created', cell: (k) => (k.created_at ? h('time', { datetime: k.created_at, class: 'nowrap' }, k.created_at.slice(0, 10)) : '–') },
      {
        label: 'Actions',
        cell: (k) => h('span', { class: 'actions-cell' },
          k.source === 'config'
            ? h('span', { class: 'muted' }, 'edit in the config file')
            : h('button', { type: 'button', 'aria-label': `Edit key ${k.id}`, onclick: () => edit(k) }, 'Edit'),
          k.revoked ? null : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.id}`, onclick: () => revoke(k) }, 'Revoke')),
      },
    ], rows, 'No keys yet.'));
    root.dataset.ready = 'true';
  }

  async function edit(k) {
    const updated = await formDialog(`Edit key ${k.id}`, keyFields(models, k, ipAllow), 'Save',
      (body) => api.patch(`/admin/keys/${encodeURIComponent(k.id)}`, body));
    if (updated) {
      say(`Key ${k.id} saved.`);
      await load();
    }
    // The row was drawn anew: give the focus to its Edit button again.
    const again = [...list.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === `Edit key ${k.id}`);
    (again ?? root.querySelector('h1')).focus();
  }

  async function revoke(k) {
    const body = h('p', {}, k.source === 'config'
      ? 'Requests with this key are refused at once, on every instance. It is defined in the config file: it stays revoked, across restarts, until the config gives it a new secret.'
      : 'Requests with this key are refused at once, on every instance, and the key is deleted.');
    const answer = await modal(`Revoke key ${k.id}?`, body, [
      { label: 'Cancel', value: 'cancel' },
      { label: 'Revoke', value: 'revoke', kind: 'danger' },
    ]);
    if (answer !== 'revoke') return;
    try {
      await api.del(`/admin/keys/${encodeURIComponent(k.id)}`);
      say(`Key ${k.id} revoked.`);
    } catch (e) {
      say(errorText(e), 'error');
    }
    await load();
    root.querySelector('h1').focus();
  }

  create.addEventListener('click', async () => {
    const created = await formDialog('Create a key', keyFields(models, null, ipAllow), 'Create', (body) => {
      const b = { ...body };
      if (b.limits === null) delete b.limits;
      if (b.budget === null) delete b.budget;
      return api.post('/admin/keys', b);
    });
    if (created) {
      await showSecret(created);
      await load();
    }
  });

  load();
  return null;
}
