// Two small SVG charts drawn with attributes only (the page's CSP allows no inline
// style): bars over labelled slots, and a sparkline. Each has an accessible name and a
// <title> per bar, and the same figures are always in a table beside it.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// labels: slot names; values: numbers (one per label); format: value -> text.
// The width is the one the chart will have on the screen (see fit), so text keeps its size.
export function bars(name, labels, values, format, { width = 720, height = 220 } = {}) {
  const left = 78;
  const bottom = 28;
  const top = 10;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const max = Math.max(0, ...values.filter((v) => Number.isFinite(v)));
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart',
    role: 'img',
    'aria-label': `${name}: ${values.length} bars, highest ${format(max)}`,
  });
  for (const f of max > 0 ? [0, 0.5, 1] : [0]) {
    const y = top + plotH - plotH * f;
    svg.append(s('line', { x1: left, x2: width - 8, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, format(max * f)));
  }
  const slot = plotW / Math.max(1, values.length);
  values.forEach((v, i) => {
    const hgt = max > 0 ? (plotH * v) / max : 0;
    const x = left + i * slot + slot * 0.12;
    const bar = s('rect', {
      x,
      y: top + plotH - hgt,
      width: Math.max(1, slot * 0.76),
      height: Math.max(0, hgt),
      class: 'bar',
    });
    bar.append(s('title', {}, `${labels[i]}: ${format(v)}`));
    svg.append(bar);
  });
  // First, middle and last label under the bars.
  const marks = [...new Set([0, Math.floor((labels.length - 1) / 2), labels.length - 1])];
  for (const i of marks) {
    if (i < 0 || i >= labels.length) continue;
    svg.append(s('text', {
      x: left + i * slot + slot / 2,
      y: height - 8,
      class: 'axis',
      'text-anchor': i === 0 && labels.length > 1 ? 'start' : i === labels.length - 1 && labels.length > 1 ? 'end' : 'middle',
    }, labels[i]));
  }
  return svg;
}

// A chart's width for a share of the page's width: the whole main column, or half of it
// on a wide screen (two charts side by side).
export function fit(share = 1) {
  const main = Math.min(1160, document.documentElement.clientWidth - 40);
  const w = share < 1 && main > 760 ? main * share - 40 : main - 30;
  return Math.max(260, Math.round(w));
}

export function sparkline(name, values, { width = 240, height = 40 } = {}) {
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'spark', role: 'img', 'aria-label': name });
  if (values.length < 2) return svg;
  const max = Math.max(...values, 0) || 1;
  const step = width / (values.length - 1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((height - 4) * v) / max).toFixed(1)}`);
  svg.append(s('polyline', { points: pts.join(' '), class: 'line' }));
  return svg;
}
