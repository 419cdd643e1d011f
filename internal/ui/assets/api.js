// The admin API (/v1) as the dashboard calls it: same origin, the user's
// bearer token from sessionStorage, JSON errors turned into APIError.
const tokenKey = 'ebb.token';

export function token() { return sessionStorage.getItem(tokenKey) || ''; }
export function setToken(t) { sessionStorage.setItem(tokenKey, t.trim()); }
export function forgetToken() { sessionStorage.removeItem(tokenKey); }

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// get returns the decoded body of GET path; with opts.optional, a 404 or
// 405 (a route this server does not have) returns null instead.
export async function get(path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  let resp;
  try {
    resp = await fetch(path, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    throw new APIError(0, 'network', `cannot reach the server (${e.message}): is ebb running?`);
  }
  if (opts.optional && (resp.status === 404 || resp.status === 405)) {
    return null;
  }
  let body = null;
  try { body = await resp.json(); } catch { body = null; }
  if (!resp.ok) {
    const e = (body && body.error) || {};
    throw new APIError(resp.status, e.code || '', e.message || `${resp.status} ${resp.statusText}`);
  }
  return body;
}

// enc escapes one path segment.
export const enc = encodeURIComponent;
