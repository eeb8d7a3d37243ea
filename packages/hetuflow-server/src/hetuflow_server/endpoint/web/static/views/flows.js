// Flows: the list, and one flow with its DAG of steps (a layered drawing plus the same steps as a table),
// a run form and its runs.

import { api } from "../api.js";
import { badge, h, heading, json, notify, section, shortId, submitButton, table, time } from "../dom.js";
import { check, field, jsonObject, onSubmit, summary, textarea } from "../forms.js";
import { jobName, jobNames, pager } from "./shared.js";

const PAGE_SIZE = 50;
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 170;
const NODE_H = 40;
const GAP_X = 60;
const GAP_Y = 18;
const LABEL_CHARS = 22;

export async function flowsView({ query, signal }) {
  const page = await api.get("/flows", { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal });
  return h(
    "div",
    {},
    heading("Flows"),
    h("p", { class: "muted" }, "Flows are created through the API (POST /api/v1/flows); run and inspect them here."),
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
          ["Run", (run) => shortId(run.id)],
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

/** Steps laid out in columns by depth (longest chain of dependencies), edges from each dependency. */
function dag(steps) {
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
  const svg = svgNode("svg", { class: "dag", viewBox: `-2 -2 ${width + 4} ${height + 4}`, width: width + 4, height: height + 4, role: "img", "aria-label": `Graph of ${steps.length} steps; the table below lists them` });
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
    const group = svgNode("g", { class: "node" });
    const title = svgNode("title", {});
    title.textContent = step.name;
    const text = svgNode("text", { x: x + NODE_W / 2, y: y + NODE_H / 2, "text-anchor": "middle", "dominant-baseline": "central" });
    text.textContent = label;
    group.append(title, svgNode("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }), text);
    svg.append(group);
  }
  return h("div", { class: "dag-wrap" }, svg);
}

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}
