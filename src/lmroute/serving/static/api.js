// Calls to the lmroute server, with the API key the user typed (never one written into the page).
// Paths are relative to the page (/ui), so the console also works under a proxy's path prefix.

const KEY_STORE = "lmroute-console-key";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor() {
    // Session storage only: the key is gone when the tab closes, and is never sent anywhere else.
    this.key = sessionStorage.getItem(KEY_STORE) || "";
    this.onUnauthorized = () => {};
  }

  setKey(key) {
    this.key = key;
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  }

  // {status, headers, data (parsed JSON or null), text, ms}; ApiError with the server's message on failure.
  // A JSON endpoint (json: true) that answers something else fails too: a proxy's sign-in page, say.
  async request(path, { method = "GET", body, json = true } = {}) {
    const headers = {};
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const start = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(`the server did not answer (${err.message})`, 0);
    }
    const text = await response.text();
    const ms = performance.now() - start;
    let data = null;
    try { data = JSON.parse(text); } catch { /* /metrics is text; errors from a proxy may be HTML */ }
    if (!response.ok) {
      if (response.status === 401) this.onUnauthorized();
      const message = data && data.error && data.error.message
        ? data.error.message : `HTTP ${response.status} ${response.statusText}`.trim();
      throw new ApiError(message, response.status);
    }
    if (json && (data === null || typeof data !== "object")) {
      const type = (response.headers.get("content-type") || "no content type").split(";")[0];
      throw new ApiError(`${path} answered HTTP ${response.status} with ${type}, not JSON: `
        + "is something other than lmroute (a proxy) answering?", response.status);
    }
    return { status: response.status, headers: response.headers, data, text, ms };
  }

  post(path, body) { return this.request(path, { method: "POST", body }); }
}
