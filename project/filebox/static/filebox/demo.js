// The secure_ws demo page: log in, list folders, upload/delete files, watch events live.
// Tokens live in memory only (never localStorage, never a URL); every user-supplied
// string is rendered with textContent.

const $ = (selector, root = document) => root.querySelector(selector);
const params = new URLSearchParams(window.location.search);

const session = { access: null, refresh: null, username: null, refreshing: null };
let socket = null;
const folders = new Map(); // slug -> {element, access, files: Map(file_id -> li)}
// How long a transient error (a refused upload or delete) stays before it fades out.
const ERROR_FADE_MS = 4000;
const fadeTimers = new WeakMap();

function tokenExp(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="))).exp;
  } catch {
    return 0;
  }
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}

async function refreshAccess() {
  if (!session.refreshing) {
    session.refreshing = (async () => {
      const { ok, data } = await postJson("/api/token/refresh/", { refresh: session.refresh });
      if (!ok) throw new Error("session expired");
      session.access = data.access;
      if (data.refresh) session.refresh = data.refresh; // rotated
      return session.access;
    })().finally(() => {
      session.refreshing = null;
    });
  }
  return session.refreshing;
}

// The callback the client asks for a token: the current one, or a fresh one when the
// current one was refused, expires within 5 s, or the client wants to refresh.
async function getToken({ fresh }) {
  if (fresh || tokenExp(session.access) * 1000 - Date.now() < 5000) return refreshAccess();
  return session.access;
}

async function api(method, url, body) {
  const call = () =>
    fetch(url, { method, body, headers: { Authorization: `Bearer ${session.access}` } });
  let response = await call();
  if (response.status === 401) {
    await refreshAccess();
    response = await call();
  }
  return response;
}

// A transient error fades after ERROR_FADE_MS; a lasting one (lost access, a refused
// login) stays until the next message replaces it.
function showError(element, text, { transient = false } = {}) {
  clearTimeout(fadeTimers.get(element));
  element.classList.remove("fading");
  element.textContent = text;
  element.hidden = !text;
  if (text && transient) {
    fadeTimers.set(
      element,
      setTimeout(() => {
        element.classList.add("fading");
        fadeTimers.set(element, setTimeout(() => showError(element, ""), 600));
      }, ERROR_FADE_MS),
    );
  }
}

function formatSize(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

function logEvent(kind, text) {
  const item = document.createElement("li");
  item.className = `event ${kind}`;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const body = document.createElement("span");
  body.textContent = text;
  item.append(time, body);
  $("#events").prepend(item);
}

function setConnectionState(state) {
  const badge = $("#connection-state");
  badge.textContent = state;
  badge.dataset.state = state;
}

function renderFile(slug, file) {
  const folder = folders.get(slug);
  if (!folder || folder.files.has(file.file_id)) return;
  const item = document.createElement("li");
  item.className = "file";
  item.dataset.fileId = file.file_id;
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = file.name;
  const size = document.createElement("span");
  size.className = "muted";
  size.textContent = formatSize(file.size);
  item.append(name, size);
  if (folder.access === "write") {
    // Read-only members get no controls the server would refuse anyway.
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link delete-button";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => deleteFile(slug, file.file_id));
    item.append(remove);
  }
  $(".files", folder.element).prepend(item);
  folder.files.set(file.file_id, item);
}

// Remove a file from the list; return its name as listed (null if it was not listed).
function removeFile(slug, fileId) {
  const folder = folders.get(slug);
  const item = folder?.files.get(fileId);
  if (!item) return null;
  item.remove();
  folder.files.delete(fileId);
  return $(".file-name", item).textContent;
}

async function uploadFile(slug, form) {
  const folder = folders.get(slug);
  const errorBox = $(".folder-error", folder.element);
  showError(errorBox, "");
  const data = new FormData(form);
  const response = await api("POST", `/api/folders/${encodeURIComponent(slug)}/files/`, data);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = body.detail || (body.file && body.file.join(" ")) || response.statusText;
    showError(errorBox, `Upload refused: ${detail}`, { transient: true });
    return;
  }
  form.reset();
  renderFile(slug, body);
}

