// Jobs: the list (search by name, namespace or label, filter by status), one job (its run-history grid, run
// times, next runs, config, trigger with JSON parameters, enable/disable, delete, its schedules) and the
// create/edit form for the whole job config.

import { api, listAll, session } from "../api.js";
import { badge, confirmButton, details, duration, h, heading, labels, notify, section, shortId, submitButton, table, time, timeText, writeButton } from "../dom.js";
import { check, field, input, jsonObject, keyValues, keyValueText, lines, number, onSubmit, select, summary, textarea, value } from "../forms.js";
import { navigate } from "../router.js";
import { describeSchedule, durationCell, fillDurations, jobNames, statusToggle, upcomingTable } from "./shared.js";

const COMMANDS = ["bash", "uv", "python", "node", "npx", "cargo", "java"];
// Kinds that take a script body (the agent writes it to a file and runs it); npx and cargo take args only.
const SCRIPT_COMMANDS = new Set(["bash", "python", "uv", "node", "java"]);
const LIST_SHOWN = 200;
const GRID_RUNS = 60;
const RECENT_RUNS = 10;
const NEXT_RUNS = 5;
const NOTIFY_EVENTS = ["failed", "succeeded", "missed", "retrying", "offline"];

/** Whether ``job`` matches the search words: each must appear in its name, namespace, description or labels. */
function matches(job, words) {
  const haystack = [job.name, job.namespace, job.description, ...Object.entries(job.config.target.labels).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
  return words.every((word) => haystack.includes(word));
}

export async function jobsView({ query, signal }) {
  // Jobs are few next to tasks: the list reads them all (up to listAll's bound) and filters here.
  const all = await listAll("/jobs", {}, { signal });
  const q = query.get("q") || "";
  const status = query.get("status") || "";
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  const found = all.filter((job) => (!status || job.status === status) && matches(job, words));
  const form = h(
    "form",
    { class: "toolbar filters", role: "search", "aria-label": "Search jobs" },
    h("label", {}, "Search ", h("input", { type: "search", name: "q", value: q, placeholder: "name, namespace or label=value", "aria-label": "Search jobs" })),
    h("label", {}, "Status ", select("status", [["", "any"], "enabled", "disabled"], status, { "aria-label": "Status" })),
    h("button", { type: "submit", class: "btn" }, "Search"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (form.elements.namedItem("q").value.trim()) params.set("q", form.elements.namedItem("q").value.trim());
    if (form.elements.namedItem("status").value) params.set("status", form.elements.namedItem("status").value);
    navigate(params.toString() ? `/jobs?${params}` : "/jobs");
  });
  const shown = found.slice(0, LIST_SHOWN);
  return h(
    "div",
    {},
    heading("Jobs", writeButton("New job", () => navigate("/jobs/new"), { kind: "primary" })),
    form,
    h("p", { class: "muted" }, found.length === all.length ? `${all.length} jobs.` : `${found.length} of ${all.length} jobs match.`, found.length > shown.length ? ` Showing the first ${shown.length}.` : ""),
    table(
      [
        ["Name", (job) => h("a", { href: `/jobs/${job.id}` }, job.name)],
        ["Namespace", (job) => job.namespace],
        ["Command", (job) => job.config.command],
        ["Status", (job) => badge(job.status)],
        ["Target", (job) => labels(job.config.target.labels)],
        ["Updated", (job) => time(job.updated_at)],
      ],
      shown,
      { empty: all.length ? "No job matches." : "No jobs yet." },
    ),
  );
}

export async function jobView({ params, signal, reload }) {
  const now = new Date().toISOString();
  const [job, schedules, history, next, stats, names] = await Promise.all([
    api.get(`/jobs/${params.id}`, {}, { signal }),
    api.get("/schedules", { job_id: params.id, limit: 100 }, { signal }),
    api.get("/tasks", { job_id: params.id, scheduled_before: now, limit: GRID_RUNS }, { signal }),
    api.get("/tasks", { job_id: params.id, status: "pending", scheduled_after: now, order: "asc", limit: NEXT_RUNS }, { signal }),
    api.get("/stats/jobs", { job_id: params.id, window: "7d" }, { signal }),
    jobNames(signal),
  ]);
  const recent = history.items.slice(0, RECENT_RUNS);
  const toggle = statusToggle("jobs", "Job", job, reload);
  const remove = confirmButton("Delete", async () => {
    await api.delete(`/jobs/${job.id}`);
    notify(`Job ${job.name} deleted: its schedules stopped, its planned runs are gone, its history stays.`);
    navigate("/jobs");
  });
  const week = stats.items[0];
  const page = h(
    "div",
    {},
    heading(job.name, badge(job.status), writeButton("Edit", () => navigate(`/jobs/${job.id}/edit`)), toggle, remove),
    job.description ? h("p", {}, job.description) : null,
    h(
      "p",
      { class: "related" },
      h("a", { href: `/notifications?job_id=${job.id}` }, "Notifications sent about it"),
      session.canWrite ? h("a", { href: `/audit?target=${encodeURIComponent(`/jobs/${job.id}`)}` }, "Who changed it (audit trail)") : null,
    ),
    section(
      "Run history",
      runGrid(history.items),
      details([
        ["Last 7 days", week ? `${week.runs} runs: ${week.succeeded} succeeded, ${week.failed} failed, ${week.cancelled} cancelled, ${week.skipped} skipped` : "no runs"],
        ["Failure rate", week && week.failure_rate !== null ? `${Math.round(week.failure_rate * 100)} %` : null],
        ["Run time", week && week.p50_secs !== null ? `median ${duration(week.p50_secs)}, 95th percentile ${duration(week.p95_secs)}` : null],
      ]),
    ),
    section(
      "Recent runs",
      table(
        [
          ["Task", (t) => h("a", { href: `/tasks/${t.id}` }, shortId(t.id))],
          ["Status", (t) => badge(t.status)],
          ["Scheduled", (t) => time(t.scheduled_at)],
          ["Duration", durationCell],
          ["Attempts", (t) => String(t.attempt)],
          ["Agent", (t) => t.agent_id || "—"],
        ],
        recent,
        { empty: "Never ran yet." },
      ),
      h("p", {}, h("a", { href: `/tasks?job_id=${job.id}` }, "All runs of this job")),
    ),
    section("Next runs", upcomingTable(next.items, names, { empty: "Nothing planned: no enabled schedule fires soon." }), h("p", {}, h("a", { href: `/tasks?view=upcoming&job_id=${job.id}` }, "Everything planned for this job"))),
    section("Trigger", triggerForm(job)),
    section(
      "Schedules",
      table(
        [
          ["Rule", (s) => h("a", { href: `/schedules/${s.id}` }, describeSchedule(s))],
          ["Status", (s) => badge(s.status)],
          ["Planned", (s) => h("span", { title: "Slots planned so far, including runs not yet due; they count toward the schedule's max runs" }, String(s.fire_count))],
          ["Created", (s) => time(s.created_at)],
        ],
        schedules.items,
        { empty: "No schedules: the job runs when triggered." },
      ),
      writeButton("Add schedule", () => navigate(`/schedules/new?job_id=${job.id}`)),
    ),
    section("Configuration", configDetails(job)),
  );
  fillDurations(page, signal); // the recent runs' durations follow once the page shows
  return page;
}

/** The last runs as coloured cells, oldest first, each a link to its task. */
function runGrid(tasks) {
  if (!tasks.length) return h("p", { class: "empty" }, "Never ran yet.");
  const cells = [...tasks].reverse().map((task) =>
    h("li", {}, h("a", { href: `/tasks/${task.id}`, class: `c-${task.status}`, "data-status": task.status, title: `${task.status} · ${timeText(task.scheduled_at)}`, "aria-label": `${task.status}, scheduled ${task.scheduled_at}` })),
  );
  return h("div", {}, h("ul", { class: "run-grid", "aria-label": `The last ${tasks.length} runs, oldest first` }, cells));
}

function triggerForm(job) {
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    field("Parameters (JSON object)", textarea("parameters", { rows: 3, placeholder: '{"date": "2026-01-31"}' }), {
      help: "Handed to the process as HETUFLOW_PARAMS.",
    }),
    field("Priority", input("priority", { type: "number", min: -1000, max: 1000, placeholder: `${job.config.priority}` })),
    summary(),
    submitButton("Trigger now"),
  );
  onSubmit(form, async () => {
    const errors = [];
    const body = { parameters: jsonObject(form, "parameters", errors) };
    const priority = number(form, "priority", errors, { integer: true });
    check(errors);
    if (priority !== null) body.priority = priority;
    const result = await api.post(`/jobs/${job.id}/trigger`, body);
    notify("Task created.");
    navigate(`/tasks/${result.task_ids[0]}`);
  });
  return form;
}

