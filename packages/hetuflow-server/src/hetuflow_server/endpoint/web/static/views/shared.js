// Pieces several views show: job names by id, a schedule's rule in words, the enable/disable button, the task
// table and the pager.

import { api, listAll } from "../api.js";
import { describeCron } from "../cron.js";
import { badge, duration, h, notify, shortId, table, time, timeText, until, writeButton } from "../dom.js";

/** A Map of job id → "namespace/name" (or "name" in the default namespace) of every live job. */
export async function jobNames(signal) {
  const jobs = await listAll("/jobs", {}, { signal });
  return new Map(jobs.map((job) => [job.id, job.namespace === "default" ? job.name : `${job.namespace}/${job.name}`]));
}

/** The name of job ``id`` from a jobNames() map (a short id for a deleted job). */
export function jobName(names, id) {
  return names.get(id) || `${String(id).slice(-8)} (deleted)`;
}

/** When a schedule fires, in words ("at 02:30 every day (Europe/Paris)"); the cron expression is in a title. */
export function describeSchedule(schedule) {
  switch (schedule.kind) {
    case "cron": {
      const words = describeCron(schedule.cron_expression);
      return words ? `${words} (${schedule.timezone})` : `cron ${schedule.cron_expression} (${schedule.timezone})`;
    }
    case "interval":
      return `every ${duration(schedule.interval_secs)}`;
    case "once":
      return `once at ${timeText(schedule.start_time)}`;
    case "event":
      return `on event ${schedule.event_name}`;
    case "daemon":
      return "always running (daemon)";
    default:
      return schedule.kind;
  }
}

/** Enable or Disable for ``item`` (a job or schedule) under ``/collection``; the page is rendered again. */
export function statusToggle(collection, noun, item, reload) {
  const enabled = item.status === "enabled";
  return writeButton(enabled ? "Disable" : "Enable", async () => {
    await api.post(`/${collection}/${item.id}/${enabled ? "disable" : "enable"}`);
    notify(`${noun} ${enabled ? "disabled" : "enabled"}.`);
    await reload();
  });
}

/** A table of tasks that ran or are running, linking to their pages. */
export function tasksTable(tasks, names, options = {}) {
  return table(
    [
      ["Task", (t) => h("a", { href: `/tasks/${t.id}` }, shortId(t.id))],
      ["Job", (t) => h("a", { href: `/jobs/${t.job_id}` }, jobName(names, t.job_id))],
      ["Status", (t) => badge(t.status)],
      ["Attempt", (t) => String(t.attempt)],
      ["Scheduled", (t) => time(t.scheduled_at)],
      ["Agent", (t) => t.agent_id || "—"],
      ["Completed", (t) => time(t.completed_at)],
    ],
    tasks,
    { empty: "No tasks.", ...options },
  );
}

/** A table of planned runs (pending, not yet due), soonest first. */
export function upcomingTable(tasks, names, options = {}) {
  return table(
    [
      ["Task", (t) => h("a", { href: `/tasks/${t.id}` }, shortId(t.id))],
      ["Job", (t) => h("a", { href: `/jobs/${t.job_id}` }, jobName(names, t.job_id))],
      ["Due", (t) => h("span", {}, time(t.scheduled_at), h("span", { class: "muted" }, ` (${until(t.scheduled_at)})`))],
      ["Schedule", (t) => (t.schedule_id ? h("a", { href: `/schedules/${t.schedule_id}` }, shortId(t.schedule_id)) : "manual")],
      ["Priority", (t) => String(t.priority)],
    ],
    tasks,
    { empty: "Nothing planned.", ...options },
  );
}

/** "First page" / "Next page" links of a cursor-paged list at ``path``. */
export function pager(path, query, nextCursor) {
  const rest = new URLSearchParams(query);
  rest.delete("cursor");
  const withCursor = (cursor) => {
    const params = new URLSearchParams(rest);
    if (cursor) params.set("cursor", cursor);
    const text = params.toString();
    return text ? `${path}?${text}` : path;
  };
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    query.get("cursor") ? h("a", { href: withCursor(null) }, "First page") : null,
    nextCursor ? h("a", { href: withCursor(nextCursor), rel: "next" }, "Next page") : null,
  );
}
