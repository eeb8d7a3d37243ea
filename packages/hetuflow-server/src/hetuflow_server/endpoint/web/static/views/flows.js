// Flows: the list, the form that creates or edits one (steps, their jobs, dependencies, parameters, timeout
// and trigger rule), one flow with its DAG of steps (a layered drawing plus the same steps as a table), edit,
// enable/disable, delete, its schedules, a run form and its runs, and one run: the graph of the steps it started with, each
// coloured by its task's status and linking to it, its attempt and its log; cancel and retry.
//
// A run is found by its id alone (/flow-runs/<id>), so a task of the run links back to it, and it is drawn from
// its own tasks (each names its step and the tasks it waits for): an edit of the flow never redraws old runs.

import { ApiError, api, listAll, session } from "../api.js";
import { badge, confirmButton, h, heading, json, notify, section, shortId, submitButton, table, time, writeButton } from "../dom.js";
import { check, field, input, jsonObject, number, onSubmit, select, summary, textarea, value } from "../forms.js";
import { navigate } from "../router.js";
import { flowSchedules } from "./schedules.js";
import { durationCell, fillDurations, jobName, jobNames, pager, statusToggle } from "./shared.js";

const PAGE_SIZE = 50;
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 170;
const NODE_H = 40;
const GAP_X = 60;
const GAP_Y = 18;
const LABEL_CHARS = 22;
const RUN_REFRESH_MS = 3000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
// What a step waits for among the steps before it (its trigger rule).
const TRIGGER_RULES = [
  ["all_success", "all succeeded"],
  ["all_done", "all ended (cleanup)"],
  ["one_failed", "one failed (alert)"],
];
const CONCURRENCY = [
  ["allow", "allow overlapping runs"],
  ["forbid", "skip while a run goes"],
  ["replace", "cancel the running one"],
];

export async function flowsView({ query, signal }) {
  const page = await api.get("/flows", { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal });
  return h(
    "div",
    {},
    heading("Flows", writeButton("New flow", () => navigate("/flows/new"), { kind: "primary" })),
    table(
      [
        ["Name", (flow) => h("a", { href: `/flows/${flow.id}` }, flow.name)],
        ["Status", (flow) => badge(flow.status)],
        ["Steps", (flow) => String(flow.steps.length)],
        ["Description", (flow) => flow.description || "—"],
        ["Updated", (flow) => time(flow.updated_at)],
      ],
      page.items,
      { empty: "No flows yet." },
    ),
    pager("/flows", query, page.next_cursor),
  );
}

export async function newFlowView({ signal }) {
  const jobs = await listAll("/jobs", {}, { signal });
  if (!jobs.length) return h("div", {}, heading("New flow"), h("p", {}, "Create a job first: ", h("a", { href: "/jobs/new" }, "new job"), "."));
  return h("div", {}, heading("New flow"), flowForm(null, jobs));
}

export async function editFlowView({ params, signal }) {
  const [flow, jobs] = await Promise.all([api.get(`/flows/${params.id}`, {}, { signal }), listAll("/jobs", {}, { signal })]);
  return h("div", {}, heading(`Edit ${flow.name}`), h("p", { class: "muted" }, "Runs already started keep the steps they started with."), flowForm(flow, jobs));
}

/** What a step row of the form holds, read back from its controls (to redraw the rows after a removal). */
function readRow(form, index) {
  const get = (name) => form.elements.namedItem(`steps[${index}].${name}`).value;
  return { name: get("name"), job_id: get("job_id"), depends_on: get("depends_on"), parameters: get("parameters"), timeout_secs: get("timeout_secs"), trigger_rule: get("trigger_rule") };
}

