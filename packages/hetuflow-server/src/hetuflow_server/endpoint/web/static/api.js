// The REST client of the UI: bearer token from the session, JSON in and out, problem+json errors as ApiError.
//
// The token lives in sessionStorage (this tab only, gone when it closes). A 401 anywhere clears it and fires
// the "hetuflow:unauthorized" window event, on which the app returns to the login page.

export const API = "/api/v1";
const TOKEN_KEY = "hetuflow.token";
const SCOPE_KEY = "hetuflow.scope";
export const UNAUTHORIZED_EVENT = "hetuflow:unauthorized";

/** An error answer of the API, carrying its RFC 9457 problem. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.type = problem.type || "about:blank";
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

/** The signed-in token and what it may do. */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  get scope() {
    return sessionStorage.getItem(SCOPE_KEY);
  },
  /** Whether the token may change things (an admin token); read tokens see write buttons disabled. */
  get canWrite() {
    return this.scope === "admin";
  },
  save(token, scope) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(SCOPE_KEY, scope);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SCOPE_KEY);
  },
};

/** "?a=1&s=x&s=y" from an object; arrays repeat the key, empty values are left out. */
export function queryString(params = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") search.append(key, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** The headers of an authenticated call with ``token`` (default: the session's). */
export function authHeaders(token = session.token, extra = {}) {
  return { Accept: "application/json", Authorization: `Bearer ${token}`, ...extra };
}

/** The ApiError for a failed response (its problem body when it has one). */
export async function errorOf(response) {
  let problem = { title: response.statusText };
  try {
    problem = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  return new ApiError(response.status, problem);
}

/** Report a 401: the session is over. */
export function unauthorized() {
  session.clear();
  window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
}

/**
 * One API call. ``path`` is below /api/v1; ``query`` an object for queryString; ``body`` is sent as JSON.
 * Answers the decoded JSON (null for 204). Throws ApiError for an error answer.
 */
export async function request(method, path, { query, body, signal, token } = {}) {
  const headers = authHeaders(token ?? session.token);
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${API}${path}${queryString(query)}`, init);
  if (response.status === 401 && token === undefined) unauthorized();
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

export const api = {
  get: (path, query, options = {}) => request("GET", path, { ...options, query }),
  post: (path, body, options = {}) => request("POST", path, { ...options, body }),
  patch: (path, body, options = {}) => request("PATCH", path, { ...options, body }),
  delete: (path, options = {}) => request("DELETE", path, options),
};

/**
 * What ``token`` may do: "admin" or "read". Listing servers needs read scope, listing tokens admin scope,
 * so two read-only calls tell them apart without changing anything. Throws ApiError when the token is refused
 * (401) or is an agent token (403 on both).
 */
export async function probeScope(token) {
  await request("GET", "/servers", { query: { limit: 1 }, token });
  try {
    await request("GET", "/tokens", { query: { limit: 1 }, token });
    return "admin";
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return "read";
    throw error;
  }
}

/** Every item of a listing, following cursors up to ``max`` items (for small lookups like job names). */
export async function listAll(path, query = {}, { signal, max = 5000 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api.get(path, { ...query, limit: 1000, cursor }, { signal });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
