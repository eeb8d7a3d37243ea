// The audit trail (admin only): every change made through the API, newest first — who (the token's name and
// scope), when, which operation on which resource, and the request body without secret values. Filters by
// resource path, token and operation live in the address; pages follow the API's cursor.

import { ApiError, api } from "../api.js";
import { badge, h, heading, json, shortId, table, time } from "../dom.js";
import { field, input } from "../forms.js";
import { navigate } from "../router.js";
import { pager } from "./shared.js";

const PAGE_SIZE = 50;
const FILTERS = [
  ["target", "Resource", "/jobs/<id>"],
  ["actor", "Token (name or jti)", "alice"],
  ["action", "Operation", "delete_job"],
];
// Resource paths of the API that have a page of their own in the UI (the rest have no page to open).
const PAGES = [/^\/(jobs|schedules|tasks|flows|instances)\/[0-9a-f-]{36}$/, /^\/flows\/[0-9a-f-]{36}\/runs\/([0-9a-f-]{36})$/];

export async function auditView({ query, signal }) {
  const filters = Object.fromEntries(FILTERS.map(([name]) => [name, query.get(name) || ""]));
  let page;
  try {
    page = await api.get("/audit", { ...filters, limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    return h("div", {}, heading("Audit trail"), h("p", { class: "notice" }, "The audit trail needs an admin token: this one may only read."));
  }
  return h(
    "div",
    {},
    heading("Audit trail"),
    h("p", { class: "muted" }, "Every change made through the API, newest first. Reads are not recorded."),
    filterForm(filters),
    table(
      [
        ["When", (entry) => time(entry.at)],
        ["Who", (entry) => h("span", {}, entry.actor, " ", badge(entry.scope), entry.actor_jti ? h("span", { class: "muted" }, " ", shortId(entry.actor_jti)) : null)],
        ["Operation", (entry) => h("code", {}, entry.action)],
        ["Resource", (entry) => target(entry.target)],
        ["Request", (entry) => h("code", { class: "muted", title: `${entry.method} ${entry.path}` }, entry.method, " ", requestTail(entry))],
        ["Body", (entry) => (Object.keys(entry.summary).length ? h("details", {}, h("summary", {}, "show"), json(entry.summary)) : "—")],
      ],
      page.items,
      { empty: Object.values(filters).some(Boolean) ? "No change matches." : "No change recorded yet." },
    ),
    pager("/audit", query, page.next_cursor),
  );
}

const UUIDS = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** A path with each id cut to its last 8 characters, as ids are shown everywhere in the UI. */
function short(path) {
  return path.replace(UUIDS, (id) => `…${id.slice(-8)}`);
}

/** What the request's path adds to its resource ("…/trigger"), or the path when it is the resource's own. */
function requestTail(entry) {
  const own = `/api/v1${entry.target}`;
  return entry.path.startsWith(own) && entry.path !== own ? `…${entry.path.slice(own.length)}` : short(entry.path);
}

/** A resource path, linked to its page in the UI when it has one, and to its own trail. */
function target(path) {
  const run = PAGES[1].exec(path);
  const href = run ? `/flow-runs/${run[1]}` : PAGES[0].test(path) ? path : null;
  const code = h("code", { title: path }, short(path));
  const trail = h("a", { href: `/audit?target=${encodeURIComponent(path)}`, class: "muted", title: "Every change of this resource" }, "trail");
  return h("span", {}, href ? h("a", { href }, code) : code, " ", trail);
}

function filterForm(filters) {
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the audit trail" },
    h("div", { class: "grid" }, FILTERS.map(([name, label, placeholder]) => field(label, input(name, { value: filters[name], placeholder, autocomplete: "off" })))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn" }, "Apply"), h("a", { href: "/audit", class: "btn link" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name] of FILTERS) {
      const text = form.elements.namedItem(name).value.trim();
      if (text) params.set(name, text);
    }
    navigate(params.toString() ? `/audit?${params}` : "/audit");
  });
  return form;
}