/** The step rows as the form shows them: one fieldset per step, each with a Remove button. */
function stepRows(rows, choices, onRemove) {
  return rows.map((row, index) => {
    const remove = h("button", { type: "button", class: "btn link", "aria-label": `Remove step ${index + 1}`, disabled: rows.length === 1 }, "Remove");
    remove.addEventListener("click", () => onRemove(index));
    const jobs = choices.some(([id]) => id === row.job_id) || !row.job_id ? choices : [...choices, [row.job_id, `deleted job ${String(row.job_id).slice(-8)}`]];
    return h(
      "fieldset",
      { class: "grid step-row", "data-index": index },
      h("legend", {}, `Step ${index + 1} `, remove),
      field("Step name", input(`steps[${index}].name`, { autocomplete: "off", value: row.name })),
      field("Job", select(`steps[${index}].job_id`, jobs, row.job_id || choices[0][0]), { wide: true }),
      field("After steps", input(`steps[${index}].depends_on`, { autocomplete: "off", placeholder: "extract, load", value: row.depends_on }), { help: "Names of the steps it waits for, comma-separated." }),
      field("Starts once the steps before", select(`steps[${index}].trigger_rule`, TRIGGER_RULES, row.trigger_rule || "all_success"), { help: "Another choice than 'all succeeded' needs steps to wait for." }),
      field("Parameters (JSON object)", textarea(`steps[${index}].parameters`, { rows: 1, value: row.parameters })),
      field("Timeout (s)", input(`steps[${index}].timeout_secs`, { type: "number", min: 0, step: "any", value: row.timeout_secs, placeholder: "the job's" })),
    );
  });
}

/** The flow form: ``flow`` null creates (POST), a flow edits (PATCH with its name, description, concurrency and steps). */
function flowForm(flow, jobs) {
  const choices = jobs.map((job) => [job.id, job.namespace === "default" ? job.name : `${job.namespace}/${job.name}`]);
  const asRow = (step) => ({
    name: step.name,
    job_id: step.job_id,
    depends_on: step.depends_on.join(", "),
    parameters: Object.keys(step.parameters).length ? JSON.stringify(step.parameters) : "",
    timeout_secs: step.timeout_secs ?? "",
    trigger_rule: step.trigger_rule,
  });
  const rows = h("div", { class: "steps" });
  let form = null;
  const draw = (list) => rows.replaceChildren(...stepRows(list, choices, (index) => draw(current().filter((_, at) => at !== index))));
  const current = () => [...rows.children].map((_, index) => readRow(form, index));
  const add = h("button", { type: "button", class: "btn" }, "Add step");
  add.addEventListener("click", () => {
    const list = current();
    draw([...list, { name: `step-${list.length + 1}`, job_id: choices[0][0], depends_on: "", parameters: "", timeout_secs: "", trigger_rule: "all_success" }]);
    rows.lastElementChild.querySelector("input").focus();
  });
  form = h(
    "form",
    { class: "flow-form", novalidate: true },
    h(
      "fieldset",
      { class: "grid" },
      h("legend", {}, "Flow"),
      field("Name", input("name", { autocomplete: "off", required: true, value: flow?.name })),
      field("Description", textarea("description", { rows: 1, value: flow?.description || "" })),
      field("Overlapping scheduled runs", select("concurrency", CONCURRENCY, flow?.concurrency || "allow"), { help: "What a schedule's fire does while its previous run still goes." }),
    ),
    rows,
    h("div", { class: "actions" }, add),
    summary(),
    submitButton(flow ? "Save flow" : "Create flow"),
  );
  draw(flow ? flow.steps.map(asRow) : [{ name: "step-1", job_id: choices[0][0], depends_on: "", parameters: "", timeout_secs: "", trigger_rule: "all_success" }]);
  onSubmit(form, async () => {
    const errors = [];
    const steps = current().map((row, index) => {
      const step = {
        name: row.name.trim(),
        job_id: row.job_id,
        depends_on: row.depends_on.split(",").map((name) => name.trim()).filter(Boolean),
        parameters: jsonObject(form, `steps[${index}].parameters`, errors),
      };
      const timeout = number(form, `steps[${index}].timeout_secs`, errors);
      if (timeout !== null) step.timeout_secs = timeout;
      // The API takes another rule only on a step that waits for others: say so beside the field.
      if (row.trigger_rule !== "all_success") {
        if (step.depends_on.length) step.trigger_rule = row.trigger_rule;
        else errors.push({ path: `$.steps[${index}].trigger_rule`, message: "only a step that waits for others can start on their failure or end" });
      }
      return step;
    });
    const body = { name: value(form, "name"), description: form.elements.namedItem("description").value, concurrency: value(form, "concurrency"), steps };
    if (!body.name) errors.push({ path: "$.name", message: "a flow needs a name" });
    check(errors);
    const saved = flow ? await api.patch(`/flows/${flow.id}`, body) : await api.post("/flows", body);
    notify(flow ? "Flow saved." : "Flow created.");
    navigate(`/flows/${saved.id}`);
  });
  return form;
}

