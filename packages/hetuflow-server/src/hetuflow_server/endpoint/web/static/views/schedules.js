// Schedules: the list (optionally of one job), the create and edit form with a live preview of the next fire
// times (POST /schedules/preview while typing) and the cron rule in words, and one schedule with its next fire
// times, enable/disable, edit, delete and its fire-slot history.

import { api, listAll } from "../api.js";
import { describeCron } from "../cron.js";
import { badge, confirmButton, debounce, details, errorText, h, heading, json, notify, offsetTimeText, section, shortId, submitButton, table, time, writeButton } from "../dom.js";
import { check, field, input, instant, jsonObject, localInput, number, onSubmit, select, summary, textarea, value } from "../forms.js";
import { navigate } from "../router.js";
import { describeSchedule, jobName, jobNames, pager, statusToggle } from "./shared.js";

// No "flow": a schedule belongs to a job, and flows run through their own "Run" button (the API refuses it).
const KINDS = ["cron", "interval", "once", "event", "daemon"];
const CLOCKED = new Set(["cron", "interval", "once"]);
// Which fields each kind uses; the form hides the others and leaves them out of the body.
const KIND_FIELDS = {
  cron: ["cron_expression", "timezone", "start_time", "end_time", "max_count"],
  interval: ["interval_secs", "start_time", "end_time", "max_count"],
  once: ["start_time"],
  event: ["event_name"],
  daemon: [],
};
const PREVIEW_COUNT = 8;
const PREVIEW_DEBOUNCE_MS = 250;
const PAGE_SIZE = 50;