function configDetails(job) {
  const c = job.config;
  const retry = c.retry;
  const limits = Object.entries(c.limits).filter(([, limit]) => limit !== null);
  return details([
    ["Command", h("code", {}, c.command)],
    ["Script", c.script ? h("pre", { class: "code" }, c.script) : null],
    ["Arguments", c.args.length ? h("pre", { class: "code" }, c.args.join("\n")) : null],
    ["Environment", Object.keys(c.env).length ? h("pre", { class: "code" }, keyValueText(c.env)) : null],
    ["Secret variables", c.secret_env?.length ? `${c.secret_env.join(", ")} (values shown as ***)` : null],
    ["Working directory", c.workdir],
    ["Timeout", c.timeout_secs === null ? "none" : `${c.timeout_secs} s`],
    ["Retries", retry.max_retries ? `${retry.max_retries} (${retry.backoff}, ${retry.base_secs}–${retry.max_secs} s, jitter ${retry.jitter})` : "none"],
    ["Limits", limits.length ? limits.map(([name, limit]) => `${name} ${limit}`).join(", ") : "none"],
    ["Target labels", labels(c.target.labels)],
    ["Routing", c.target.routing],
    ["Pinned to agent", c.target.agent_id],
    ["Concurrency", c.concurrency],
    ["Priority", String(c.priority)],
    ["Notify", c.notify?.length ? h("pre", { class: "code" }, notifyText(c.notify)) : "nobody"],
    ["Namespace", job.namespace],
    ["Created", h("span", {}, time(job.created_at), job.created_by ? ` by ${job.created_by}` : "")],
    ["Updated", h("span", {}, time(job.updated_at), job.updated_by ? ` by ${job.updated_by}` : "")],
  ]);
}

