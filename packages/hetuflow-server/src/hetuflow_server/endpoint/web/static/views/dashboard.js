// The dashboard: tasks by status over the last day, agents and servers, and the latest failures.
// Refreshed every 15 s while open.

import { api, listAll } from "../api.js";
import { ago, badge, every, h, heading, section, shortId, table, time } from "../dom.js";
import { jobName, jobNames } from "./shared.js";

const TASK_STATUSES = ["pending", "dispatched", "running", "waiting_retry", "succeeded", "failed", "cancelled", "skipped"];
const COUNT_LIMIT = 100;
const WINDOW_MS = 24 * 3600 * 1000;
const REFRESH_MS = 15000;

export async function dashboardView({ signal }) {
  const body = h("div", { class: "dashboard" });
  const load = async () => body.replaceChildren(...(await panels(signal)));
  await load();
  every(REFRESH_MS, load, signal);
  return h("div", {}, heading("Dashboard"), body);
}

async function panels(signal) {
  // The API has no count endpoint: each status is one page of at most COUNT_LIMIT tasks of the last day.
  const since = new Date(Date.now() - WINDOW_MS).toISOString();
  const [counts, agents, servers, failures, names] = await Promise.all([
    Promise.all(TASK_STATUSES.map((status) => api.get("/tasks", { status, scheduled_after: since, limit: COUNT_LIMIT }, { signal }))),
    listAll("/agents", {}, { signal }),
    api.get("/servers", { limit: 100 }, { signal }),
    api.get("/tasks", { status: "failed", limit: 10 }, { signal }),
    jobNames(signal),
  ]);
  const taskCards = TASK_STATUSES.map((status, index) => {
    const page = counts[index];
    const text = `${page.items.length}${page.next_cursor ? "+" : ""}`;
    return h("li", {}, h("a", { href: `/tasks?status=${status}`, class: "stat" }, h("span", { class: "stat-value" }, text), badge(status)));
  });
  const byStatus = (status) => agents.filter((agent) => agent.status === status).length;
  const agentCards = ["online", "draining", "disabled", "offline"].map((status) =>
    h("li", {}, h("a", { href: "/agents", class: "stat" }, h("span", { class: "stat-value" }, String(byStatus(status))), badge(status))),
  );
  return [
    section("Tasks in the last 24 h", h("ul", { class: "stats", "aria-label": "Tasks by status" }, taskCards)),
    section("Agents", h("ul", { class: "stats", "aria-label": "Agents by status" }, agentCards)),
    section(
      "Servers",
      table(
        [
          ["Name", (s) => s.name],
          ["Address", (s) => s.address || "—"],
          ["Status", (s) => badge(s.status)],
          ["Leader", (s) => (s.is_leader ? "yes" : "")],
          ["Heartbeat", (s) => ago(s.last_heartbeat_at)],
        ],
        servers.items,
      ),
    ),
    section(
      "Recent failures",
      table(
        [
          ["Task", (t) => h("a", { href: `/tasks/${t.id}` }, shortId(t.id))],
          ["Job", (t) => h("a", { href: `/jobs/${t.job_id}` }, jobName(names, t.job_id))],
          ["Scheduled", (t) => time(t.scheduled_at)],
          ["Attempt", (t) => String(t.attempt)],
          ["Error", (t) => t.error || "—"],
        ],
        failures.items,
        { empty: "No failed tasks." },
      ),
    ),
  ];
}
