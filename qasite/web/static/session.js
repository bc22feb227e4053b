// @ts-check
/**
 * The signed-in user and the Q&A core's HTTP API.
 *
 * The session (access token, refresh token, user) lives in localStorage so that every tab of
 * the site shares it; refreshing is done under a Web Lock, because refresh tokens rotate: two
 * tabs refreshing with the same token at once would log the user out.
 */

const KEY = 'herald.session';
/** Refresh the access token this long before it expires. */
const MARGIN_S = 30;

/**
 * @typedef {object} User
 * @property {number} id
 * @property {string} email
 * @property {string} display_name
 * @property {boolean} verified
 */

/**
 * @typedef {object} Session
 * @property {string} access
 * @property {number} accessExpiresAt  seconds since the Unix epoch
 * @property {string} refresh
 * @property {User} user
 */

/**
 * @typedef {object} Tokens
 * @property {string} access_token
 * @property {number} expires_at
 * @property {string} refresh_token
 */

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} reason
   * @param {string} message
   */
  constructor(status, reason, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
  }
}

/** @returns {Session | null} */
export function loadSession() {
  try {
    const raw = localStorage.getItem(KEY);
    if (raw === null) return null;
    const value = /** @type {Session} */ (JSON.parse(raw));
    return typeof value.access === 'string' && typeof value.user?.id === 'number' ? value : null;
  } catch {
    return null;
  }
}

/** @param {Session | null} session */
function saveSession(session) {
  if (session === null) localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, JSON.stringify(session));
}

/**
 * @param {string} path
 * @param {{ method?: string, body?: unknown, token?: string | null }} [init]
 * @returns {Promise<Response>}
 */
function send(path, { method = 'GET', body, token = null } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  return fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
}

/**
 * The response's JSON, or an ApiError built from the Q&A core's error shape.
 * @param {Response} response
 * @returns {Promise<any>}
 */
async function parse(response) {
  if (response.status === 204) return null;
  /** @type {any} */
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error;
    const message = Array.isArray(error?.problems) && error.problems.length > 0 ? inWords(error.problems) : error?.message;
    throw new ApiError(response.status, error?.reason ?? 'error', message ?? response.statusText);
  }
  return data;
}

/**
 * A 422's problems for a person: each field by its name ("Tags: …", not "body.tags.0: …").
 * @param {{ where?: unknown, problem?: unknown }[]} problems
 */
function inWords(problems) {
  return problems
    .slice(0, 5)
    .map(({ where, problem }) => {
      const parts = String(where ?? '').split('.').filter((part) => part !== '' && !['body', 'query', 'path'].includes(part) && !/^\d+$/.test(part));
      const field = parts.length === 0 ? '' : parts[parts.length - 1].replaceAll('_', ' ');
      const text = String(problem ?? 'invalid');
      return field === '' ? text : `${field[0].toUpperCase()}${field.slice(1)}: ${text}`;
    })
    .join('; ');
}

/**
 * A valid access token, refreshed when it is about to expire (or when `force`); null when
 * signed out or when the refresh token is no longer accepted (the session is then cleared).
 * @param {boolean} [force]
 * @returns {Promise<string | null>}
 */
export async function accessToken(force = false) {
  const session = loadSession();
  if (session === null) return null;
  if (!force && session.accessExpiresAt - Date.now() / 1000 > MARGIN_S) return session.access;
  const refresh = async () => {
    const current = loadSession(); // another tab may have refreshed while we waited
    if (current === null) return null;
    if (current.access !== session.access && current.accessExpiresAt - Date.now() / 1000 > MARGIN_S) {
      return current.access;
    }
    const response = await send('/api/auth/refresh', { method: 'POST', body: { refresh_token: current.refresh } });
    if (response.status === 401) {
      saveSession(null);
      return null;
    }
    /** @type {Tokens} */
    const tokens = await parse(response);
    saveSession({ ...current, access: tokens.access_token, accessExpiresAt: tokens.expires_at, refresh: tokens.refresh_token });
    return tokens.access_token;
  };
  return 'locks' in navigator ? navigator.locks.request(KEY, refresh) : refresh();
}

/**
 * Call the API; signed-in calls carry the access token (refreshed once on a 401).
 * @param {string} path
 * @param {{ method?: string, body?: unknown }} [init]
 * @returns {Promise<any>}
 */
export async function api(path, init = {}) {
  let token = await accessToken();
  let response = await send(path, { ...init, token });
  if (response.status === 401 && token !== null) {
    token = await accessToken(true);
    response = await send(path, { ...init, token });
  }
  return parse(response);
}

/**
 * Log in with email and password; stores the session.
 * @param {string} email
 * @param {string} password
 * @returns {Promise<Session>}
 */
export async function logIn(email, password) {
  /** @type {Tokens} */
  const tokens = await parse(await send('/api/auth/login', { method: 'POST', body: { email, password } }));
  /** @type {User} */
  const user = await parse(await send('/api/auth/me', { token: tokens.access_token }));
  const session = { access: tokens.access_token, accessExpiresAt: tokens.expires_at, refresh: tokens.refresh_token, user };
  saveSession(session);
  return session;
}

/** Log out: revoke the refresh token and the access token (best effort), forget the session. */
export async function logOut() {
  const session = loadSession();
  saveSession(null);
  if (session !== null) {
    await send('/api/auth/logout', { method: 'POST', body: { refresh_token: session.refresh }, token: session.access }).catch(() => null);
  }
}

/**
 * The connection token for the socket fleet: a JWT for the signed-in user, null when anonymous.
 * @returns {Promise<string | null>}
 */
export async function socketToken() {
  /** @type {{ token: string | null }} */
  const result = await api('/api/socket-token', { method: 'POST' });
  return result.token;
}
