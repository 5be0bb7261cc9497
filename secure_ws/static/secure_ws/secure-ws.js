/**
 * secure-ws.js: the browser client of the secure-ws.v1 protocol (no dependencies).
 *
 *   import { SecureSocket } from "/static/secure_ws/secure-ws.js";
 *   const socket = new SecureSocket("/ws/files/", {
 *     getToken: async ({ fresh }) => fresh ? await refreshAccessToken() : accessToken,
 *   });
 *   socket.on("file.uploaded", (payload) => render(payload));
 *   socket.on("open", () => socket.request("subscribe", { folder: "team" }));
 *   socket.connect();
 *
 * Credentials: the access token travels as the `bearer.<jwt>` subprotocol entry (never in
 * the URL), or, with `ticketUrl`, a one-time ticket is fetched by a CSRF-protected POST and
 * spent as `?ticket=` (worthless after the handshake). Tokens are never logged and never
 * appear in an error message.
 *
 * Lifetime: the token is refreshed before it expires and handed to the open connection with
 * `auth.refresh`; on close 4401 a fresh token is fetched and the client reconnects; on 4403
 * it stops for good; on 1006/1011/1013/4429 (and the 40xx stand-ins daphne sends for 10xx)
 * it reconnects with exponential backoff and jitter. The attempt counter is only reset once
 * a connection has stayed open for `stableAfter` ms, so a server that accepts and closes at
 * once cannot cause a reconnect storm.
 */

/** The application subprotocol (secure_ws.codes.APP_SUBPROTOCOL). */
export const APP_SUBPROTOCOL = "secure-ws.v1";

/** Prefix of the subprotocol entry carrying the access token (BEARER_SUBPROTOCOL_PREFIX). */
export const BEARER_SUBPROTOCOL_PREFIX = "bearer.";

/** Close codes (secure_ws.codes.CloseCode). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  ABNORMAL: 1006, // set by the browser: no close frame (e.g. handshake refused with 403)
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  IDLE_TIMEOUT: 4408,
  RATE_LIMITED: 4429,
});

/** Error codes of `error` frames (secure_ws.codes.ErrorCode). */
export const ErrorCode = Object.freeze({
  INVALID_JSON: "invalid_json",
  INVALID_MESSAGE: "invalid_message",
  UNKNOWN_TYPE: "unknown_type",
  FORBIDDEN: "forbidden",
  RATE_LIMITED: "rate_limited",
  TOO_LARGE: "too_large",
  SERVER_ERROR: "server_error",
});

/** Server message types that answer a request carrying an `id`. */
const REPLY_TYPES = new Set(["ack", "pong", "folder.state", "error"]);

/**
 * Map daphne's 4xxx stand-in of a standard code back to it (4011 -> 1011).
 * Mirrors secure_ws.codes.private_close_code.
 */
export function standardCloseCode(code) {
  return code >= 4000 && code < 4400 ? 1000 + (code % 1000) : code;
}

/** What the client does after a close with `code`: "reconnect", "reauth", "stop" or "idle". */
export function closeAction(code) {
  const standard = standardCloseCode(code);
  switch (standard) {
    case CloseCode.UNAUTHORIZED:
      return "reauth";
    case CloseCode.FORBIDDEN:
    case CloseCode.NORMAL:
    case CloseCode.UNSUPPORTED_DATA:
    case CloseCode.POLICY_VIOLATION:
    case CloseCode.MESSAGE_TOO_BIG:
      return "stop";
    case CloseCode.IDLE_TIMEOUT:
      return "idle";
    default:
      // 1001, 1006, 1011, 1013, 4429 and anything unknown: try again, slowly.
      return "reconnect";
  }
}

/** An `error` frame, a timeout or a lost connection, as a rejected request sees it. */
export class SecureSocketError extends Error {
  constructor(code, detail, errors) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "SecureSocketError";
    this.code = code;
    this.detail = detail || "";
    this.errors = errors || [];
  }
}

/** Read `exp` (and `iat`) from a JWT without verifying it: only to schedule a refresh. */
function tokenTimes(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return { exp: Number(claims.exp) || null, iat: Number(claims.iat) || null };
  } catch {
    return { exp: null, iat: null };
  }
}

