// The gateway's Prometheus text (GET /metrics) read into figures: requests per second,
// error shares, latency and time-to-first-token percentiles between two scrapes.

// name -> [{labels, value}]
export function parse(text) {
  const out = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let i = 0;
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i += 1;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === '{') {
      i += 1;
      while (i < line.length && line[i] !== '}') {
        const eq = line.indexOf('=', i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim();
        i = eq + 2; // past ="
        let v = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const c = line[i + 1];
            v += c === 'n' ? '\n' : c;
            i += 2;
          } else {
            v += line[i];
            i += 1;
          }
        }
        labels[key] = v;
        i += 1; // the closing quote
        if (line[i] === ',') i += 1;
      }
      i += 1; // '}'
    }
    const value = Number.parseFloat(line.slice(i).trim().split(/\s+/)[0]);
    if (!out.has(name)) out.set(name, []);
    out.get(name).push({ labels, value });
  }
  return out;
}

function sum(m, name, pred = () => true) {
  let s = 0;
  for (const x of m.get(name) ?? []) if (pred(x.labels)) s += x.value;
  return s;
}

function one(m, name) {
  const v = m.get(name);
  return v && v.length ? v[0].value : null;
}

// Cumulative bucket counts of a histogram summed over its other labels, by upper bound.
function buckets(m, name) {
  const by = new Map();
  for (const x of m.get(`${name}_bucket`) ?? []) {
    const le = x.labels.le === '+Inf' ? Infinity : Number.parseFloat(x.labels.le);
    by.set(le, (by.get(le) ?? 0) + x.value);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

// As Prometheus' histogram_quantile: linear inside the bucket that holds the rank.
export function quantile(q, bks) {
  if (!bks.length) return null;
  const total = bks[bks.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of bks) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = count - prevCount;
      return inBucket > 0 ? prevLe + ((le - prevLe) * (rank - prevCount)) / inBucket : le;
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

function minus(cur, prev) {
  if (!prev) return cur;
  const p = new Map(prev);
  const d = cur.map(([le, c]) => [le, c - (p.get(le) ?? 0)]);
  // A restart between the scrapes makes counts go down: then take what there is now.
  return d.some(([, c]) => c < 0) ? cur : d;
}

// Figures from one scrape, and rates when the previous scrape is given. Shares of 5xx and
// 4xx are over the requests between the two scrapes (null when there were none; since the
// start on the first scrape). Percentiles are over the requests between the two scrapes
// when there were any, else since the start.
export function summarize(cur, prev, seconds) {
  const statusAt = (lo, hi) => (l) => {
    const s = Number.parseInt(l.status, 10);
    return s >= lo && s < hi;
  };
  const req = sum(cur, 'tollgate_requests_total');
  const e5 = sum(cur, 'tollgate_requests_total', statusAt(500, 600));
  // 499 is the client going away, not a refusal.
  const e4 = sum(cur, 'tollgate_requests_total', statusAt(400, 499));
  const out = {
    requests: req,
    inflight: one(cur, 'tollgate_inflight_requests'),
    rss: one(cur, 'tollgate_process_resident_memory_bytes'),
    started: one(cur, 'tollgate_process_start_time_seconds'),
    version: (cur.get('tollgate_build_info') ?? [])[0]?.labels.version ?? null,
    ledgerHealthy: one(cur, 'tollgate_ledger_healthy'),
    ledgerQueue: one(cur, 'tollgate_ledger_queue_depth'),
    rps: null,
    share5xx: req > 0 ? e5 / req : null,
    share4xx: req > 0 ? e4 / req : null,
  };
  let lat = buckets(cur, 'tollgate_request_duration_seconds');
  let ttft = buckets(cur, 'tollgate_time_to_first_token_seconds');
  if (prev && seconds > 0) {
    const preq = sum(prev, 'tollgate_requests_total');
    const dreq = req - preq;
    if (dreq >= 0) {
      out.rps = dreq / seconds;
      // No requests between the scrapes: no shares now (not the totals since the start).
      out.share5xx = null;
      out.share4xx = null;
      if (dreq > 0) {
        out.share5xx = (e5 - sum(prev, 'tollgate_requests_total', statusAt(500, 600))) / dreq;
        out.share4xx = (e4 - sum(prev, 'tollgate_requests_total', statusAt(400, 499))) / dreq;
        const dl = minus(lat, buckets(prev, 'tollgate_request_duration_seconds'));
        if (dl.length && dl[dl.length - 1][1] > 0) lat = dl;
        const dt = minus(ttft, buckets(prev, 'tollgate_time_to_first_token_seconds'));
        if (dt.length && dt[dt.length - 1][1] > 0) ttft = dt;
      }
    }
  }
  out.latency = [0.5, 0.95, 0.99].map((q) => quantile(q, lat));
  out.ttft = [0.5, 0.95, 0.99].map((q) => quantile(q, ttft));
  return out;
}