export async function schedulesView({ query, signal }) {
  const jobId = query.get("job_id") || "";
  const flowId = query.get("flow_id") || "";
  const [page, names] = await Promise.all([
    api.get("/schedules", { job_id: jobId, flow_id: flowId, limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
    jobNames(signal),
  ]);
  const filter = select("job_id", [["", "all jobs"], ...[...names].map(([id, name]) => [id, name])], jobId, { "aria-label": "Job" });
  filter.addEventListener("change", () => navigate(filter.value ? `/schedules?job_id=${filter.value}` : "/schedules"));
  return h(
    "div",
    {},
    heading("Schedules", writeButton("New schedule", () => navigate(`/schedules/new${jobId ? `?job_id=${jobId}` : ""}`), { kind: "primary" })),
    h("div", { class: "toolbar" }, h("label", {}, "Job ", filter), flowId ? h("p", {}, "Of flow ", h("a", { href: `/flows/${flowId}` }, shortId(flowId)), " · ", h("a", { href: "/schedules" }, "all schedules")) : null),
    table(
      [
        ["Rule", (s) => h("a", { href: `/schedules/${s.id}` }, describeSchedule(s))],
        ["Job", (s) => (s.flow_id ? h("a", { href: `/flows/${s.flow_id}` }, ["flow ", shortId(s.flow_id)]) : h("a", { href: `/jobs/${s.job_id}` }, jobName(names, s.job_id)))],
        ["Status", (s) => badge(s.status)],
        ["Planned", (s) => h("span", { title: "Slots planned so far, including runs not yet due; they count toward max runs" }, String(s.fire_count))],
        ["Misfire", (s) => s.misfire_policy.replace("_", " ")],
        ["Created", (s) => time(s.created_at)],
      ],
      page.items,
      { empty: "No schedules." },
    ),
    pager("/schedules", query, page.next_cursor),
  );
}

export async function newScheduleView({ query, signal }) {
  const jobs = await listAll("/jobs", {}, { signal });
  if (!jobs.length) {
    return h("div", {}, heading("New schedule"), h("p", {}, "Create a job first: ", h("a", { href: "/jobs/new" }, "new job"), "."));
  }
  return h("div", {}, heading("New schedule"), scheduleForm(null, jobs, query.get("job_id") || jobs[0].id, signal));
}

export async function editScheduleView({ params, signal }) {
  const schedule = await api.get(`/schedules/${params.id}`, {}, { signal });
  const jobs = await listAll("/jobs", {}, { signal });
  return h("div", {}, heading("Edit schedule"), scheduleForm(schedule, jobs, schedule.job_id, signal));
}

/** The schedule form: ``schedule`` null creates (POST), a schedule edits (PATCH; its job and kind stay). */
function scheduleForm(schedule, jobs, jobId, signal) {
  const s = schedule || {};
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const kind = select("kind", KINDS, s.kind || "cron", { disabled: Boolean(schedule) });
  const cronWords = h("p", { class: "help cron-words", "aria-live": "polite" });
  const previewList = h("ol", { class: "fire-times" });
  const previewState = h("p", { class: "muted", role: "status" }, "Fill in the rule to see when it fires.");
  const form = h(
    "form",
    { class: "schedule-form", novalidate: true },
    h(
      "fieldset",
      { class: "grid" },
      h("legend", {}, "Rule"),
      field("Job", select("job_id", jobs.map((job) => [job.id, job.name]), jobId, { disabled: Boolean(schedule) }), { wide: true }),
      field("Kind", kind),
      field("Cron expression", input("cron_expression", { placeholder: "30 2 * * *", autocomplete: "off", class: "code", value: s.cron_expression || "" }), {
        help: "minute hour day month weekday (or 6 fields with seconds first, or @daily ...)",
      }),
      cronWords,
      field("Time zone", input("timezone", { value: s.timezone || "UTC", list: "tz-list", autocomplete: "off" }), { help: "IANA name, e.g. America/New_York" }),
      h("datalist", { id: "tz-list" }, zones.map((zone) => h("option", { value: zone }))),
      field("Every (seconds)", input("interval_secs", { type: "number", min: 1, value: s.interval_secs ?? "" })),
      field("Start", input("start_time", { type: "datetime-local", step: 1, value: localInput(s.start_time) }), { help: "In this browser's time zone. For 'once', when it fires." }),
      field("End", input("end_time", { type: "datetime-local", step: 1, value: localInput(s.end_time) })),
      field("Max runs", input("max_count", { type: "number", min: 1, value: s.max_count ?? "" })),
      field("Event name", input("event_name", { autocomplete: "off", value: s.event_name || "" })),
    ),
    h(
      "fieldset",
      { class: "grid" },
      h("legend", {}, "Behaviour"),
      field("Parameters (JSON object)", textarea("parameters", { rows: 2, value: s.parameters && Object.keys(s.parameters).length ? JSON.stringify(s.parameters) : "" })),
      field("Misfire policy", select("misfire_policy", [["skip", "skip missed runs"], ["run_once", "run once for all missed"], ["run_all", "run every missed slot"]], s.misfire_policy || "run_once")),
      field("Misfire grace (s)", input("misfire_grace_secs", { type: "number", min: 0, step: "any", value: s.misfire_grace_secs ?? 60 })),
      field("Misfire max runs", input("misfire_max_runs", { type: "number", min: 1, value: s.misfire_max_runs ?? 100 })),
      field("Start deadline (s)", input("start_deadline_secs", { type: "number", min: 0, step: "any", value: s.start_deadline_secs ?? "" }), { help: "Empty: a run waits for a free agent as long as it takes." }),
      field("Status", select("status", ["enabled", "disabled"], s.status === "disabled" ? "disabled" : "enabled")),
    ),
    h(
      "section",
      { class: "preview", "aria-label": "Preview" },
      h("h2", {}, "Next fire times"),
      field("Preview from", input("preview_from", { type: "datetime-local", step: 1 }), { help: "Default: now." }),
      previewState,
      previewList,
    ),
    summary(),
    submitButton(schedule ? "Save schedule" : "Create schedule"),
  );
  const showFields = () => {
    const used = new Set(KIND_FIELDS[kind.value]);
    for (const name of ["cron_expression", "timezone", "interval_secs", "start_time", "end_time", "max_count", "event_name"]) {
      form.querySelector(`[data-field="${name}"]`).hidden = !used.has(name);
    }
    for (const name of ["misfire_policy", "misfire_grace_secs", "misfire_max_runs", "start_deadline_secs", "preview_from"]) {
      form.querySelector(`[data-field="${name}"]`).hidden = !CLOCKED.has(kind.value);
    }
  };
  let previewing = null;
  const preview = async () => {
    if (previewing) previewing.abort();
    const controller = new AbortController();
    previewing = controller;
    signal.addEventListener("abort", () => controller.abort(), { once: true });
    if (!CLOCKED.has(kind.value)) {
      previewList.replaceChildren();
      previewState.textContent = kind.value === "event" ? "Fires when its event is posted." : `A ${kind.value} schedule has no clock of its own.`;
      return;
    }
    try {
      const errors = [];
      const body = { ...ruleFields(form, errors), count: PREVIEW_COUNT };
      const from = instant(form, "preview_from", errors);
      if (from) body.from = from;
      if (errors.length) throw new Error(errors.map((item) => item.message).join("; "));
      const result = await api.post("/schedules/preview", body, { signal: controller.signal });
      previewState.textContent = result.fire_times.length ? "" : "It never fires after that time.";
      previewList.replaceChildren(...result.fire_times.map(fireTime));
    } catch (error) {
      if (error.name === "AbortError") return;
      previewList.replaceChildren();
      previewState.textContent = errorText(error);
    }
  };
  const later = debounce(preview, PREVIEW_DEBOUNCE_MS);
  const showWords = () => {
    const words = kind.value === "cron" ? describeCron(value(form, "cron_expression")) : null;
    cronWords.textContent = words ? `Fires ${words}, by the clock of ${value(form, "timezone") || "UTC"}.` : "";
  };
  form.addEventListener("input", showWords);
  kind.addEventListener("change", showFields);
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  onSubmit(form, async () => {
    const errors = [];
    const body = {
      job_id: value(form, "job_id"),
      ...ruleFields(form, errors),
      parameters: jsonObject(form, "parameters", errors),
      status: value(form, "status"),
    };
    if (schedule) {
      // The job and kind of a schedule never change; only what a PATCH takes is sent.
      delete body.job_id;
      delete body.kind;
    }
    if (kind.value === "event") body.event_name = value(form, "event_name") || null;
    if (CLOCKED.has(kind.value)) {
      body.misfire_policy = value(form, "misfire_policy");
      body.misfire_grace_secs = number(form, "misfire_grace_secs", errors) ?? 60;
      body.misfire_max_runs = number(form, "misfire_max_runs", errors, { integer: true }) ?? 100;
      body.start_deadline_secs = number(form, "start_deadline_secs", errors);
    }
    check(errors);
    const saved = schedule ? await api.patch(`/schedules/${schedule.id}`, body) : await api.post("/schedules", body);
    notify(schedule ? "Schedule saved." : "Schedule created.");
    navigate(`/schedules/${saved.id}`);
  });
  showFields();
  showWords();
  if (schedule) preview();
  return form;
}

/** The fields of the rule for the chosen kind (what both the preview and the create body carry). */
function ruleFields(form, errors) {
  const kind = value(form, "kind");
  const used = new Set(KIND_FIELDS[kind]);
  const body = { kind };
  if (used.has("cron_expression")) body.cron_expression = value(form, "cron_expression") || null;
  if (used.has("timezone")) body.timezone = value(form, "timezone") || "UTC";
  if (used.has("interval_secs")) body.interval_secs = number(form, "interval_secs", errors, { integer: true });
  if (used.has("start_time")) body.start_time = instant(form, "start_time", errors);
  if (used.has("end_time")) body.end_time = instant(form, "end_time", errors);
  if (used.has("max_count")) body.max_count = number(form, "max_count", errors, { integer: true });
  return body;
}

/** One fire time as the API gives it (in the schedule's zone, with its offset) and its weekday there. */
function fireTime(text) {
  // The weekday of the date written in the string (the schedule's zone), not of the instant in UTC.
  const weekday = new Date(`${text.slice(0, 10)}T00:00:00Z`).toLocaleDateString("en", { weekday: "short", timeZone: "UTC" });
  return h("li", {}, h("time", { datetime: text, title: `${new Date(text).toISOString()} (UTC)` }, h("code", {}, offsetTimeText(text))), h("span", { class: "muted" }, ` ${weekday}`));
}

export async function scheduleView({ params, query, signal, reload }) {
  const schedule = await api.get(`/schedules/${params.id}`, {}, { signal });
  const [job, next, slots] = await Promise.all([
    schedule.job_id ? api.get(`/jobs/${schedule.job_id}`, {}, { signal }).catch(() => null) : null,
    api.get(`/schedules/${schedule.id}/next`, { count: 5 }, { signal }),
    api.get(`/schedules/${schedule.id}/slots`, { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
  ]);
  const toggle = statusToggle("schedules", "Schedule", schedule, reload);
  const remove = confirmButton("Delete", async () => {
    await api.delete(`/schedules/${schedule.id}`);
    notify("Schedule deleted: its runs not yet started are gone, past runs stay.");
    navigate(job ? `/jobs/${job.id}` : "/schedules");
  });
  const zone = CLOCKED.has(schedule.kind) ? schedule.timezone : undefined;
  return h(
    "div",
    {},
    heading(describeSchedule(schedule), badge(schedule.status), writeButton("Edit", () => navigate(`/schedules/${schedule.id}/edit`)), toggle, remove),
    section(
      "Schedule",
      details([
        schedule.flow_id
          ? ["Flow", h("a", { href: `/flows/${schedule.flow_id}` }, shortId(schedule.flow_id))]
          : ["Job", job ? h("a", { href: `/jobs/${job.id}` }, job.name) : shortId(schedule.job_id)],
        ["Kind", schedule.kind],
        ["Cron expression", schedule.cron_expression ? h("span", {}, h("code", {}, schedule.cron_expression), describeCron(schedule.cron_expression) ? ` — ${describeCron(schedule.cron_expression)}` : "") : null],
        ["Time zone", CLOCKED.has(schedule.kind) ? schedule.timezone : null],
        ["Interval", schedule.interval_secs ? `${schedule.interval_secs} s` : null],
        ["Start", schedule.start_time ? time(schedule.start_time, zone) : null],
        ["End", schedule.end_time ? time(schedule.end_time, zone) : null],
        ["Max runs", schedule.max_count === null ? null : String(schedule.max_count)],
        ["Event", schedule.event_name],
        ["Planned", `${schedule.fire_count} slots so far, including runs not yet due (they count toward max runs)`],
        ["Misfire", `${schedule.misfire_policy.replace("_", " ")} (grace ${schedule.misfire_grace_secs} s, at most ${schedule.misfire_max_runs})`],
        ["Start deadline", schedule.start_deadline_secs === null ? null : `${schedule.start_deadline_secs} s`],
        ["Planned until", schedule.generated_until ? time(schedule.generated_until, zone) : null],
        ["Parameters", Object.keys(schedule.parameters).length ? json(schedule.parameters) : null],
      ]),
    ),
    section(
      zone ? `Next fire times (${zone})` : "Next fire times",
      next.fire_times.length ? h("ol", { class: "fire-times" }, next.fire_times.map(fireTime)) : h("p", { class: "empty" }, "None: the schedule is not enabled or has no clock."),
    ),
    section(
      "Slot history",
      table(
        [
          ["Slot", (slot) => time(slot.scheduled_at)],
          ["Outcome", (slot) => badge(slot.outcome)],
          [
            "Run",
            (slot) =>
              slot.task_id ? h("a", { href: `/tasks/${slot.task_id}` }, "task ", shortId(slot.task_id))
                : slot.flow_run_id ? h("a", { href: `/flow-runs/${slot.flow_run_id}` }, "flow run ", shortId(slot.flow_run_id))
                  : "—",
          ],
          ["Detail", (slot) => slot.detail || "—"],
          ["Recorded", (slot) => time(slot.recorded_at)],
        ],
        slots.items,
        { empty: "No slot has come due yet." },
      ),
      pager(`/schedules/${schedule.id}`, query, slots.next_cursor),
    ),
  );
}
