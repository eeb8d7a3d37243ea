// Pieces several views show: job names by id, a schedule's rule in words and its fire times, the enable/disable
// button, the task table with each run's duration, and the pager.

import { api, listAll } from "../api.js";
import { describeCron } from "../cron.js";
import { badge, duration, h, notify, offsetTimeText, shortId, table, time, timeText, until, writeButton } from "../dom.js";

// A task names its latest attempt (instance_id); the attempt has the run time. The attempts behind a shown
// page are read a few at a time, and an ended attempt never changes, so its duration is kept for this tab.
const ENDED_ATTEMPTS = new Map();
const ENDED_KEPT = 2000;
const DURATION_READS = 4;

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

/** One fire time as the API gives it (in the schedule's zone, with its offset) and its weekday there. */
export function fireTime(text) {
  // The weekday of the date written in the string (the schedule's zone), not of the instant in UTC.
  const weekday = new Date(`${text.slice(0, 10)}T00:00:00Z`).toLocaleDateString("en", { weekday: "short", timeZone: "UTC" });
  return h("li", {}, h("time", { datetime: text, title: `${new Date(text).toISOString()} (UTC)` }, h("code", {}, offsetTimeText(text))), h("span", { class: "muted" }, ` ${weekday}`));
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

/** How long an attempt ran: its measured run time, else start to end; "running" while it runs. */
export function runTime(attempt) {
  if (!attempt || !attempt.started_at) return "—";
  if (attempt.metrics) return duration(attempt.metrics.duration_secs);
  if (!attempt.completed_at) return "running";
  return duration((new Date(attempt.completed_at) - new Date(attempt.started_at)) / 1000);
}

/**
 * A cell showing the duration of ``task``'s latest attempt, filled by fillDurations once the attempt is read
 * ("—" for a task that never started).
 */
export function durationCell(task) {
  if (!task.instance_id) return h("span", { class: "duration muted" }, "—");
  const known = ENDED_ATTEMPTS.get(task.instance_id);
  return h("span", { class: "duration", "data-instance": task.instance_id, title: "Run time of the latest attempt" }, known ?? "…");
}

/** Fill the duration cells under ``container`` (see durationCell): bounded by the rows shown, never by the table. */
export async function fillDurations(container, signal) {
  const cells = [...container.querySelectorAll(".duration[data-instance]")].filter((cell) => !ENDED_ATTEMPTS.has(cell.dataset.instance));
  const queue = [...new Set(cells.map((cell) => cell.dataset.instance))];
  const read = async () => {
    for (let id = queue.shift(); id; id = queue.shift()) {
      let text = "—";
      try {
        const attempt = await api.get(`/instances/${id}`, {}, { signal });
        text = runTime(attempt);
        if (attempt.completed_at) {
          if (ENDED_ATTEMPTS.size >= ENDED_KEPT) ENDED_ATTEMPTS.delete(ENDED_ATTEMPTS.keys().next().value);
          ENDED_ATTEMPTS.set(id, text);
        }
      } catch (error) {
        if (error.name === "AbortError") return;
      }
      for (const cell of cells) if (cell.dataset.instance === id) cell.textContent = text;
    }
  };
  await Promise.all(Array.from({ length: DURATION_READS }, read));
}

/** A table of tasks that ran or are running, linking to their pages; call fillDurations on it once shown. */
export function tasksTable(tasks, names, options = {}) {
  return table(
    [
      ["Task", (t) => h("a", { href: `/tasks/${t.id}` }, shortId(t.id))],
      ["Job", (t) => h("a", { href: `/jobs/${t.job_id}` }, jobName(names, t.job_id))],
      ["Status", (t) => badge(t.status)],
      ["Attempt", (t) => String(t.attempt)],
      ["Scheduled", (t) => time(t.scheduled_at)],
      ["Duration", durationCell],
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