export async function newJobView() {
  return h("div", {}, heading("New job"), jobForm(null));
}

export async function editJobView({ params, signal }) {
  const job = await api.get(`/jobs/${params.id}`, {}, { signal });
  return h("div", {}, heading(`Edit ${job.name}`), jobForm(job));
}

/** The job form; ``job`` null creates, a job edits (PATCH with name, description and the whole config). */
function jobForm(job) {
  const c = job?.config || { args: [], env: {}, retry: {}, limits: {}, target: { labels: {} } };
  const retry = { max_retries: 0, backoff: "exponential", base_secs: 1, max_secs: 300, jitter: 0.1, ...c.retry };
  const command = select("config.command", COMMANDS, c.command || "bash");
  const scriptField = field("Script", textarea("config.script", { rows: 8, class: "code", value: c.script || "" }), {
    help: "Written to a file in the task's directory and run by bash, python, uv run, node or java (single-file source); the arguments follow it.",
  });
  const form = h(
    "form",
    { class: "job-form", novalidate: true },
    h(
      "fieldset",
      {},
      h("legend", {}, "Job"),
      field("Name", input("name", { value: job?.name, required: true, "aria-required": "true", autocomplete: "off" }), {
        help: "Letters, digits, '_', '.', '-'; unique in its namespace.",
      }),
      field("Namespace", input("namespace", { value: job?.namespace || "default", disabled: Boolean(job) })),
      field("Description", textarea("description", { rows: 2, value: job?.description || "" })),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Command"),
      field("Command kind", command),
      scriptField,
      field("Arguments (one per line)", textarea("config.args", { rows: 3, class: "code", value: c.args.join("\n") }), {
        help: "After the script, or without one the command line itself (uv runs 'uv run <args>'); npx and cargo take arguments only.",
      }),
      field("Environment (KEY=VALUE per line)", textarea("config.env", { rows: 3, class: "code", value: keyValueText(c.env) })),
      field("Secret variables", input("config.secret_env", { value: (c.secret_env || []).join(", "), placeholder: "API_TOKEN, DB_PASSWORD", autocomplete: "off" }), {
        help: "Names from the environment, comma-separated: their values are sent to the agent but shown as *** everywhere; leave *** as the value to keep a stored secret.",
      }),
      field("Working directory", input("config.workdir", { value: c.workdir || "" })),
    ),
    h(
      "fieldset",
      { class: "grid" },
      h("legend", {}, "Limits and retries"),
      field("Timeout (s)", input("config.timeout_secs", { type: "number", min: 0, step: "any", value: c.timeout_secs ?? "" })),
      field("Max retries", input("config.retry.max_retries", { type: "number", min: 0, max: 100, value: retry.max_retries })),
      field("Backoff", select("config.retry.backoff", ["exponential", "fixed"], retry.backoff)),
      field("Backoff base (s)", input("config.retry.base_secs", { type: "number", min: 0, step: "any", value: retry.base_secs })),
      field("Backoff max (s)", input("config.retry.max_secs", { type: "number", min: 0, step: "any", value: retry.max_secs })),
      field("Jitter (0–1)", input("config.retry.jitter", { type: "number", min: 0, max: 1, step: "any", value: retry.jitter })),
      field("Memory limit (MB)", input("config.limits.memory_mb", { type: "number", min: 1, value: c.limits.memory_mb ?? "" })),
      field("CPU limit (s)", input("config.limits.cpu_secs", { type: "number", min: 1, value: c.limits.cpu_secs ?? "" })),
      field("Max stored output (bytes)", input("config.limits.max_output_bytes", { type: "number", min: 0, value: c.limits.max_output_bytes ?? "" })),
    ),
    h(
      "fieldset",
      { class: "grid" },
      h("legend", {}, "Placement"),
      field("Target labels", input("config.target.labels", { value: keyValueText(c.target.labels, ", "), placeholder: "region=eu, gpu=yes" }), {
        help: "key=value pairs, comma-separated: agents must carry all of them.",
      }),
      field("Routing", select("config.target.routing", [["any", "any one matching agent"], ["broadcast", "every matching agent"]], c.target.routing || "any")),
      field("Pinned to agent", input("config.target.agent_id", { value: c.target.agent_id ?? "", placeholder: "worker-01" }), {
        help: "Run only on this agent (tasks wait while it is away). Leave empty to let routing choose.",
      }),
      field("Concurrency", select("config.concurrency", [["allow", "allow overlapping runs"], ["forbid", "skip while running"], ["replace", "cancel the running one"]], c.concurrency || "allow")),
      field("Priority", input("config.priority", { type: "number", min: -1000, max: 1000, value: c.priority ?? 0 })),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Notifications"),
      field("Notify (one target per line)", textarea("config.notify", { rows: 2, class: "code", value: notifyText(c.notify), placeholder: "ops-hook: failed, missed" }), {
        help: `A target of the server's configuration, a colon, and the outcomes it hears about: ${NOTIFY_EVENTS.join(", ")}.`,
      }),
    ),
    summary(),
    submitButton(job ? "Save job" : "Create job"),
  );
  const showScript = () => (scriptField.hidden = !SCRIPT_COMMANDS.has(command.value));
  command.addEventListener("change", showScript);
  showScript();
  onSubmit(form, async () => {
    const errors = [];
    const config = readConfig(form, errors);
    const body = { name: value(form, "name"), description: form.elements.namedItem("description").value, config };
    if (!body.name) errors.push({ path: "$.name", message: "a job needs a name" });
    check(errors);
    const saved = job
      ? await api.patch(`/jobs/${job.id}`, body)
      : await api.post("/jobs", { ...body, namespace: value(form, "namespace") || "default" });
    notify(job ? "Job saved." : "Job created.");
    navigate(`/jobs/${saved.id}`);
  });
  return form;
}

