// DOM helpers shared by the views: an element builder, formatters, tables, badges and notices.
//
// Everything is built with createElement and text nodes, never by parsing HTML, so no stored value (a job name,
// a log line) can ever become markup. Styles come from style.css only: the Content-Security-Policy refuses
// inline styles in markup.

import { session } from "./api.js";

/**
 * An element: h("a", { href: "/x", class: "btn", onclick: fn, "aria-label": "..." }, "text", child, [more]).
 * Keys starting with "on" add listeners; true/false toggle boolean attributes; null/undefined are skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  let value = null;
  for (const [key, prop] of Object.entries(props || {})) {
    if (prop === null || prop === undefined || prop === false) continue;
    if (key.startsWith("on") && typeof prop === "function") {
      node.addEventListener(key.slice(2), prop);
    } else if (key === "value") {
      value = prop; // after the children: a <select> takes a value only once its options exist
    } else if (key === "checked" || key === "selected") {
      node[key] = Boolean(prop);
    } else {
      node.setAttribute(key, prop === true ? "" : String(prop));
    }
  }
  append(node, children);
  if (value !== null) node.value = value;
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

const pad2 = (n) => String(n).padStart(2, "0");

/** "+01:00" for an offset of ``minutes`` east of UTC. */
function offsetText(minutes) {
  const sign = minutes < 0 ? "-" : "+";
  const size = Math.abs(minutes);
  return `${sign}${pad2(Math.floor(size / 60))}:${pad2(size % 60)}`;
}

/** The browser's time zone name ("Europe/Paris"). */
export function zoneName() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

/**
 * The one way the UI writes an instant: "2026-03-08 03:00:00 -04:00" — in the browser's zone, or in ``zone``
 * (an IANA name, for a schedule's own clock), always with its UTC offset.
 */
