// Flows: the list, the create form (steps, their jobs, dependencies and parameters), one flow with its DAG of
// steps (a layered drawing plus the same steps as a table), a run form and its runs, and one run: each step's
// task coloured by status on the graph, linking to the task, its attempt and its log.

import { api, listAll } from "../api.js";
import { badge, h, heading, json, notify, section, shortId, submitButton, table, time, writeButton } from "../dom.js";
import { check, field, input, jsonObject, onSubmit, select, summary, textarea, value } from "../forms.js";
import { navigate } from "../router.js";
import { jobName, jobNames, pager } from "./shared.js";

const PAGE_SIZE = 50;
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 170;
const NODE_H = 40;
const GAP_X = 60;
const GAP_Y = 18;
const LABEL_CHARS = 22;
const RUN_REFRESH_MS = 3000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

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
  const choices = jobs.map((job) => [job.id, job.namespace === "default" ? job.name : `${job.namespace}/${job.name}`]);
  const rows = h("div", { class: "steps" });
  const addStep = () => {
    const index = rows.childElementCount;
    rows.append(
      h(
        "fieldset",
        { class: "grid step-row", "data-index": index },
        h("legend", {}, `Step ${index + 1}`),
        field("Step name", input(`steps[${index}].name`, { autocomplete: "off", value: `step-${index + 1}` })),
        field("Job", select(`steps[${index}].job_id`, choices, choices[0][0])),
        field("After steps", input(`steps[${index}].depends_on`, { autocomplete: "off", placeholder: "extract, load" }), { help: "Names of the steps it waits for, comma-separated." }),
        field("Parameters (JSON object)", textarea(`steps[${index}].parameters`, { rows: 1 })),
      ),
    );
  };
  const add = h("button", { type: "button", class: "btn" }, "Add step");
  const drop = h("button", { type: "button", class: "btn" }, "Remove last step");
  add.addEventListener("click", addStep);
  drop.addEventListener("click", () => rows.childElementCount > 1 && rows.lastElementChild.remove());
  const form = h(
    "form",
    { class: "flow-form", novalidate: true },
    h(
      "fieldset",
      {},
      h("legend", {}, "Flow"),
      field("Name", input("name", { autocomplete: "off", required: true })),
      field("Description", textarea("description", { rows: 2 })),
    ),
    rows,
    h("div", { class: "actions" }, add, drop),
    summary(),
    submitButton("Create flow"),
  );
  addStep();
  onSubmit(form, async () => {
    const errors = [];
    const steps = [...rows.children].map((row, index) => ({
      name: value(form, `steps[${index}].name`),
      job_id: value(form, `steps[${index}].job_id`),
      depends_on: value(form, `steps[${index}].depends_on`).split(",").map((name) => name.trim()).filter(Boolean),
      parameters: jsonObject(form, `steps[${index}].parameters`, errors),
    }));
    const body = { name: value(form, "name"), description: form.elements.namedItem("description").value, steps };
    if (!body.name) errors.push({ path: "$.name", message: "a flow needs a name" });
    check(errors);
    const created = await api.post("/flows", body);
    notify("Flow created.");
    navigate(`/flows/${created.id}`);
  });
  return h("div", {}, heading("New flow"), form);
}

export async function flowView({ params, query, signal, reload }) {
  const [flow, runs, names] = await Promise.all([
    api.get(`/flows/${params.id}`, {}, { signal }),
    api.get(`/flows/${params.id}/runs`, { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal }),
    jobNames(signal),
  ]);
  return h(
    "div",
    {},
    heading(flow.name, badge(flow.status)),
    flow.description ? h("p", {}, flow.description) : null,
    section("Steps", dag(flow.steps), stepsTable(flow.steps, names)),
    section("Run", runForm(flow, reload)),
    section(
      "Runs",
      table(
        [
          ["Run", (run) => h("a", { href: `/flows/${flow.id}/runs/${run.id}` }, shortId(run.id))],
          ["Status", (run) => badge(run.status)],
          ["Created", (run) => time(run.created_at)],
          ["Started", (run) => time(run.started_at)],
          ["Completed", (run) => time(run.completed_at)],
          ["Parameters", (run) => (Object.keys(run.parameters).length ? json(run.parameters) : "—")],
        ],
        runs.items,
        { empty: "Never run." },
      ),
      pager(`/flows/${flow.id}`, query, runs.next_cursor),
    ),
  );
}

/**
 * Which task of the run is which step. A task names its step when the API says so (flow_step); otherwise the
 * steps are matched in dependency order: same job, same parameters, and depending on exactly the tasks of the
 * steps it comes after.
 */
