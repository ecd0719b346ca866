// The admin API, with the key kept in this tab's sessionStorage (gone when the tab closes).

const KEY = "momently.adminKey";
const listeners = new Set();

export function adminKey() {
  return sessionStorage.getItem(KEY);
}

export function setAdminKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetAdminKey() {
  sessionStorage.removeItem(KEY);
}

/** Called with the error when the server refuses the key (401). */
export function onUnauthorized(listener) {
  listeners.add(listener);
}

export class ApiError extends Error {
  constructor(status, body, path) {
    const reason = body && typeof body === "object" ? body.reason || body.message : null;
    super(reason ? `${reason} (${status})` : `HTTP ${status} from ${path}`);
    this.status = status;
    this.body = body;
    this.path = path;
  }

  /** A route this server does not have (yet): shown as "not available", not as a failure. */
  get missing() {
    return this.status === 404 && (!this.body || this.body.reason === "Not Found") ||
      this.status === 405 || this.status === 501;
  }
}

/**
 * Call the admin API: api("/api/stats"), api("/api/live/token", {method: "POST"}),
 * api("/metrics", {text: true}).
 */
export async function api(path, {method = "GET", body, text = false, signal} = {}) {
  const headers = {Authorization: `Bearer ${adminKey() ?? ""}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, signal, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) {
    let detail = null;
    try {
      detail = await answer.json();
    } catch {
      detail = null;
    }
    const error = new ApiError(answer.status, detail, path);
    if (answer.status === 401) for (const listener of listeners) listener(error);
    throw error;
  }
  return text ? answer.text() : answer.json();
}

/** Like api(), but a route the server lacks gives null instead of an error. */
export async function optional(path, options) {
  try {
    return await api(path, options);
  } catch (error) {
    if (error instanceof ApiError && error.missing) return null;
    throw error;
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const enc = encodeURIComponent;
