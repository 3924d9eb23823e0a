// The admin API, as the console calls it: the token from the browser session (never in a
// URL, never in localStorage) as `Authorization: Bearer`, JSON in and out, errors in the
// gateway's error shape turned into ApiError.

const TOKEN = 'tollgate.adminToken';

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(t) {
  sessionStorage.setItem(TOKEN, t);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onRefused = () => {};

// Called when the admin API refuses the token (it was changed, or it was wrong).
export function whenRefused(f) {
  onRefused = f;
}

async function call(method, path, body, as, t) {
  const used = t ?? token() ?? '';
  const headers = { Authorization: `Bearer ${used}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'The gateway did not answer. Is it running?');
  }
  const text = await res.text();
  const json = (res.headers.get('content-type') || '').startsWith('application/json');
  let data = null;
  if (json && text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = data && data.error;
    const e = new ApiError(res.status, err?.code ?? null, err?.message ?? `HTTP ${res.status}`);
    // Only when the token refused is still the one kept (a late answer to a call made
    // before a new sign-in must not sign the new session out).
    if (res.status === 401 && t === undefined && used === token()) onRefused(e);
    throw e;
  }
  if (as === 'text') return text;
  return data;
}

export const get = (path) => call('GET', path);
export const getText = (path) => call('GET', path, undefined, 'text');
export const post = (path, body) => call('POST', path, body);
export const patch = (path, body) => call('PATCH', path, body);
export const del = (path) => call('DELETE', path);

// Tries a token without keeping it: resolves when the admin API takes it.
export function check(t) {
  return call('GET', '/admin/config', undefined, 'json', t);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