function tasksByStep(flow, run, tasks) {
  const found = new Map(flow.steps.map((step) => [step.name, []]));
  if (tasks.every((task) => task.flow_step)) {
    for (const task of tasks) found.get(task.flow_step)?.push(task);
    return found;
  }
  const taken = new Set();
  const done = new Set();
  const same = (a, b) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  while (done.size < flow.steps.length) {
    const ready = flow.steps.filter((step) => !done.has(step.name) && step.depends_on.every((name) => done.has(name)));
    if (!ready.length) break;
    for (const step of ready) {
      const wanted = new Set(step.depends_on.flatMap((name) => found.get(name).map((task) => task.id)));
      const mine = tasks.filter(
        (task) =>
          !taken.has(task.id) &&
          task.job_id === step.job_id &&
          same(task.parameters, { ...step.parameters, ...run.parameters }) &&
          task.depends_on.length === wanted.size &&
          task.depends_on.every((id) => wanted.has(id)),
      );
      // Broadcast jobs get one task per agent; otherwise one per step.
      for (const task of mine) taken.add(task.id);
      found.set(step.name, mine);
      done.add(step.name);
    }
  }
  return found;
}

/** The status a step shows: its task's, or the worst of its tasks' when a broadcast job made several. */
function stepStatus(stepTasks) {
  if (!stepTasks.length) return "pending";
  for (const status of ["failed", "cancelled", "running", "dispatched", "waiting_retry", "pending", "skipped"]) {
    if (stepTasks.some((task) => task.status === status)) return status;
  }
  return "succeeded";
}

export async function flowRunView({ params, signal }) {
  const body = h("div");
  const names = await jobNames(signal);
  const flow = await api.get(`/flows/${params.id}`, {}, { signal });
  let shown = null;
  const load = async () => {
    const [run, tasks] = await Promise.all([
      api.get(`/flows/${params.id}/runs/${params.run}`, {}, { signal }),
      listAll("/tasks", { flow_run_id: params.run }, { signal, max: 5000 }),
    ]);
    const key = JSON.stringify([run, tasks]);
    if (key !== shown) {
      shown = key;
      body.replaceChildren(...runParts(flow, run, tasks, names).filter(Boolean)); // a null child would read "null"
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

function runParts(flow, run, tasks, names) {
  const byStep = tasksByStep(flow, run, tasks);
  const statuses = new Map(flow.steps.map((step) => [step.name, stepStatus(byStep.get(step.name))]));
  const links = new Map(flow.steps.map((step) => [step.name, byStep.get(step.name)[0] ? `/tasks/${byStep.get(step.name)[0].id}` : null]));
  const failed = flow.steps.filter((step) => statuses.get(step.name) === "failed");
  const attemptLink = (task) => (task.instance_id ? h("a", { href: `/instances/${task.instance_id}` }, "attempt and log") : h("span", { class: "muted" }, "not started"));
  return [
    heading(h("span", {}, "Run ", shortId(run.id), " of ", h("a", { href: `/flows/${flow.id}` }, flow.name)), badge(run.status)),
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
    section("Steps", dag(flow.steps, { statuses, links }), table(
      [
        ["Step", (step) => step.name],
        ["Job", (step) => h("a", { href: `/jobs/${step.job_id}` }, jobName(names, step.job_id))],
        ["Status", (step) => badge(statuses.get(step.name))],
        ["Task", (step) => (byStep.get(step.name).length ? byStep.get(step.name).map((task) => h("a", { href: `/tasks/${task.id}` }, shortId(task.id), " ")) : "—")],
        ["Attempt", (step) => (byStep.get(step.name).length ? byStep.get(step.name).map(attemptLink) : "—")],
        ["Error", (step) => byStep.get(step.name).map((task) => task.error).filter(Boolean).join("; ") || "—"],
      ],
      flow.steps,
      { caption: "Each step's task in this run" },
    )),
    section(
      "Run",
      h("dl", { class: "details" },
        h("dt", {}, "Created"), h("dd", {}, time(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, time(run.started_at)),
        h("dt", {}, "Completed"), h("dd", {}, time(run.completed_at)),
        h("dt", {}, "Parameters"), h("dd", {}, json(run.parameters)),
        h("dt", {}, "Tasks"), h("dd", {}, h("a", { href: `/tasks?flow_run_id=${run.id}` }, "in the task list")),
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
      ["Parameters", (step) => (Object.keys(step.parameters).length ? json(step.parameters) : "—")],
    ],
    steps,
    { caption: "Steps and their dependencies" },
  );
}

function runForm(flow, reload) {
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    field("Parameters (JSON object)", textarea("parameters", { rows: 3 }), { help: "Handed to every step; a step's own parameters win." }),
    summary(),
    submitButton("Run flow"),
  );
  onSubmit(form, async () => {
    const errors = [];
    const parameters = jsonObject(form, "parameters", errors);
    check(errors);
    await api.post(`/flows/${flow.id}/run`, { parameters });
    notify("Flow run started.");
    await reload();
  });
  return form;
}

/**
 * Steps laid out in columns by depth (longest chain of dependencies), edges from each dependency. With a run's
 * ``statuses`` each node is coloured by its step's status (named in its title too), and with ``links`` it is a
 * link to the step's task.
 */
function dag(steps, { statuses, links } = {}) {
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
