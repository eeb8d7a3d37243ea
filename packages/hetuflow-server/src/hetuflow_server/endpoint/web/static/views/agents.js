// Agents: labels, capacity and load, last heartbeat, and drain / disable / enable; an offline agent can be
// forgotten (deleted: a connected one cannot be). Refreshed every 5 s.

import { api, listAll } from "../api.js";
import { ago, badge, confirmButton, every, h, heading, labels, notify, replaceKeepingFocus, table, writeButton } from "../dom.js";

const REFRESH_MS = 5000;

export async function agentsView({ signal }) {
  const body = h("div");
  const load = async () => replaceKeepingFocus(body, agentsTable(await listAll("/agents", {}, { signal }), load));
  await load();
  // A refresh would redraw a Forget button waiting for its confirming click: wait until it is done.
  every(REFRESH_MS, () => (body.querySelector(".armed") ? null : load()), signal);
  return h("div", {}, heading("Agents"), body);
}

function agentsTable(agents, load) {
  const act = (agent, action, done) =>
    writeButton(
      action[0].toUpperCase() + action.slice(1),
      async () => {
        await api.post(`/agents/${encodeURIComponent(agent.id)}/${action}`);
        notify(`Agent ${agent.id} ${done}.`);
        await load();
      },
      { disabled: !allowed(agent.status, action), title: `${action} ${agent.id}`, key: `${action}:${agent.id}` },
    );
  return table(
    [
      ["Agent", (a) => h("span", {}, h("strong", {}, a.id), a.name !== a.id ? h("span", { class: "muted" }, ` ${a.name}`) : null)],
      ["Status", (a) => badge(a.status)],
      ["Labels", (a) => labels(a.labels)],
      ["Load", (a) => `${a.metrics?.running ?? 0} / ${a.capabilities.capacity}`],
      ["Commands", (a) => a.capabilities.commands.join(", ")],
      ["Host", (a) => [a.capabilities.hostname, a.capabilities.os, a.capabilities.arch].filter(Boolean).join(" · ") || "—"],
      ["Version", (a) => a.capabilities.version || "—"],
      ["Heartbeat", (a) => ago(a.last_heartbeat_at)],
      ["Actions", (a) => h("div", { class: "actions", role: "group", "aria-label": `Actions for ${a.id}` }, act(a, "drain", "draining"), act(a, "disable", "disabled"), act(a, "enable", "enabled"), forget(a, load))],
    ],
    agents,
    { empty: "No agent has registered yet." },
  );
}

/** Forget (delete) an agent that is offline; its past attempts keep its id. */
function forget(agent, load) {
  return confirmButton("Forget", async () => {
    await api.delete(`/agents/${encodeURIComponent(agent.id)}`);
    notify(`Agent ${agent.id} forgotten: it must register again to get work.`);
    await load();
  }, { disabled: agent.status !== "offline", title: "Only an offline agent can be forgotten", key: `forget:${agent.id}` });
}

/** Whether the API allows ``action`` from ``status`` (the others would be refused with a 409). */
function allowed(status, action) {
  if (action === "drain") return status === "online";
  if (action === "disable") return status !== "disabled";
  return status === "disabled";
}
