// The one way the pages talk to the service: fetch with the tab's API key, problem+json errors as values a page can
// render, uploads with progress (XMLHttpRequest: fetch reports none), and server-sent events read from a fetch
// stream (EventSource cannot send the Authorization header), resumed with Last-Event-ID when the stream drops.

const KEY_STORAGE = "genserve.api-key";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

export const getKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  updateKeyButton();
}

// ---- errors ---------------------------------------------------------------------------------------------------

/** A failed call: `problem` is the problem+json body ({status, title, detail, errors, limit}); status 0 = no answer. */
export class ApiError extends Error {
  constructor(problem) {
    super(`${problem.status || ""} ${problem.title}: ${problem.detail}`.trim());
    this.problem = problem;
  }
  get status() {
    return this.problem.status;
  }
}

function networkError(cause) {
  return new ApiError({
    status: 0,
    title: "Network error",
    detail: `The service did not answer (${cause && cause.message ? cause.message : cause}). Is it running?`,
    errors: [],
  });
}

async function problemOf(response) {
  let body = {};
  const type = response.headers.get("content-type") || "";
  try {
    if (type.includes("json")) body = await response.json();
    else body = { detail: (await response.text()).slice(0, 1000) };
  } catch {
    body = {};
  }
  return {
    status: response.status,
    title: body.title || response.statusText || `HTTP ${response.status}`,
    detail: body.detail || "",
    errors: Array.isArray(body.errors) ? body.errors : [],
    errorCount: body.error_count,
    limit: body.limit,
    retryAfter: response.headers.get("retry-after"),
  };
}

/** Any error as an element: a problem body as the service said it (title, detail, each error's loc and msg). */
export function renderProblem(error) {
  const p =
    error instanceof ApiError
      ? error.problem
      : { status: null, title: "Something went wrong in the page", detail: String(error?.message || error), errors: [] };
  const box = h("div", { class: "problem", role: "alert" });
  box.append(h("p", { class: "problem-title" }, h("strong", {}, p.status ? `${p.status} ${p.title}` : p.title)));
  if (p.detail) box.append(h("p", { class: "problem-detail" }, p.detail));
  if (p.errors.length) {
    box.append(
      h(
        "ul",
        { class: "problem-errors" },
        p.errors.map((e) =>
          h("li", {}, h("code", { class: "loc" }, (e.loc || []).join(" › ")), " ", h("span", { class: "msg" }, e.msg)),
        ),
      ),
    );
  }
  const extra = [];
  if (p.errorCount) extra.push(`${p.errorCount} errors in all`);
  if (p.limit !== undefined && p.limit !== null) extra.push(`limit: ${p.limit}`);
  if (p.retryAfter) extra.push(`retry after ${p.retryAfter} s`);
  if (extra.length) box.append(h("p", { class: "muted small" }, extra.join(" · ")));
  return box;
}

/** Show `error` in `slot` (an element kept for a form's errors); `null` clears it. */
export function showError(slot, error) {
  slot.replaceChildren(...(error ? [renderProblem(error)] : []));
}

// ---- the key --------------------------------------------------------------------------------------------------

let asking = null; // one dialog for every call that met a 401 meanwhile

/** Ask for a key; resolves true when one was saved (the caller retries), false when the user canceled. */
export function askKey(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-reason").textContent = reason || "This service needs an API key.";
  input.value = getKey();
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        if (dialog.returnValue === "save" && input.value.trim()) {
          setKey(input.value.trim());
          resolve(true);
        } else {
          if (dialog.returnValue === "forget") setKey("");
          resolve(false);
        }
        input.value = "";
      },
      { once: true },
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
  return asking;
}

function updateKeyButton() {
  const button = document.getElementById("key-button");
  if (button) button.textContent = getKey() ? "Key ✓" : "Key";
}

export function initKeyButton(onChange) {
  updateKeyButton();
  document.getElementById("key-button").addEventListener("click", async () => {
    const had = getKey();
    await askKey("The key for the calls this page makes (a token made by `genserve keys new`).");
    if (getKey() !== had) onChange();
  });
}

function withKey(headers) {
  const all = new Headers(headers || {});
  const key = getKey();
  if (key) all.set("Authorization", `Bearer ${key}`);
  return all;
}

// ---- calls ----------------------------------------------------------------------------------------------------