async function deleteFile(slug, fileId) {
  const folder = folders.get(slug);
  const errorBox = $(".folder-error", folder.element);
  showError(errorBox, "");
  const url = `/api/folders/${encodeURIComponent(slug)}/files/${encodeURIComponent(fileId)}/`;
  const response = await api("DELETE", url);
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    showError(errorBox, `Delete refused: ${body.detail || response.statusText}`, {
      transient: true,
    });
    return;
  }
  removeFile(slug, fileId);
}

function renderFolders(list) {
  const container = $("#folders");
  container.replaceChildren();
  folders.clear();
  $("#no-folders").hidden = list.length > 0;
  for (const entry of list) {
    const element = $("#folder-template").content.firstElementChild.cloneNode(true);
    element.dataset.folder = entry.folder;
    $(".folder-name", element).textContent = entry.name || entry.folder;
    $(".access", element).textContent = entry.access === "write" ? "read & write" : "read only";
    element.dataset.access = entry.access;
    const form = $(".upload", element);
    if (entry.access === "write") {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        uploadFile(entry.folder, form);
      });
    } else {
      form.remove();
    }
    container.append(element);
    folders.set(entry.folder, { element, access: entry.access, files: new Map() });
  }
}

async function subscribeAll() {
  for (const slug of folders.keys()) {
    delete folders.get(slug).element.dataset.live;
    try {
      await socket.request("subscribe", { folder: slug });
      // One folder.state page (at most 100 files); its next_offset would ask for more.
      const state = await socket.request("resync", { folder: slug });
      for (const file of [...state.files].reverse()) renderFile(slug, file);
      folders.get(slug).element.dataset.live = "true";
    } catch (error) {
      showError($(".folder-error", folders.get(slug).element), `Live events unavailable: ${error.code}`);
    }
  }
}

function who(sender) {
  return sender && sender.username ? sender.username : "someone";
}

async function start() {
  const { SecureSocket } = await import(document.body.dataset.clientUrl);
  const response = await api("GET", "/api/folders/");
  renderFolders(response.ok ? await response.json() : []);
  socket = new SecureSocket(document.body.dataset.wsPath, {
    getToken,
    refresh: params.get("refresh") !== "off",
  });
  socket.on("state", setConnectionState);
  socket.on("open", () => {
    $("#reconnects").textContent = String(socket.reconnects);
    subscribeAll();
  });
  socket.on("refreshed", () => {
    const counter = $("#refreshes");
    counter.textContent = String(Number(counter.textContent) + 1);
  });
  socket.on("close", ({ code, reason, action }) => {
    logEvent("close", `connection closed (${code}${reason ? ` ${reason}` : ""}), ${action}`);
  });
  socket.on("file.uploaded", (event) => {
    renderFile(event.folder, event);
    logEvent("uploaded", `${who(event.sender)} uploaded ${event.name} to ${event.folder}`);
  });
  socket.on("file.deleted", (event) => {
    const listed = removeFile(event.folder, event.file_id);
    const name = event.name || listed || "a file";
    logEvent("deleted", `${who(event.sender)} deleted ${name} from ${event.folder}`);
  });
  socket.on("folder.revoked", ({ folder }) => {
    // The server stopped this folder's events: the user's read access ended.
    const entry = folders.get(folder);
    if (entry) {
      delete entry.element.dataset.live;
      showError($(".folder-error", entry.element), "Your access to this folder ended.");
    }
    logEvent("revoked", `access to ${folder} ended`);
  });
  socket.connect();
}

function stop() {
  if (socket) socket.close();
  socket = null;
  Object.assign(session, { access: null, refresh: null, username: null });
  $("#app").hidden = true;
  $("#status").hidden = true;
  $("#login-panel").hidden = false;
  $("#events").replaceChildren();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const errorBox = $("#login-error");
  showError(errorBox, "");
  const username = $("#username").value;
  const { ok, data } = await postJson("/api/token/", { username, password: $("#password").value });
  if (!ok) {
    showError(errorBox, data.detail || "Login failed.");
    return;
  }
  Object.assign(session, { access: data.access, refresh: data.refresh, username });
  $("#password").value = "";
  $("#who").textContent = username;
  $("#login-panel").hidden = true;
  $("#status").hidden = false;
  $("#app").hidden = false;
  start().catch(() => showError(errorBox, "Could not start the live connection."));
});

$("#logout").addEventListener("click", async () => {
  // Blacklisting the refresh token also closes this login session's sockets (sid).
  if (session.refresh) await postJson("/api/token/blacklist/", { refresh: session.refresh });
  stop();
});
