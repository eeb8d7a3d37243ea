// Tasks: the filterable, cursor-paged list (filters live in the URL, so a filtered page can be bookmarked)
// and one task with its attempts, cancel and retry. Both refresh while work is in flight.
//
// Schedules plan their runs ahead of time, so the list has two views: History (the default: tasks whose time
// has come — what ran or is running — newest first) and Upcoming (pending runs not yet due, soonest first).

import { api, session } from "../api.js";
import { badge, bytes, details, every, h, heading, json, notify, section, shortId, table, time, writeButton } from "../dom.js";
import { checkboxes, field, input, instant, localInput, select } from "../forms.js";
import { navigate } from "../router.js";
import { fillDurations, jobName, jobNames, pager, runTime, tasksTable, upcomingTable } from "./shared.js";

const STATUSES = ["pending", "dispatched", "running", "waiting_retry", "succeeded", "failed", "cancelled", "skipped"];
const OPEN = new Set(["pending", "dispatched", "running", "waiting_retry"]);
const RETRYABLE = new Set(["failed", "cancelled", "skipped"]);
const FILTERS = ["job_id", "schedule_id", "agent_id", "flow_run_id", "scheduled_after", "scheduled_before"];
const PAGE_SIZE = 50;
const LIST_REFRESH_MS = 5000;
const TASK_REFRESH_MS = 2000;

/** The later (or earlier) of two RFC 3339 instants, either of which may be missing. */
function bound(a, b, pick) {
  if (!a) return b;
  if (!b) return a;
  return pick(new Date(a).getTime(), new Date(b).getTime()) === new Date(a).getTime() ? a : b;
}

export async function tasksView({ query, signal }) {
  const upcoming = query.get("view") === "upcoming";
  const names = await jobNames(signal);
  const base = { limit: PAGE_SIZE, cursor: query.get("cursor") };
  for (const name of FILTERS) base[name] = query.get(name);
  // "now" is taken at each load, so a refresh moves tasks that came due from Upcoming into History.
  const filter = () => {
    const now = new Date().toISOString();
    return upcoming
      ? { ...base, status: "pending", order: "asc", scheduled_after: bound(base.scheduled_after, now, Math.max) }
      : { ...base, status: query.getAll("status"), scheduled_before: bound(base.scheduled_before, now, Math.min) };
  };
  const results = h("div", { "aria-live": "polite" });
  let shown = null;
  const load = async () => {
    const page = await api.get("/tasks", filter(), { signal });
    const key = JSON.stringify(page);
    if (key === shown) return; // unchanged: keep the DOM (and the reader's focus) as it is
    shown = key;
    const list = upcoming ? upcomingTable(page.items, names, { empty: "Nothing planned." }) : tasksTable(page.items, names, { empty: "No task matches." });
    results.replaceChildren(list, pager("/tasks", query, page.next_cursor));
    fillDurations(results, signal); // after the rows are shown: the durations follow
  };
  await load();
  // Only the first page refreshes: a later page would shift under the reader as new tasks arrive.
  if (!base.cursor) every(LIST_REFRESH_MS, load, signal);
  const intro = upcoming
    ? "Runs planned ahead by schedules (or triggered for later), soonest first. They move to History when due."
    : "What ran or is running, newest first. Runs planned ahead are under Upcoming.";
  return h("div", {}, heading("Tasks"), viewTabs(query, upcoming), h("p", { class: "muted" }, intro), filterForm(query, names, upcoming), results);
}

function viewTabs(query, upcoming) {
  const keep = new URLSearchParams();
  for (const name of ["job_id", "schedule_id", "agent_id", "flow_run_id"]) if (query.get(name)) keep.set(name, query.get(name));
  const history = keep.toString();
  keep.set("view", "upcoming");
  return h(
    "nav",
    { class: "tabs", "aria-label": "Task views" },
    h("a", { href: history ? `/tasks?${history}` : "/tasks", "aria-current": upcoming ? null : "page" }, "History"),
    h("a", { href: `/tasks?${keep}`, "aria-current": upcoming ? "page" : null }, "Upcoming"),
  );
}