/** fetch with the key; a 401 asks for one and tries again; any other error status throws an ApiError. */
export async function call(path, { method = "GET", json, body, headers, signal } = {}) {
  for (;;) {
    const sent = withKey(headers);
    let payload = body;
    if (json !== undefined) {
      sent.set("Content-Type", "application/json");
      payload = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, { method, headers: sent, body: payload, signal });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw networkError(e);
    }
    if (response.ok) return response;
    const problem = await problemOf(response);
    if (response.status === 401 && (await askKey(problem.detail))) continue;
    throw new ApiError(problem);
  }
}

export const getJSON = async (path, options) => (await call(path, options)).json();

/** POST a multipart form with upload progress: onProgress(sentBytes, totalBytes). Resolves {status, body}. */
export function upload(path, form, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : null));
    xhr.addEventListener("error", () => reject(networkError("the upload was cut off")));
    xhr.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    xhr.addEventListener("load", async () => {
      const response = new Response(xhr.status === 204 ? null : xhr.response, {
        status: xhr.status,
        statusText: xhr.statusText,
        headers: { "content-type": xhr.getResponseHeader("content-type") || "" },
      });
      if (response.ok) return resolve({ status: xhr.status, body: await response.json() });
      const problem = await problemOf(response);
      if (xhr.status === 401 && (await askKey(problem.detail))) {
        upload(path, form, onProgress, signal).then(resolve, reject);
      } else {
        reject(new ApiError(problem));
      }
    });
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

/**
 * Follow a server-sent event stream until its final `status` event: onEvent(name, data) for each event.
 * A dropped stream (network, 5xx) is resumed after the last event seen, with Last-Event-ID; onState("live" |
 * "reconnecting") says which. Resolves when the stream ended with a final status; rejects with an ApiError on a
 * 4xx (a 429 means too many open streams: the caller polls instead).
 */
export async function follow(path, { onEvent, onState = () => {}, signal }) {
  let lastId = null;
  let waitMs = 500;
  while (!signal?.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await call(path, { headers, signal });
      onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { name: "message", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (event.data.length) {
              if (event.id) lastId = event.id;
              const data = JSON.parse(event.data.join("\n"));
              onEvent(event.name, data);
              if (event.name === "status" && TERMINAL.has(data.status)) {
                reader.cancel().catch(() => {});
                return;
              }
            }
            event = { name: "message", data: [], id: null };
            waitMs = 500;
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.name = text;
            else if (field === "data") event.data.push(text);
            else if (field === "id") event.id = text;
          }
        }
      }
    } catch (e) {
      if (e.name === "AbortError" || signal?.aborted) return;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) throw e;
    }
    if (signal?.aborted) return;
    onState("reconnecting");
    await sleep(waitMs, signal);
    waitMs = Math.min(waitMs * 2, 5000);
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A blob URL for a fetched picture, revoked when the page that made it is left. */
export function blobUrl(blob, signal) {
  const url = URL.createObjectURL(blob);
  signal?.addEventListener("abort", () => URL.revokeObjectURL(url));
  return url;
}

/** A PNG the API answers (with the key, so not a plain <img src>) as an <img> showing its blob URL. */
export async function fetchImage(path, alt, signal) {
  const response = await call(path, { signal });
  const img = h("img", { alt, src: blobUrl(await response.blob(), signal) });
  return { img, response };
}

// ---- DOM and formatting ---------------------------------------------------------------------------------------

/** h("a", {href, class, onclick}, ...children): an element; children may be strings, elements, arrays or null. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const link = (href, text) => h("a", { href }, text);

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function number(x) {
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en");
  return Math.abs(x) >= 1000 || Math.abs(x) < 0.001 ? x.toExponential(3) : x.toPrecision(4);
}

export function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export const statusBadge = (status) => h("span", { class: `badge status-${status}` }, status);

/** A table from rows of cells (strings or elements); wrapped so a wide table scrolls by itself on a phone. */
export function table(head, rows, attrs = {}) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))),
      ),
    ),
  );
}

/** The form's fields as {name: value}, numbers as numbers, blank fields left out (the server's default applies). */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.value.trim() === "") continue;
    else if (el.type === "number") out[el.name] = Number(el.value);
    else out[el.name] = el.value.trim();
  }
  return out;
}