function readConfig(form, errors) {
  const command = value(form, "config.command");
  const config = {
    command,
    args: lines(form, "config.args"),
    env: keyValues(form, "config.env", errors),
    target: {
      labels: keyValues(form, "config.target.labels", errors, { commas: true }),
      routing: value(form, "config.target.routing"),
      agent_id: value(form, "config.target.agent_id") || null,
    },
    concurrency: value(form, "config.concurrency"),
    priority: number(form, "config.priority", errors, { integer: true }) ?? 0,
    retry: present({
      max_retries: number(form, "config.retry.max_retries", errors, { integer: true }),
      backoff: value(form, "config.retry.backoff"),
      base_secs: number(form, "config.retry.base_secs", errors),
      max_secs: number(form, "config.retry.max_secs", errors),
      jitter: number(form, "config.retry.jitter", errors),
    }),
    limits: {
      memory_mb: number(form, "config.limits.memory_mb", errors, { integer: true }),
      cpu_secs: number(form, "config.limits.cpu_secs", errors, { integer: true }),
      max_output_bytes: number(form, "config.limits.max_output_bytes", errors, { integer: true }),
    },
  };
  const script = form.elements.namedItem("config.script").value;
  if (SCRIPT_COMMANDS.has(command) && script.trim()) config.script = script;
  const secret = value(form, "config.secret_env").split(",").map((name) => name.trim()).filter(Boolean);
  if (secret.length) config.secret_env = secret;
  const workdir = value(form, "config.workdir");
  if (workdir) config.workdir = workdir;
  const timeout = number(form, "config.timeout_secs", errors);
  if (timeout !== null) config.timeout_secs = timeout;
  config.notify = notifyRules(form, errors);
  return config;
}

/** "target: failed, missed" lines for a job's notify rules. */
function notifyText(rules) {
  return (rules || []).map((rule) => `${rule.target}: ${rule.on.join(", ")}`).join("\n");
}

/** The notify rules of the form's "target: outcome, ..." lines. */
function notifyRules(form, errors) {
  return lines(form, "config.notify").map((line) => {
    const at = line.indexOf(":");
    const target = line.slice(0, at).trim();
    const on = line.slice(at + 1).split(",").map((word) => word.trim()).filter(Boolean);
    if (at <= 0 || !target || !on.length) errors.push({ path: "$.config.notify", message: `"${line.trim()}" is not "target: outcome, ..."` });
    for (const word of on) {
      if (!NOTIFY_EVENTS.includes(word)) errors.push({ path: "$.config.notify", message: `"${word}" is not one of ${NOTIFY_EVENTS.join(", ")}` });
    }
    return { target, on };
  });
}

/** ``object`` without its null entries (the server's defaults apply to fields left empty). */
function present(object) {
  return Object.fromEntries(Object.entries(object).filter(([, item]) => item !== null && item !== ""));
}
