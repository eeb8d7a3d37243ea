// Schedules: the list (optionally of one job or flow), the create and edit form (of a job or of a flow) with a
// live preview of the next fire times (POST /schedules/preview while typing) and the cron rule in words, one
// schedule with its next fire times, enable/disable, edit, delete and its fire-slot history, and the section
// of a flow's page that lists its schedules with their next fire times.

import { api, listAll } from "../api.js";
import { describeCron } from "../cron.js";
import { badge, confirmButton, debounce, details, errorText, h, heading, json, notify, section, shortId, submitButton, table, time, writeButton } from "../dom.js";
import { check, field, input, instant, jsonObject, localInput, number, onSubmit, select, summary, textarea, value } from "../forms.js";
import { navigate } from "../router.js";
import { describeSchedule, fireTime, jobName, jobNames, pager, statusToggle } from "./shared.js";

// No kind "flow": the kind says when a schedule fires, its target (a job or a flow) what runs.
const KINDS = ["cron", "interval", "once", "event", "daemon"];
// A flow cannot run as a daemon: the API refuses it, so the form does not offer it for a flow.
const JOB_ONLY_KINDS = new Set(["daemon"]);
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
// A flow's page lists its schedules with their next few fire times.
const FLOW_SCHEDULES = 20;
const FLOW_NEXT = 3;

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
    heading("Schedules", writeButton("New schedule", () => navigate(`/schedules/new${jobId ? `?job_id=${jobId}` : flowId ? `?flow_id=${flowId}` : ""}`), { kind: "primary" })),
    h("div", { class: "toolbar" }, h("label", {}, "Job ", filter), flowId ? h("p", {}, "Of flow ", h("a", { href: `/flows/${flowId}` }, shortId(flowId)), " · ", h("a", { href: "/schedules" }, "all schedules")) : null),
    table(
      [
        ["Rule", (s) => h("a", { href: `/schedules/${s.id}` }, describeSchedule(s))],
        ["Runs", (s) => (s.flow_id ? h("a", { href: `/flows/${s.flow_id}` }, ["flow ", shortId(s.flow_id)]) : h("a", { href: `/jobs/${s.job_id}` }, jobName(names, s.job_id)))],
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
  const [jobs, flows] = await Promise.all([listAll("/jobs", {}, { signal }), listAll("/flows", {}, { signal })]);
  if (!jobs.length) {
    return h("div", {}, heading("New schedule"), h("p", {}, "Create a job first: ", h("a", { href: "/jobs/new" }, "new job"), "."));
  }
  const flowId = query.get("flow_id");
  const target = flowId ? { flow_id: flowId } : { job_id: query.get("job_id") || jobs[0].id };
  return h("div", {}, heading("New schedule"), scheduleForm(null, { jobs, flows }, target, signal));
}

export async function editScheduleView({ params, signal }) {
  const schedule = await api.get(`/schedules/${params.id}`, {}, { signal });
  const [jobs, flows] = await Promise.all([listAll("/jobs", {}, { signal }), listAll("/flows", {}, { signal })]);
  return h("div", {}, heading("Edit schedule"), scheduleForm(schedule, { jobs, flows }, schedule, signal));
}

/**
 * The schedule form: ``schedule`` null creates (POST), a schedule edits (PATCH; its target and kind stay).
 * ``target`` names what it runs: its ``flow_id``, else its ``job_id``.
 */
function scheduleForm(schedule, { jobs, flows }, target, signal) {
  const s = schedule || {};
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const ofFlow = Boolean(target.flow_id);
  const runs = select("target", [["job", "a job"], ...(flows.length || ofFlow ? [["flow", "a flow"]] : [])], ofFlow ? "flow" : "job", { disabled: Boolean(schedule) });
  // A deleted flow is not listed: its schedule still names it.
  const flowChoices = flows.map((flow) => [flow.id, flow.name]);
  if (ofFlow && !flows.some((flow) => flow.id === target.flow_id)) flowChoices.unshift([target.flow_id, `deleted flow ${shortId(target.flow_id)}`]);
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
      field("Runs", runs),
      field("Job", select("job_id", jobs.map((job) => [job.id, job.name]), target.job_id || jobs[0]?.id, { disabled: Boolean(schedule) }), { wide: true }),
      field("Flow", select("flow_id", flowChoices, target.flow_id || flowChoices[0]?.[0], { disabled: Boolean(schedule) }), { wide: true, help: "Every fire starts one run of the flow." }),
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
    const flow = runs.value === "flow";
    form.querySelector('[data-field="job_id"]').hidden = flow;
    form.querySelector('[data-field="flow_id"]').hidden = !flow;
    for (const option of kind.options) option.disabled = option.hidden = flow && JOB_ONLY_KINDS.has(option.value);
    if (kind.selectedOptions[0]?.disabled) kind.value = "cron";
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
  runs.addEventListener("change", showFields);
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  onSubmit(form, async () => {
    const errors = [];
    const body = {
      ...(runs.value === "flow" ? { flow_id: value(form, "flow_id") } : { job_id: value(form, "job_id") }),
      ...ruleFields(form, errors),
      parameters: jsonObject(form, "parameters", errors),
      status: value(form, "status"),
    };
    if (schedule) {
      // The target and kind of a schedule never change; only what a PATCH takes is sent.
      delete body.job_id;
      delete body.flow_id;
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

export async function scheduleView({ params, query, signal, reload }) {
  const schedule = await api.get(`/schedules/${params.id}`, {}, { signal });
  const [job, flow, next, slots] = await Promise.all([
    schedule.job_id ? api.get(`/jobs/${schedule.job_id}`, {}, { signal }).catch(() => null) : null,
    schedule.flow_id ? api.get(`/flows/${schedule.flow_id}`, {}, { signal }).catch(() => null) : null,
    api.get(`/schedules/${schedule.id}/next`, { count: 5 }, { signal }),
    api.get(`/schedules/${schedule.id}/slots`, { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
  ]);
  const toggle = statusToggle("schedules", "Schedule", schedule, reload);
  const remove = confirmButton("Delete", async () => {
    await api.delete(`/schedules/${schedule.id}`);
    notify("Schedule deleted: its runs not yet started are gone, past runs stay.");
    navigate(job ? `/jobs/${job.id}` : flow ? `/flows/${flow.id}` : "/schedules");
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
          ? ["Flow", h("a", { href: `/flows/${schedule.flow_id}` }, flow ? flow.name : ["deleted flow ", shortId(schedule.flow_id)])]
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

/** The section of a flow's page: its schedules, each with its next fire times, edit, and "Add schedule". */
export async function flowSchedules(flow, signal) {
  const page = await api.get("/schedules", { flow_id: flow.id, limit: FLOW_SCHEDULES }, { signal });
  const next = await Promise.all(page.items.map((s) => api.get(`/schedules/${s.id}/next`, { count: FLOW_NEXT }, { signal })));
  const nextOf = new Map(page.items.map((s, index) => [s.id, next[index].fire_times]));
  const nextCell = (s) => {
    const times = nextOf.get(s.id);
    if (times.length) return h("ol", { class: "fire-times" }, times.map(fireTime));
    if (s.kind === "event") return h("span", { class: "muted" }, "when its event is posted");
    return h("span", { class: "muted" }, s.status === "enabled" ? "never again" : "none while disabled");
  };
  return section(
    "Schedules",
    table(
      [
        ["Rule", (s) => h("a", { href: `/schedules/${s.id}` }, describeSchedule(s))],
        ["Status", (s) => badge(s.status)],
        ["Next fire times", nextCell],
        ["Parameters", (s) => (Object.keys(s.parameters).length ? json(s.parameters) : "—")],
        ["Change", (s) => writeButton("Edit", () => navigate(`/schedules/${s.id}/edit`), { title: `Edit the schedule ${describeSchedule(s)}`, key: `edit:${s.id}` })],
      ],
      page.items,
      { empty: "No schedules: the flow runs when started.", caption: "Each fire starts one run" },
    ),
    page.next_cursor ? h("p", {}, h("a", { href: `/schedules?flow_id=${flow.id}` }, "All its schedules")) : null,
    writeButton("Add schedule", () => navigate(`/schedules/new?flow_id=${flow.id}`)),
  );
}
