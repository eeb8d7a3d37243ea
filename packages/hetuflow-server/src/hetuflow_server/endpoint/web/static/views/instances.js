// One attempt of a task: where and how it ran, and its log, followed live until the attempt ends. Each chunk
// shows when it arrived; the log can be searched (matching chunks only, hits marked) and downloaded whole.

import { api } from "../api.js";
import { badge, bytes, details, duration, errorText, h, heading, notify, section, shortId, time, timeText } from "../dom.js";
import { tailLog } from "../logtail.js";

// Chunks kept on screen; older ones are dropped so a chatty process cannot exhaust the tab's memory (the
// download still gives the whole log).
const MAX_CHUNKS = 5000;
const DOWNLOAD_PAGE = 10000;

/** Every chunk of the attempt's log, page after page from the start (what the download saves). */
export async function wholeLog(instanceId, signal) {
  const chunks = [];
  let after = 0;
  for (;;) {
    const page = await api.get(`/instances/${instanceId}/logs`, { after_seq: after, limit: DOWNLOAD_PAGE }, { signal });
    chunks.push(...page.items);
    if (!page.items.length || page.next_after_seq === after) return chunks;
    after = page.next_after_seq;
  }
}

/** Save ``text`` as a file named ``name`` through a temporary object URL (no server round trip). */
function saveText(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** ``text`` as nodes with every case-insensitive occurrence of ``needle`` in a <mark>. */
function marked(text, needle) {
  if (!needle) return [text];
  const nodes = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (let hit = lower.indexOf(needle); hit >= 0; hit = lower.indexOf(needle, at)) {
    nodes.push(text.slice(at, hit), h("mark", {}, text.slice(hit, hit + needle.length)));
    at = hit + needle.length;
  }
  nodes.push(text.slice(at));
  return nodes;
}

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
  const stamps = h("input", { type: "checkbox", checked: true, id: "log-times" });
  const search = h("input", { type: "search", id: "log-search", placeholder: "Search the log", "aria-label": "Search the log", autocomplete: "off" });
  const found = h("span", { class: "muted", role: "status" });
  const empty = h("p", { class: "empty" }, "No output yet.");
  let dropped = 0;
  const paint = (chunk) => {
    const needle = search.value.toLowerCase();
    const { entry } = chunk;
    chunk.node.hidden = Boolean(needle) && !entry.content.toLowerCase().includes(needle);
    chunk.node.replaceChildren(
      stamps.checked ? h("span", { class: "ts", title: entry.ts }, `${timeText(entry.ts).slice(11, 19)} `) : null,
      ...marked(entry.content, needle),
    );
  };
  const chunks = [];
  const recount = () => {
    const needle = search.value.trim();
    if (!needle) return found.replaceChildren();
    const hits = chunks.filter((chunk) => !chunk.node.hidden).length;
    found.textContent = `${hits} of ${chunks.length} chunks match${dropped ? " (older chunks are off screen: download the whole log)" : ""}`;
  };
  const onEntry = (entry) => {
    empty.remove();
    const chunk = { entry, node: h("span", { class: `log-${entry.stream}`, "data-seq": entry.seq, "data-ts": entry.ts }) };
    paint(chunk);
    chunks.push(chunk);
    log.append(chunk.node);
    while (chunks.length > MAX_CHUNKS) {
      chunks.shift().node.remove();
      dropped += 1;
    }
    if (search.value) recount();
    if (follow.checked) log.scrollTop = log.scrollHeight;
  };
  const repaint = () => {
    for (const chunk of chunks) paint(chunk);
    recount();
  };
  search.addEventListener("input", repaint);
  stamps.addEventListener("change", repaint);
  const download = h("button", { type: "button", class: "btn" }, "Download log");
  download.addEventListener("click", async () => {
    download.disabled = true;
    try {
      const all = await wholeLog(params.id, signal);
      saveText(`attempt-${params.id}.log`, all.map((entry) => entry.content).join(""));
      notify(`Saved ${all.length} chunks.`);
    } catch (error) {
      if (error.name !== "AbortError") notify(errorText(error), "error");
    } finally {
      download.disabled = false;
    }
  });
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
      h("div", { class: "log-tools" }, search, found, h("label", { for: "log-times" }, stamps, " Times"), download),
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