function filterForm(query, names, upcoming) {
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter tasks" },
    upcoming ? null : checkboxes("Status", "status", STATUSES, query.getAll("status")),
    h(
      "div",
      { class: "grid" },
      field("Job", select("job_id", [["", "any job"], ...names], query.get("job_id") || ""), { wide: true }),
      field("Agent", input("agent_id", { value: query.get("agent_id") || "", autocomplete: "off" })),
      field("Scheduled from", input("scheduled_after", { type: "datetime-local", step: 1, value: localInput(query.get("scheduled_after")) })),
      field("Scheduled before", input("scheduled_before", { type: "datetime-local", step: 1, value: localInput(query.get("scheduled_before")) })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn" }, "Apply"), h("a", { href: upcoming ? "/tasks?view=upcoming" : "/tasks", class: "btn link" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (upcoming) params.set("view", "upcoming");
    for (const box of form.querySelectorAll("input[name=status]:checked")) params.append("status", box.value);
    const errors = [];
    const values = {
      job_id: form.elements.namedItem("job_id").value,
      agent_id: form.elements.namedItem("agent_id").value.trim(),
      scheduled_after: instant(form, "scheduled_after", errors),
      scheduled_before: instant(form, "scheduled_before", errors),
      schedule_id: query.get("schedule_id"),
      flow_run_id: query.get("flow_run_id"),
    };
    for (const [name, item] of Object.entries(values)) if (item) params.set(name, item);
    const text = params.toString();
    navigate(text ? `/tasks?${text}` : "/tasks");
  });
  return form;
}

export async function taskView({ params, signal, reload }) {
  const body = h("div");
  const names = await jobNames(signal);
  let shown = null;
  const load = async () => {
    const [task, instances] = await Promise.all([
      api.get(`/tasks/${params.id}`, {}, { signal }),
      api.get(`/tasks/${params.id}/instances`, { limit: 1000 }, { signal }),
    ]);
    const key = JSON.stringify([task, instances]);
    if (key !== shown) {
      shown = key;
      body.replaceChildren(...taskParts(task, instances.items, names, reload));
    }
    return task;
  };
  const task = await load();
  if (OPEN.has(task.status)) {
    const refresh = new AbortController();
    signal.addEventListener("abort", () => refresh.abort(), { once: true });
    every(TASK_REFRESH_MS, async () => {
      if (!OPEN.has((await load()).status)) refresh.abort();
    }, refresh.signal);
  }
  return body;
}

function taskParts(task, instances, names, reload) {
  const cancel = writeButton("Cancel", async () => {
    await api.post(`/tasks/${task.id}/cancel`);
    notify("Task cancelled.");
    await reload();
  }, { disabled: !OPEN.has(task.status), kind: "danger" });
  const retry = writeButton("Retry", async () => {
    const created = await api.post(`/tasks/${task.id}/retry`);
    notify("New task created.");
    navigate(`/tasks/${created.id}`);
  }, { disabled: !RETRYABLE.has(task.status) });
  return [
    heading(h("span", {}, "Task ", shortId(task.id)), badge(task.status), cancel, retry),
    section(
      "Task",
      details([
        ["Job", h("a", { href: `/jobs/${task.job_id}` }, jobName(names, task.job_id))],
        ["Status", badge(task.status)],
        ["Schedule", task.schedule_id ? h("a", { href: `/schedules/${task.schedule_id}` }, shortId(task.schedule_id)) : "manual or event"],
        ["Flow run", task.flow_run_id ? h("a", { href: `/flow-runs/${task.flow_run_id}`, class: "flow-run-link", title: "The run: every step and how it stands" }, shortId(task.flow_run_id)) : null],
        ["Step", task.flow_step],
        ["Scheduled", time(task.scheduled_at)],
        ["Attempt", String(task.attempt)],
        ["Next attempt", task.next_attempt_at ? time(task.next_attempt_at) : null],
        ["Agent", task.agent_id],
        ["Priority", String(task.priority)],
        ["Depends on", task.depends_on.length ? h("ul", {}, task.depends_on.map((id) => h("li", {}, h("a", { href: `/tasks/${id}` }, shortId(id))))) : null],
        ["Error", task.error ? h("pre", { class: "code" }, task.error) : null],
        ["Parameters", json(task.parameters)],
        ["Completed", task.completed_at ? time(task.completed_at) : null],
      ]),
    ),
    section(
      "Attempts",
      table(
        [
          ["Attempt", (i) => h("a", { href: `/instances/${i.id}` }, `#${i.attempt}`)],
          ["Agent", (i) => i.agent_id],
          ["Status", (i) => badge(i.status)],
          ["Exit", (i) => (i.exit_code === null ? (i.signal ? `signal ${i.signal}` : "—") : String(i.exit_code))],
          ["Started", (i) => time(i.started_at)],
          ["Duration", runTime],
          ["Peak memory", (i) => bytes(i.metrics?.peak_rss_bytes)],
          ["Log", (i) => h("a", { href: `/instances/${i.id}` }, "View log")],
        ],
        instances,
        { empty: "Not dispatched yet." },
      ),
    ),
    session.canWrite ? null : h("p", { class: "muted" }, "Read-only token: cancel and retry need an admin token."),
  ].filter(Boolean); // replaceChildren(...) would write a null as the text "null"
}