export async function flowView({ params, query, signal, reload }) {
  const [flow, runs, names, schedules] = await Promise.all([
    api.get(`/flows/${params.id}`, {}, { signal }),
    api.get(`/flows/${params.id}/runs`, { order: "desc", limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
    jobNames(signal),
    flowSchedules({ id: params.id }, signal),
  ]);
  const remove = confirmButton("Delete", async () => {
    await api.delete(`/flows/${flow.id}`);
    notify(`Flow ${flow.name} deleted: its live runs were cancelled and its schedules disabled; its runs stay readable.`);
    navigate("/flows");
  });
  return h(
    "div",
    {},
    heading(flow.name, badge(flow.status), writeButton("Edit", () => navigate(`/flows/${flow.id}/edit`)), statusToggle("flows", "Flow", flow, reload), remove),
    flow.description ? h("p", {}, flow.description) : null,
    session.canWrite ? h("p", { class: "related" }, h("a", { href: `/audit?target=${encodeURIComponent(`/flows/${flow.id}`)}` }, "Who changed it (audit trail)")) : null,
    section("Steps", dag(flow.steps), stepsTable(flow.steps, names)),
    schedules,
    section("Run", runForm(flow)),
    section(
      "Runs",
      table(
        [
          ["Run", (run) => h("a", { href: `/flow-runs/${run.id}` }, shortId(run.id))],
          ["Status", (run) => badge(run.status)],
          ["Steps", (run) => stepCounts(run.steps)],
          ["Created", (run) => time(run.created_at)],
          ["Started", (run) => time(run.started_at)],
          ["Completed", (run) => time(run.completed_at)],
          ["Parameters", (run) => (Object.keys(run.parameters).length ? json(run.parameters) : "—")],
        ],
        runs.items,
        { empty: "Never run.", caption: "Latest first" },
      ),
      pager(`/flows/${flow.id}`, query, runs.next_cursor),
    ),
  );
}

/** "2 succeeded, 1 failed" for the current tasks of a run's steps. */
function stepCounts(steps) {
  const counts = new Map();
  for (const step of steps) counts.set(step.status, (counts.get(step.status) || 0) + 1);
  return [...counts].map(([status, count]) => `${count} ${status.replace("_", " ")}`).join(", ") || "—";
}

/**
 * The steps a run started with, rebuilt from its tasks: each current task names its step (flow_step) and the
 * tasks it waits for (depends_on); ``current`` are the run's current task ids (a retried step's new tasks).
 * Returns the steps in the order of the run's answer and the current tasks of each step.
 */
function runSteps(run, tasks) {
  const byId = new Map(tasks.map((task) => [task.id, task]));
  const stepOf = new Map(tasks.map((task) => [task.id, task.flow_step]));
  const byStep = new Map();
  for (const item of run.steps) {
    const task = byId.get(item.task_id) || { id: item.task_id, status: item.status, error: item.error, agent_id: item.agent_id, depends_on: [], job_id: null, instance_id: null };
    if (!byStep.has(item.name)) byStep.set(item.name, []);
    byStep.get(item.name).push(task);
  }
  const steps = [...byStep].map(([name, stepTasks]) => ({
    name,
    job_id: stepTasks[0].job_id,
    depends_on: [...new Set(stepTasks.flatMap((task) => task.depends_on.map((id) => stepOf.get(id)).filter((step) => step && step !== name)))],
  }));
  return { steps, byStep };
}

/** The status a step shows: its task's, or the worst of its tasks' when a broadcast job made several. */
function stepStatus(stepTasks) {
  if (!stepTasks.length) return "pending";
  for (const status of ["failed", "cancelled", "running", "dispatched", "waiting_retry", "pending", "skipped"]) {
    if (stepTasks.some((task) => task.status === status)) return status;
  }
  return "succeeded";
}

export async function flowRunView({ params, signal, reload }) {
  const body = h("div");
  const names = await jobNames(signal);
  let flow;
  let shown = null;
  const load = async () => {
    const [run, tasks] = await Promise.all([
      api.get(`/flow-runs/${params.run}`, {}, { signal }),
      listAll("/tasks", { flow_run_id: params.run }, { signal, max: 5000 }),
    ]);
    if (flow === undefined) {
      // A deleted flow's runs stay readable: the page then names the flow by its id.
      flow = await api.get(`/flows/${run.flow_id}`, {}, { signal }).catch((error) => {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      });
    }
    const key = JSON.stringify([run, tasks]);
    if (key !== shown) {
      shown = key;
      body.replaceChildren(...runParts(flow, run, tasks, names, reload).filter(Boolean)); // a null child would read "null"
      fillDurations(body, signal);
    }
    return run;
  };
  const run = await load();
  if (!FINISHED.has(run.status)) {
    const timer = setInterval(async () => {
      if (document.hidden) return;
      try {
        if (FINISHED.has((await load()).status)) clearInterval(timer);
      } catch (error) {
        if (error.name === "AbortError") clearInterval(timer);
      }
    }, RUN_REFRESH_MS);
    signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  }
  return body;
}

function runParts(flow, run, tasks, names, reload) {
  const { steps, byStep } = runSteps(run, tasks);
  const statuses = new Map(steps.map((step) => [step.name, stepStatus(byStep.get(step.name))]));
  const links = new Map(steps.map((step) => [step.name, `/tasks/${byStep.get(step.name)[0].id}`]));
  const failed = steps.filter((step) => statuses.get(step.name) === "failed");
  const attemptLink = (task) => (task.instance_id ? h("a", { href: `/instances/${task.instance_id}` }, "attempt and log") : h("span", { class: "muted" }, "not started"));
  // A node can sit in one place only: each use gets its own.
  const flowLink = () => (flow ? h("a", { href: `/flows/${flow.id}` }, flow.name) : h("span", {}, "deleted flow ", shortId(run.flow_id)));
  const cancel = writeButton("Cancel run", async () => {
    await api.post(`/flows/${run.flow_id}/runs/${run.id}/cancel`);
    notify("Run cancelled: its pending steps are skipped, its running ones killed.");
    await reload();
  }, { kind: "danger", disabled: FINISHED.has(run.status) });
  const retry = writeButton("Retry run", async () => {
    await api.post(`/flows/${run.flow_id}/runs/${run.id}/retry`);
    notify("Run retried from the steps that did not succeed.");
    await reload();
  }, { disabled: run.status !== "failed" && run.status !== "cancelled" });
  return [
    heading(h("span", {}, "Run ", shortId(run.id), " of ", flowLink()), badge(run.status), cancel, retry),
    failed.length
      ? h(
          "div",
          { class: "notice error failed-steps", role: "alert" },
          "Failed: ",
          failed.map((step, index) => {
            const task = byStep.get(step.name).find((item) => item.status === "failed");
            return [index ? ", " : "", h("a", { href: `/tasks/${task.id}` }, `step ${step.name}`), " (", attemptLink(task), ")"];
          }),
        )
      : null,
    section("Steps", dag(steps, { statuses, links }), table(
      [
        ["Step", (step) => step.name],
        ["Job", (step) => (step.job_id ? h("a", { href: `/jobs/${step.job_id}` }, jobName(names, step.job_id)) : "—")],
        ["Status", (step) => badge(statuses.get(step.name))],
        ["Task", (step) => byStep.get(step.name).map((task) => h("a", { href: `/tasks/${task.id}` }, shortId(task.id), " "))],
        ["Attempt", (step) => byStep.get(step.name).map(attemptLink)],
        ["Duration", (step) => byStep.get(step.name).map(durationCell)],
        ["Error", (step) => byStep.get(step.name).map((task) => task.error).filter(Boolean).join("; ") || "—"],
      ],
      steps,
      { caption: "Each step's task in this run", empty: "The run has no task yet." },
    )),
    section(
      "Run",
      h("dl", { class: "details" },
        h("dt", {}, "Flow"), h("dd", {}, flowLink()),
        h("dt", {}, "Created"), h("dd", {}, time(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, time(run.started_at)),
        h("dt", {}, "Completed"), h("dd", {}, time(run.completed_at)),
        run.schedule_id ? [h("dt", {}, "Schedule"), h("dd", {}, h("a", { href: `/schedules/${run.schedule_id}` }, shortId(run.schedule_id)))] : null,
        h("dt", {}, "Parameters"), h("dd", {}, json(run.parameters)),
        h("dt", {}, "Tasks"), h("dd", {}, h("a", { href: `/tasks?flow_run_id=${run.id}` }, "every task of this run, earlier tries included")),
      ),
    ),
  ];
}

function stepsTable(steps, names) {
  return table(
    [
      ["Step", (step) => step.name],
      ["Job", (step) => h("a", { href: `/jobs/${step.job_id}` }, jobName(names, step.job_id))],
      ["After", (step) => (step.depends_on.length ? step.depends_on.join(", ") : "—")],
      ["Starts once", (step) => (step.depends_on.length ? `${TRIGGER_RULES.find(([rule]) => rule === step.trigger_rule)[1]}` : "the run starts")],
      ["Timeout", (step) => (step.timeout_secs === null || step.timeout_secs === undefined ? "the job's" : `${step.timeout_secs} s`)],
      ["Parameters", (step) => (Object.keys(step.parameters).length ? json(step.parameters) : "—")],
    ],
    steps,
    { caption: "Steps and their dependencies" },
  );
}

function runForm(flow) {
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    field("Parameters (JSON object)", textarea("parameters", { rows: 3 }), { help: "Handed to every step; the run's parameters win over a step's own." }),
    summary(),
    submitButton("Run flow"),
  );
  onSubmit(form, async () => {
    const errors = [];
    const parameters = jsonObject(form, "parameters", errors);
    check(errors);
    const run = await api.post(`/flows/${flow.id}/run`, { parameters });
    notify("Flow run started.");
    navigate(`/flow-runs/${run.id}`);
  });
  return form;
}

/**
 * Steps laid out in columns by depth (longest chain of dependencies), edges from each dependency. With a run's
 * ``statuses`` each node is coloured by its step's status (named in its title too), and with ``links`` it is a
 * link to the step's task.
 */
function dag(steps, { statuses, links } = {}) {
  if (!steps.length) return null;
  const byName = new Map(steps.map((step) => [step.name, step]));
  const depth = new Map();
  const depthOf = (step, seen = new Set()) => {
    if (depth.has(step.name)) return depth.get(step.name);
    seen.add(step.name);
    const parents = step.depends_on.map((name) => byName.get(name)).filter((parent) => parent && !seen.has(parent.name));
    const value = parents.length ? 1 + Math.max(...parents.map((parent) => depthOf(parent, seen))) : 0;
    depth.set(step.name, value);
    return value;
  };
  const columns = [];
  for (const step of steps) {
    const column = depthOf(step);
    (columns[column] ||= []).push(step);
  }
  const position = new Map();
  columns.forEach((column, x) => column.forEach((step, y) => position.set(step.name, { x: x * (NODE_W + GAP_X), y: y * (NODE_H + GAP_Y) })));
  const width = columns.length * (NODE_W + GAP_X) - GAP_X;
  const height = Math.max(...columns.map((column) => column.length)) * (NODE_H + GAP_Y) - GAP_Y;
  const svg = svgNode("svg", { class: "dag", viewBox: `-2 -2 ${width + 4} ${height + 4}`, width: width + 4, height: height + 4, role: links ? "group" : "img", "aria-label": `Graph of ${steps.length} steps; the table below lists them` });
  for (const step of steps) {
    const to = position.get(step.name);
    for (const name of step.depends_on) {
      const from = position.get(name);
      if (!from) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      svg.append(svgNode("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
    }
  }
  for (const step of steps) {
    const { x, y } = position.get(step.name);
    const label = step.name.length > LABEL_CHARS ? `${step.name.slice(0, LABEL_CHARS - 1)}…` : step.name;
    const status = statuses?.get(step.name);
    const group = svgNode("g", { class: status ? `node s-${status}` : "node", "data-step": step.name });
    const title = svgNode("title", {});
    title.textContent = status ? `${step.name}: ${status}` : step.name;
    const text = svgNode("text", { x: x + NODE_W / 2, y: y + NODE_H / 2, "text-anchor": "middle", "dominant-baseline": "central" });
    text.textContent = label;
    group.append(title, svgNode("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }), text);
    const href = links?.get(step.name);
    if (href) {
      const link = svgNode("a", { href, "aria-label": `${step.name}: ${status}` });
      link.append(group);
      svg.append(link);
    } else {
      svg.append(group);
    }
  }
  return h("div", { class: "dag-wrap" }, svg);
}

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}
