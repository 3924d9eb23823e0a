// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so nothing the
// gateway returns (key ids, model names, error messages) can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let uid = 0;
export function id(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled control: <label for> + the control, in one field block.
export function field(label, control, hint) {
  if (!control.id) control.id = id('f');
  const hintEl = hint ? h('span', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

export function table(caption, columns, rows, empty = 'Nothing to show.') {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r)))))
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty))];
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {}, h('caption', {}, caption), h('thead', {}, head), h('tbody', {}, body)));
}

const nf = new Intl.NumberFormat('en-US');
export function num(n) {
  return n === null || n === undefined || Number.isNaN(n) ? '–' : nf.format(n);
}

export function usd(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (n !== 0 && Math.abs(n) < 0.01) return `$${n.toPrecision(2)}`;
  return `$${n.toFixed(2)}`;
}

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

export function percent(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  return `${(x * 100).toFixed(x < 0.1 ? 2 : 1)} %`;
}

export function bytes(b) {
  if (b === null || b === undefined || Number.isNaN(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) {
    b /= 1024;
    i += 1;
  }
  return `${b.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A short message for everyone, screen readers included (role=status).
let statusTimer = null;
export function say(message, kind = 'info') {
  const s = document.getElementById('status');
  s.textContent = message;
  s.dataset.kind = kind;
  s.classList.add('shown');
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => s.classList.remove('shown'), kind === 'error' ? 8000 : 4000);
}

export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

// A modal <dialog>: resolves with the value of the button that closed it.
export function modal(title, body, buttons) {
  return new Promise((resolve) => {
    const titleId = id('dlg');
    const dlg = h('dialog', { 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      body,
      h('div', { class: 'actions' }, buttons.map((b) =>
        h('button', {
          type: 'button',
          class: b.kind ?? null,
          onclick: () => { dlg.returnValue = b.value; dlg.close(); },
        }, b.label))));
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue || 'cancel');
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function utcDate(d) {
  return d.toISOString().slice(0, 10);
}

export function addDays(date, days) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return utcDate(d);
}

// Every `ms` while the page is shown; returns a stop function.
export function every(ms, f) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await f();
    } catch (e) {
      if (e?.status !== 401) say(errorText(e), 'error');
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function downloadText(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name, class: 'hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