function readCookie(name) {
  for (const item of document.cookie.split(";")) {
    const [key, ...rest] = item.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

const DEFAULTS = Object.freeze({
  getToken: null, // async ({ fresh }) => access token; fresh: the current one was refused/expiring
  ticketUrl: null, // e.g. "/api/ws-ticket/": authenticate with a one-time ticket instead
  csrfToken: () => readCookie("csrftoken"), // for the ticket POST with session auth
  refresh: true, // send auth.refresh before the token expires
  refreshMargin: 30000, // ms before exp to refresh (at most a third of the token's life)
  requestTimeout: 10000, // ms
  initialDelay: 500, // ms, first backoff step
  maxDelay: 30000, // ms, backoff ceiling
  rateLimitedDelay: 5000, // ms, least wait after 4429
  stableAfter: 10000, // ms a connection must stay open before the backoff resets
  WebSocket: typeof WebSocket === "undefined" ? null : WebSocket,
});

/**
 * One logical connection to a secure_ws endpoint that survives reconnects.
 *
 * Events (`on(type, callback)`): every server message type (`file.uploaded`, ...) with its
 * payload; `open`; `close` ({code, reason, action}); `state` (connecting, open,
 * reconnecting, idle, stopped); `refreshed` ({expiresIn}); `error` (SecureSocketError for an
 * `error` frame without id, or the failure of the token callback).
 */
export class SecureSocket {
  constructor(url, options = {}) {
    this.options = { ...DEFAULTS, ...options };
    if (!this.options.getToken && !this.options.ticketUrl) {
      throw new TypeError("SecureSocket needs getToken or ticketUrl");
    }
    this.url = SecureSocket.resolveUrl(url);
    this.state = "idle";
    this.reconnects = 0; // completed reconnections, for pages and tests
    this._listeners = new Map();
    this._pending = new Map();
    this._waiting = [];
    this._nextId = 1;
    this._attempt = 0;
    this._ws = null;
    this._token = null;
    this._timers = { reconnect: null, refresh: null, stable: null };
    this._refreshing = null;
    this._lastError = null;
  }

  /** Turn a path (`/ws/files/`) into a ws:// or wss:// URL of the page's host. */
  static resolveUrl(url) {
    const resolved = new URL(url, window.location.href);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.toString();
  }

  /** Register `callback` for an event type; returns a function that removes it. */
  on(type, callback) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(callback);
    return () => this._listeners.get(type).delete(callback);
  }

  _emit(type, detail) {
    for (const callback of this._listeners.get(type) || []) {
      try {
        callback(detail);
      } catch (error) {
        // A page callback must not break the socket; report without payload data.
        console.error(`secure-ws: ${type} listener failed`, error);
      }
    }
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", state);
    }
  }

  /** Open the connection (again, after `close()` or an idle timeout). */
  connect() {
    if (this._ws || this._timers.reconnect) return;
    this._stopped = false;
    this._open(false);
  }

  /** Close for good: no reconnect until `connect()` is called again. */
  close(code = CloseCode.NORMAL) {
    this._stopped = true;
    this._clearTimers();
    if (this._ws) this._ws.close(code);
    this._setState("stopped");
  }

  /**
   * Send `{type, id, payload}` and resolve with the reply's payload (`ack`, `pong`, ...).
   * Rejects with a SecureSocketError: the server's `error` code, `timeout` or `closed`.
   * A request made while (re)connecting waits for the connection within its timeout.
   */
  request(type, payload = {}, { timeout } = {}) {
    const id = `r${this._nextId++}`;
    const frame = JSON.stringify({ type, id, payload });
    if (this.state === "stopped") {
      return Promise.reject(new SecureSocketError("closed", "the connection was stopped"));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        this._waiting = this._waiting.filter((item) => item.id !== id);
        reject(new SecureSocketError("timeout", `no reply to ${type}`));
      }, timeout ?? this.options.requestTimeout);
      this._pending.set(id, { resolve, reject, timer });
      if (this.state === "open") {
        this._ws.send(frame);
      } else {
        this._waiting.push({ id, frame });
        if (this.state === "idle") this.connect();
      }
    });
  }

  /** Send a message that expects no reply. */
  send(type, payload = {}) {
    if (this.state !== "open") throw new SecureSocketError("closed", "not connected");
    this._ws.send(JSON.stringify({ type, payload }));
  }

  async _credentials(fresh) {
    if (this.options.ticketUrl) {
      return { query: await this._fetchTicket(), protocols: [APP_SUBPROTOCOL] };
    }
    this._token = await this.options.getToken({ fresh });
    if (!this._token) throw new SecureSocketError("credentials_missing", "no access token");
    return { query: null, protocols: [APP_SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + this._token] };
  }

  async _fetchTicket() {
    const headers = { "X-CSRFToken": this.options.csrfToken() };
    if (this.options.getToken) {
      headers.Authorization = `Bearer ${await this.options.getToken({ fresh: false })}`;
    }
    const response = await fetch(this.options.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers,
    });
    if (!response.ok) {
      throw new SecureSocketError("ticket_refused", `ticket endpoint answered ${response.status}`);
    }
    const body = await response.json();
    return body.ticket;
  }

  async _open(fresh) {
    this._setState(this.reconnects || this._attempt ? "reconnecting" : "connecting");
    let credentials;
    try {
      credentials = await this._credentials(fresh);
    } catch (error) {
      // Without credentials there is nothing to retry with: the page must log in again.
      this._emit("error", error instanceof SecureSocketError ? error : new SecureSocketError("credentials_failed", "token callback failed"));
      this._stop();
      return;
    }
    if (this._stopped) return;
    let url = this.url;
    if (credentials.query) {
      const target = new URL(url);
      target.searchParams.set("ticket", credentials.query);
      url = target.toString();
    }
    const ws = new this.options.WebSocket(url, credentials.protocols);
    this._ws = ws;
    this._lastError = null;
    ws.addEventListener("open", () => this._onOpen(ws));
    ws.addEventListener("message", (event) => this._onMessage(event));
    ws.addEventListener("close", (event) => this._onClose(ws, event));
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    if (ws.protocol !== APP_SUBPROTOCOL) {
      // A server that selected anything else (a bearer entry!) is not one of ours.
      ws.close(CloseCode.NORMAL);
      return;
    }
    if (this._attempt > 0 || this._hadConnection) this.reconnects += 1;
    this._hadConnection = true;
    this._timers.stable = setTimeout(() => {
      this._attempt = 0;
    }, this.options.stableAfter);
    this._setState("open");
    for (const { frame } of this._waiting.splice(0)) ws.send(frame);
    this._scheduleRefresh(null);
    this._emit("open");
  }

  _onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    const { type, id, payload } = message;
    if (type === "error") this._lastError = payload?.code || null;
    if (id && REPLY_TYPES.has(type) && this._pending.has(id)) {
      const { resolve, reject, timer } = this._pending.get(id);
      this._pending.delete(id);
      clearTimeout(timer);
      if (type === "error") {
        reject(new SecureSocketError(payload.code, payload.detail, payload.errors));
      } else {
        resolve(payload ?? {});
      }
      return;
    }
    if (type === "auth.expiring") {
      // A hint: make sure a refresh happens before the server's deadline.
      this._scheduleRefresh(Number(payload?.expires_in) * 1000);
    }
    if (type === "error") {
      this._emit("error", new SecureSocketError(payload.code, payload.detail, payload.errors));
    }
    this._emit(type, payload);
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this._ws = null;
    clearTimeout(this._timers.refresh);
    clearTimeout(this._timers.stable);
    this._timers.refresh = null;
    for (const [id, { reject, timer }] of this._pending) {
      if (!this._waiting.some((item) => item.id === id)) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new SecureSocketError("closed", "connection closed"));
      }
    }
    const action = this._stopped ? "stop" : closeAction(event.code);
    this._emit("close", { code: event.code, reason: event.reason || this._lastError || "", action });
    if (action === "stop") {
      this._stop();
    } else if (action === "idle") {
      this._setState("idle");
    } else {
      this._scheduleReconnect(event.code, action === "reauth");
    }
  }

  _stop() {
    this._stopped = true;
    this._clearTimers();
    this._setState("stopped");
  }

  _clearTimers() {
    for (const name of Object.keys(this._timers)) {
      clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  _backoffDelay(code) {
    const { initialDelay, maxDelay, rateLimitedDelay } = this.options;
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** this._attempt);
    let delay = ceiling / 2 + (Math.random() * ceiling) / 2; // "equal jitter"
    if (code === CloseCode.RATE_LIMITED) delay = Math.max(delay, rateLimitedDelay);
    return delay;
  }

  _scheduleReconnect(code, fresh) {
    // The first reconnect after an expired token is immediate; every other one waits.
    const delay = fresh && this._attempt === 0 ? 0 : this._backoffDelay(code);
    this._attempt += 1;
    this._setState("reconnecting");
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._stopped) this._open(fresh);
    }, delay);
  }

  /** Plan the next auth.refresh: before the token's exp, or before `deadline` ms. */
  _scheduleRefresh(deadline) {
    if (!this.options.refresh || !this.options.getToken || this.state !== "open") return;
    let remaining = deadline;
    if (remaining === null) {
      if (!this._token) return;
      const { exp, iat } = tokenTimes(this._token);
      if (!exp) return;
      remaining = exp * 1000 - Date.now();
      if (iat) remaining = Math.min(remaining, (exp - iat) * 1000); // client clock ahead
    }
    const delay = Math.max(0, remaining - Math.min(this.options.refreshMargin, remaining / 3));
    if (this._timers.refresh && deadline !== null && this._refreshAt <= Date.now() + delay) {
      return; // already planned early enough
    }
    clearTimeout(this._timers.refresh);
    this._refreshAt = Date.now() + delay;
    this._timers.refresh = setTimeout(() => this.refreshNow(), delay);
  }

  /** Fetch a fresh token from the page and move the open connection's expiry to it. */
  refreshNow() {
    if (this._refreshing) return this._refreshing;
    this._timers.refresh = null;
    this._refreshing = (async () => {
      try {
        const token = await this.options.getToken({ fresh: true });
        if (!token || this.state !== "open") return;
        this._token = token;
        const ack = await this.request("auth.refresh", { token });
        this._scheduleRefresh(Number(ack.expires_in) * 1000);
        this._emit("refreshed", { expiresIn: Number(ack.expires_in) });
      } catch (error) {
        // The server closes with 4401 at exp; the reconnect path then takes over.
        this._emit("error", error instanceof SecureSocketError ? error : new SecureSocketError("refresh_failed", "token refresh failed"));
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }
}
