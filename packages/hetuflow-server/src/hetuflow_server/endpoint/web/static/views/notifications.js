// Notification deliveries: one record per outcome told to one target (a webhook or email recipient of the
// server's configuration), newest first — its status, attempts, the last answer and error, and the body sent.
// Filters by status, target, job and task live in the address; pages follow the API's cursor.

import { api } from "../api.js";
import { badge, h, heading, json, shortId, table, time } from "../dom.js";
import { field, input, select } from "../forms.js";
import { navigate } from "../router.js";
import { jobName, jobNames, pager } from "./shared.js";

const PAGE_SIZE = 50;
const STATUSES = ["pending", "sending", "delivered", "failed"];
const FILTERS = ["status", "target", "job_id", "task_id"];

export async function notificationsView({ query, signal }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
  const [page, names] = await Promise.all([
    api.get("/notifications/deliveries", { ...filters, limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
    jobNames(signal),
  ]);
  return h(
    "div",
    {},
    heading("Notifications"),
    h("p", { class: "muted" }, "What was told to whom, newest first. A job names its targets and the outcomes they hear about under Notifications in its form; the targets themselves are in the server's configuration."),
    filterForm(filters, names),
    table(
      [
        ["Created", (d) => time(d.created_at)],
        ["Outcome", (d) => badge(d.event)],
        ["Target", (d) => h("code", {}, d.target)],
        ["Job", (d) => (d.job_id ? h("a", { href: `/jobs/${d.job_id}` }, jobName(names, d.job_id)) : "—")],
        ["Task", (d) => (d.task_id ? h("a", { href: `/tasks/${d.task_id}` }, shortId(d.task_id)) : "—")],
        ["Status", (d) => badge(d.status)],
        ["Attempts", (d) => String(d.attempts)],
        ["Answer", (d) => (d.response_code === null ? "—" : String(d.response_code))],
        ["Error", (d) => d.error || "—"],
        ["Ended", (d) => (d.completed_at ? time(d.completed_at) : h("span", { class: "muted" }, "next try ", time(d.next_attempt_at)))],
        ["Body", (d) => h("details", {}, h("summary", {}, "show"), json(d.payload))],
      ],
      page.items,
      { empty: Object.values(filters).some(Boolean) ? "No delivery matches." : "Nothing sent yet." },
    ),
    pager("/notifications", query, page.next_cursor),
  );
}

function filterForm(filters, names) {
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter deliveries" },
    h(
      "div",
      { class: "grid" },
      field("Status", select("status", [["", "any"], ...STATUSES], filters.status)),
      field("Target", input("target", { value: filters.target, placeholder: "ops-hook", autocomplete: "off" })),
      field("Job", select("job_id", [["", "any job"], ...names], filters.job_id), { wide: true }),
      field("Task id", input("task_id", { value: filters.task_id, autocomplete: "off" })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn" }, "Apply"), h("a", { href: "/notifications", class: "btn link" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const text = form.elements.namedItem(name).value.trim();
      if (text) params.set(name, text);
    }
    navigate(params.toString() ? `/notifications?${params}` : "/notifications");
  });
  return form;
}
