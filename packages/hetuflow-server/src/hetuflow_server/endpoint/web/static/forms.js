// Form building blocks: labelled fields named by the JSON path of the body field they fill, value parsing,
// and validation errors shown beside their field.
//
// A field for body field ``config.timeout_secs`` is named "config.timeout_secs"; the API reports a bad value
// there as ``{"path": "$.config.timeout_secs", ...}`` and the client-side checks use the same paths, so one
// routine puts every error next to the field it is about (or, for a path no field owns, in the summary).

import { h, errorText } from "./dom.js";

let counter = 0;

/** Errors found before sending, shaped like the API's: [{path: "$.field", message}]. */
export class FieldErrors extends Error {
  constructor(errors) {
    super(errors.map((error) => `${error.path}: ${error.message}`).join("; "));
    this.name = "FieldErrors";
    this.errors = errors;
  }
}

/**
 * A labelled control with optional help text and a slot for its error. ``wide``: the whole row of a grid (for a
 * select of names, which cannot wrap).
 */
export function field(label, control, { help, hidden = false, wide = false } = {}) {
  const id = `f${(counter += 1)}`;
  control.id = id;
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  control.setAttribute("aria-describedby", help ? `${helpId} ${errorId}` : errorId);
  return h(
    "div",
    { class: wide ? "field wide" : "field", "data-field": control.name, hidden },
    h("label", { for: id }, label),
    control,
    help ? h("p", { class: "help", id: helpId }, help) : null,
    h("p", { class: "field-error", id: errorId }),
  );
}

export function input(name, { type = "text", value = "", ...attrs } = {}) {
  return h("input", { name, type, value: value ?? "", ...attrs });
}

export function textarea(name, { value = "", rows = 3, ...attrs } = {}) {
  return h("textarea", { name, rows, spellcheck: "false", ...attrs, value: value ?? "" });
}

/** A <select> of ``options`` (strings, or [value, label] pairs). */
export function select(name, options, value, attrs = {}) {
  return h(
    "select",
    { name, ...attrs, value: value ?? "" },
    options.map((option) => {
      const [optionValue, label] = Array.isArray(option) ? option : [option, option];
      return h("option", { value: optionValue }, label);
    }),
  );
}

/** A group of checkboxes sharing ``name`` (for repeatable filters). */
export function checkboxes(legend, name, options, checked) {
  return h(
    "fieldset",
    { class: "checks" },
    h("legend", {}, legend),
    options.map((option) =>
      h("label", {}, h("input", { type: "checkbox", name, value: option, checked: checked.includes(option) }), ` ${option.replace("_", " ")}`),
    ),
  );
}

/** The trimmed value of control ``name`` of ``form`` ("" when absent). */
export function value(form, name) {
  const control = form.elements.namedItem(name);
  return control ? String(control.value).trim() : "";
}

/** A number from control ``name``, or null when empty; a FieldErrors entry in ``errors`` when not a number. */
export function number(form, name, errors, { integer = false } = {}) {
  const text = value(form, name);
  if (text === "") return null;
  const parsed = Number(text);
  if (!Number.isFinite(parsed) || (integer && !Number.isInteger(parsed))) {
    errors.push({ path: `$.${name}`, message: integer ? "must be a whole number" : "must be a number" });
    return null;
  }
  return parsed;
}

/** Non-empty lines of control ``name``, untrimmed inside (an argument may hold spaces). */
export function lines(form, name) {
  const control = form.elements.namedItem(name);
  return String(control ? control.value : "")
    .split(/\r?\n/)
    .filter((line) => line.trim() !== "");
}

/** An object from KEY=VALUE lines (or comma-separated pairs when ``commas``) of control ``name``. */
export function keyValues(form, name, errors, { commas = false } = {}) {
  const result = {};
  const parts = commas ? lines(form, name).flatMap((line) => line.split(",")) : lines(form, name);
  for (const part of parts) {
    const text = commas ? part.trim() : part;
    if (!text) continue;
    const at = text.indexOf("=");
    if (at <= 0) {
      errors.push({ path: `$.${name}`, message: `"${text}" is not KEY=VALUE` });
      continue;
    }
    result[text.slice(0, at).trim()] = text.slice(at + 1);
  }
  return result;
}

/** KEY=VALUE lines for an object (the inverse of keyValues). */
export function keyValueText(map, separator = "\n") {
  return Object.entries(map || {})
    .map(([key, item]) => `${key}=${item}`)
    .join(separator);
}

/** A JSON object from control ``name`` ({} when empty). */
export function jsonObject(form, name, errors) {
  const text = value(form, name);
  if (text === "") return {};
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed;
    errors.push({ path: `$.${name}`, message: "must be a JSON object, like {\"key\": \"value\"}" });
  } catch (error) {
    errors.push({ path: `$.${name}`, message: `not valid JSON (${error.message})` });
  }
  return {};
}

/** The instant of a datetime-local control (the browser's time zone) as RFC 3339 UTC, or null when empty. */
export function instant(form, name, errors) {
  const text = value(form, name);
  if (text === "") return null;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    errors.push({ path: `$.${name}`, message: "not a date and time" });
    return null;
  }
  return date.toISOString();
}

/** The datetime-local text for an RFC 3339 instant, in the browser's time zone ("" for null). */
export function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const offsetMs = date.getTimezoneOffset() * 60000;
  return new Date(date.getTime() - offsetMs).toISOString().slice(0, 19);
}

/** Run ``action`` when ``form`` is submitted; what it throws (FieldErrors, ApiError) is shown on the form. */
export function onSubmit(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await action();
    } catch (error) {
      showErrors(form, error);
    }
  });
}

/** Throw FieldErrors when ``errors`` is not empty. */
export function check(errors) {
  if (errors.length) throw new FieldErrors(errors);
}

/** The error summary slot of a form (put it before the submit button). */
export function summary() {
  return h("div", { class: "form-errors", role: "alert" });
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  const box = form.querySelector(".form-errors");
  if (box) box.replaceChildren();
}

/**
 * Show ``error`` (FieldErrors or ApiError) on ``form``: each field error beside the field owning its path
 * (the longest path prefix a field is named by), the rest in the summary; focus the first bad field.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const box = form.querySelector(".form-errors");
  const unplaced = [];
  let first = null;
  for (const item of error.errors || []) {
    const owner = fieldFor(form, item.path);
    if (!owner) {
      unplaced.push(`${item.path}: ${item.message}`);
      continue;
    }
    const control = owner.querySelector("input, select, textarea");
    control.setAttribute("aria-invalid", "true");
    const slot = owner.querySelector(".field-error");
    slot.textContent = slot.textContent ? `${slot.textContent}; ${item.message}` : item.message;
    first = first || control;
  }
  const messages = [];
  if (!(error instanceof FieldErrors)) {
    // The problem's detail repeats the field errors: name it only when no field shows one.
    messages.push(first ? `${error.title}: see the marked fields.` : errorText(error));
  }
  messages.push(...unplaced);
  if (box) box.replaceChildren(...messages.map((message) => h("p", {}, message)));
  if (first) first.focus();
}

function fieldFor(form, path) {
  let name = String(path || "").replace(/^\$\.?/, "");
  while (name) {
    const owner = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (owner) return owner;
    const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
    name = cut > 0 ? name.slice(0, cut) : "";
  }
  return null;
}
