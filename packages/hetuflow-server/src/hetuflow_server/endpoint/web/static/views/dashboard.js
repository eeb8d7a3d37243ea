// The dashboard: what is open right now, runs per hour by outcome, failure rate and run times per job, agents'
// load (all from the server's /stats aggregates, drawn as SVG by chart.js), servers and the latest failures.
// Refreshed every 15 s while open; ?window=7d shows the last 7 days instead of 24 hours.

import { api } from "../api.js";
import { barRows, stackedBars } from "../chart.js";
import { ago, badge, duration, every, h, heading, section, shortId, table, time, timeText } from "../dom.js";
import { jobName, jobNames } from "./shared.js";

const REFRESH_MS = 15000;
const WINDOWS = { "24h": "24 h", "7d": "7 days" };
const OUTCOMES = [
  ["succeeded", "succeeded"],
  ["failed", "failed"],
  ["cancelled", "cancelled"],
  ["skipped", "skipped"],
  ["running", "running"],
  ["waiting", "waiting for an agent or a retry"],
];

export async function dashboardView({ query, signal }) {
  const range = query.get("window") === "7d" ? "7d" : "24h";
  const body = h("div", { class: "dashboard" });
  const load = async () => body.replaceChildren(...(await panels(range, signal)));
  await load();
  every(REFRESH_MS, load, signal);
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Time window" },
    Object.entries(WINDOWS).map(([key, label]) => h("a", { href: key === "24h" ? "/" : `/?window=${key}`, "aria-current": key === range ? "page" : null }, `Last ${label}`)),
  );
  return h("div", {}, heading("Dashboard"), tabs, body);
}

async function panels(range, signal) {
  const [runs, jobs, agents, servers, failures, names] = await Promise.all([
    api.get("/stats/runs", { window: range }, { signal }),
    api.get("/stats/jobs", { window: range, limit: 15 }, { signal }),
    api.get("/stats/agents", { window: range }, { signal }),
    api.get("/servers", { limit: 100 }, { signal }),
    api.get("/tasks", { status: "failed", limit: 10 }, { signal }),
    jobNames(signal),
  ]);
  const span = WINDOWS[range];
  const sampled = runs.sampled ? h("p", { class: "muted" }, "Counted over the newest 200 000 tasks of the window.") : null;
  return [
    section("Right now", nowCards(runs.now)),
    section(`Runs per hour, last ${span}`, runsChart(runs, span), sampled),
    h(
      "div",
      { class: "two-columns" },
      section(
        `Failure rate per job, last ${span}`,
        barRows(
          jobs.items.filter((item) => item.failure_rate !== null).map((item) => ({
            label: jobName(names, item.job_id),
            href: `/jobs/${item.job_id}`,
            bars: [{ key: "failed", value: item.failure_rate * 100, text: `${Math.round(item.failure_rate * 100)} % of ${item.succeeded + item.failed} finished` }],
          })),
          { max: 100, caption: "Failed among succeeded and failed tasks", empty: "No task finished in this window." },
        ),
      ),
      section(
        `Run time per job, last ${span}`,
        barRows(
          jobs.items.filter((item) => item.p50_secs !== null).map((item) => ({
            label: jobName(names, item.job_id),
            href: `/jobs/${item.job_id}`,
            bars: [
              { key: "p50", value: item.p50_secs, text: `median ${duration(item.p50_secs)}` },
              { key: "p95", value: item.p95_secs, text: `95th percentile ${duration(item.p95_secs)}` },
            ],
          })),
          { caption: "Start to end of the latest attempt, median and 95th percentile", empty: "No attempt ended in this window." },
        ),
      ),
    ),
    section(
      "Agents' load",
      barRows(
        agents.items.map((agent) => ({
          label: agent.agent_id,
          href: "/agents",
          bars: [{ key: agent.status === "online" ? "running" : "idle", value: agent.capacity ? (agent.running / agent.capacity) * 100 : 0, text: `${agent.running} of ${agent.capacity} slots busy · ${agent.status} · ${agent.tasks} tasks in the last ${span}` }],
        })),
        { max: 100, caption: "Attempts running now against capacity", empty: "No agent has registered yet." },
      ),
    ),
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

function nowCards(now) {
  const count = (n) => (n >= now.cap ? `${now.cap}+` : String(n));
  const card = (value, label, href, help) => h("li", {}, h("a", { href, class: "stat", title: help }, h("span", { class: "stat-value" }, count(value)), h("span", { class: "stat-label" }, label)));
  return h(
    "ul",
    { class: "stats", "aria-label": "Open tasks now" },
    card(now.running + now.dispatched, "running", "/tasks?status=running&status=dispatched", "On an agent now (dispatched or running)"),
    card(now.due, "waiting for an agent", "/tasks?status=pending", "Due, not yet taken by an agent"),
    card(now.waiting_retry, "waiting to retry", "/tasks?status=waiting_retry", "Failed an attempt; the next one waits for its backoff"),
    card(now.planned, "planned ahead", "/tasks?view=upcoming", "Not yet due: runs schedules planned ahead"),
  );
}

function runsChart(runs, span) {
  const totals = Object.fromEntries(OUTCOMES.map(([key]) => [key, runs.buckets.reduce((sum, bucket) => sum + bucket[key], 0)]));
  const summary = `Tasks scheduled in the last ${span}: ${OUTCOMES.map(([key, label]) => `${totals[key]} ${label}`).join(", ")}`;
  const daily = runs.buckets.length > 48;
  const chart = stackedBars(runs.buckets, OUTCOMES, {
    summary,
    tick: (bucket, index) => {
      const start = new Date(bucket.start);
      if (daily) return start.getHours() === 0 || index === 0 ? timeText(bucket.start).slice(5, 10) : null;
      return index % 6 === 0 ? timeText(bucket.start).slice(11, 16) : null;
    },
    describe: (bucket) => `${timeText(bucket.start)}, one hour: ${OUTCOMES.filter(([key]) => bucket[key]).map(([key, label]) => `${bucket[key]} ${label}`).join(", ") || "nothing"}`,
  });
  return h("div", {}, h("p", { class: "chart-summary" }, summary), chart);
}
