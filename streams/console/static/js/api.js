// The console's JSON API (/api/, docs/console.md): one fetch wrapper that sends the CSRF
// header on every state-changing call and turns error bodies into ApiError.
let csrf = "";
let onSignedOut = () => {};

// Called when the session is gone (expired, signed out elsewhere): the page asks to sign in again
export function setOnSignedOut(fn) {
  onSignedOut = fn;
}

export function setCsrf(token) {
  csrf = token || "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || "";
    this.problems = (body && body.problems) || [];
    this.retryAfter = 0;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    const error = new ApiError(0, { error: "network", message: String(exc) });
    throw error;
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if ((response.status === 401 && path !== "/api/login" && path !== "/api/me") || error.code === "csrf") onSignedOut();
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
