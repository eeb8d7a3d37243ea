// One attempt of a task: where and how it ran, and its log, followed live until the attempt ends.

import { api } from "../api.js";
import { badge, bytes, details, duration, errorText, h, heading, section, shortId, time } from "../dom.js";
import { tailLog } from "../logtail.js";

// Chunks kept on screen; older ones are dropped so a chatty process cannot exhaust the tab's memory.
const MAX_CHUNKS = 5000;

export async function instanceView({ params, signal }) {
  const instance = await api.get(`/instances/${params.id}`, {}, { signal });
  const job = await api.get(`/jobs/${instance.job_id}`, {}, { signal }).catch(() => null); // null once deleted
  const summary = h("div", {}, section("Attempt", instanceDetails(instance, job)));
  const show = async () => {
    const latest = await api.get(`/instances/${params.id}`, {}, { signal });
    summary.replaceChildren(section("Attempt", instanceDetails(latest, job)));
  };
  const log = h("pre", { class: "log", tabindex: "0", role: "log", "aria-label": "Log output", "aria-live": "off" });
  const state = h("p", { class: "log-state", role: "status" }, "Connecting…");
  const follow = h("input", { type: "checkbox", checked: true, id: "follow-log" });
  const empty = h("p", { class: "empty" }, "No output yet.");
  const onEntry = (entry) => {
    empty.remove();
    log.append(h("span", { class: `log-${entry.stream}`, "data-seq": entry.seq }, entry.content));
    while (log.childElementCount > MAX_CHUNKS) log.firstElementChild.remove();
    if (follow.checked) log.scrollTop = log.scrollHeight;
  };
  const onState = (live) => (state.textContent = live === "live" ? "Following the log live." : "Connection lost; reconnecting…");
  tailLog(params.id, { signal, onEntry, onState })
    .then(async (status) => {
      state.textContent = `The attempt ended: ${status}.`;
      state.dataset.ended = status;
      await show();
    })
    .catch((error) => {
      if (error.name !== "AbortError") state.textContent = `Live log unavailable: ${errorText(error)}`;
    });
  return h(
    "div",
    {},
    heading(h("span", {}, "Attempt ", shortId(instance.id))),
    summary,
    section(
      "Log",
      h("div", { class: "toolbar" }, state, h("label", { for: "follow-log" }, follow, " Follow")),
      empty,
      log,
    ),
  );
}

function instanceDetails(instance, job) {
  const metrics = instance.metrics;
  return details([
    ["Task", h("a", { href: `/tasks/${instance.task_id}` }, shortId(instance.task_id))],
    ["Job", h("a", { href: `/jobs/${instance.job_id}` }, job ? job.name : shortId(instance.job_id))],
    ["Status", badge(instance.status)],
    ["Attempt", String(instance.attempt)],
    ["Agent", instance.agent_id],
    ["Exit code", instance.exit_code === null ? null : String(instance.exit_code)],
    ["Signal", instance.signal === null ? null : String(instance.signal)],
    ["Error", instance.error ? h("pre", { class: "code" }, instance.error) : null],
    ["Dispatched", time(instance.dispatched_at)],
    ["Started", time(instance.started_at)],
    ["Completed", time(instance.completed_at)],
    ["Duration", metrics ? duration(metrics.duration_secs) : null],
    ["CPU time", metrics ? duration(metrics.cpu_secs) : null],
    ["Peak memory", metrics ? bytes(metrics.peak_rss_bytes) : null],
    ["Output", instance.output_truncated ? "truncated at the job's output limit" : null],
  ]);
}