export function timeText(iso, zone) {
  const date = new Date(iso);
  if (!zone) {
    return (
      `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} ` +
      `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())} ${offsetText(-date.getTimezoneOffset())}`
    );
  }
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "longOffset",
    }).formatToParts(date).map((part) => [part.type, part.value]),
  );
  const offset = parts.timeZoneName === "GMT" ? "+00:00" : parts.timeZoneName.replace("GMT", "");
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${offset}`;
}

/**
 * A time the API wrote with its own offset (a schedule's fire time, "2026-03-08T03:00:00-04:00") in the
 * UI's format, keeping that offset: the wall-clock time of the schedule's zone.
 */
export function offsetTimeText(text) {
  const found = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (!found) return text;
  return `${found[1]} ${found[2]} ${found[3] === "Z" ? "+00:00" : found[3]}`;
}

/** An instant as a <time>: the UI's format (see timeText), the exact instant in its datetime and title. */
export function time(iso, zone) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: `${new Date(iso).toISOString()} (UTC); shown in ${zone || zoneName()}` }, timeText(iso, zone));
}

/** "in 5 min", "in 3 h" for a time ahead. */
export function until(iso) {
  const secs = Math.max(0, (new Date(iso).getTime() - Date.now()) / 1000);
  return secs < 60 ? `in ${Math.round(secs)} s` : secs < 3600 ? `in ${Math.round(secs / 60)} min` : secs < 86400 ? `in ${Math.round(secs / 3600)} h` : `in ${Math.round(secs / 86400)} d`;
}

/** "12 s ago", "3 min ago" ... for heartbeats. */
export function ago(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  const secs = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  const text =
    secs < 60 ? `${Math.round(secs)} s ago` : secs < 3600 ? `${Math.round(secs / 60)} min ago`
      : secs < 86400 ? `${Math.round(secs / 3600)} h ago` : `${Math.round(secs / 86400)} d ago`;
  return h("time", { datetime: iso, title: iso }, text);
}

export function duration(secs) {
  if (secs === null || secs === undefined) return "—";
  if (secs < 0.001) return "< 1 ms";
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 120) return `${secs.toFixed(secs < 10 ? 2 : 1)} s`;
  const whole = Math.round(secs);
  const [hours, minutes, rest] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  if (hours) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

export function bytes(count) {
  if (count === null || count === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** The last 8 characters of a UUID, with the whole id in a title. The first ones of a UUIDv7 are its
 * creation time, shared by every id made in the same minute; the last ones are random. */
export function shortId(id) {
  return h("code", { title: id }, String(id).slice(-8));
}

/** A status word as a coloured badge (colour from the status, the word itself always shown). */
export function badge(status) {
  return h("span", { class: `badge s-${status}` }, String(status).replace("_", " "));
}

/** Labels as key=value chips. */
export function labels(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "chips" }, entries.map(([key, value]) => h("li", {}, `${key}=${value}`)));
}

/** A JSON value, pretty-printed in a <pre>. */
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A definition list from [term, value] pairs (null values are left out). */
export function details(pairs) {
  return h(
    "dl",
    { class: "details" },
    pairs.filter(([, value]) => value !== null && value !== undefined).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

/**
 * A table: columns are [header, (row) => cell content]; ``empty`` is shown when there are no rows.
 */
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([header]) => h("th", { scope: "col" }, header)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))),
    ),
  );
}

/** A page heading with optional actions beside it. */
export function heading(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, title), h("div", { class: "actions" }, actions));
}

export function section(title, ...children) {
  return h("section", { class: "panel", "aria-label": title }, h("h2", {}, title), children);
}

const WRITE_HINT = "Needs an admin token";

/**
 * A button for an action that changes something: disabled for read-only tokens (and when ``disabled``).
 * While ``onClick`` runs the button is busy; an error goes to the notice area.
 */
export function writeButton(label, onClick, { kind = "", disabled = false, title, key } = {}) {
  const readOnly = !session.canWrite;
  const button = h(
    "button",
    {
      type: "button",
      class: `btn ${kind}`.trim(),
      "data-write": "",
      "data-key": key,
      disabled: readOnly || disabled,
      title: readOnly ? WRITE_HINT : title,
    },
    label,
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await onClick();
    } catch (error) {
      notify(error.message || String(error), "error");
    } finally {
      button.removeAttribute("aria-busy");
      if (button.isConnected) button.disabled = readOnly || disabled;
    }
  });
  return button;
}

const CONFIRM_MS = 5000;

/**
 * A write button for something that cannot be undone (a delete): the first click asks, by turning into
 * "Confirm: <label>" for a few seconds; only a second click runs ``onConfirm``. No modal dialog, so keyboard
 * and screen-reader users stay on the button.
 */
export function confirmButton(label, onConfirm, options = {}) {
  let armed = null;
  const button = writeButton(label, async () => {
    if (!armed) {
      button.textContent = `Confirm: ${label.toLowerCase()}`;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("armed");
      }, CONFIRM_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    await onConfirm();
  }, { kind: "danger", ...options });
  return button;
}

/** The submit button of a form that changes something (disabled for read-only tokens). */
export function submitButton(label) {
  const readOnly = !session.canWrite;
  return h("button", { type: "submit", class: "btn primary", "data-write": "", disabled: readOnly, title: readOnly ? WRITE_HINT : null }, label);
}

let noticeTimer = null;

/** A short message in the polite live region at the top of the page. */
export function notify(message, kind = "info") {
  const region = document.getElementById("notice");
  if (!region) return;
  region.replaceChildren(h("p", { class: `notice ${kind}` }, message));
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => region.replaceChildren(), kind === "error" ? 10000 : 4000);
}

/** The message of an error for a person: the problem's detail, or the error's text. */
export function errorText(error) {
  return error && error.detail ? `${error.title}: ${error.detail}` : String(error?.message || error);
}

/** An error panel for a view that could not load. */
export function errorPanel(error) {
  return h("div", { class: "notice error", role: "alert" }, errorText(error));
}

/**
 * Run ``fn`` now and every ``ms`` milliseconds until ``signal`` aborts; skipped while the tab is hidden.
 * A failing run is shown once in the notice area and retried on the next tick.
 */
export function every(ms, fn, signal) {
  const timer = setInterval(async () => {
    if (document.hidden || signal.aborted) return;
    try {
      await fn();
    } catch (error) {
      if (error.name !== "AbortError") notify(errorText(error), "error");
    }
  }, ms);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

/** Replace the children of ``container``; the focused element with a data-key keeps the focus across it. */
export function replaceKeepingFocus(container, ...nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  container.replaceChildren(...nodes);
  if (key) container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

/** Debounce ``fn`` by ``ms`` milliseconds. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
