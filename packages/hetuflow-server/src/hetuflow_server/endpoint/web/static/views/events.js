// Events: fire a named event with a JSON payload (every enabled job whose enabled event schedule listens to
// that name gets a task, with the payload over the schedule's parameters), and the events jobs listen to.

import { api, listAll } from "../api.js";
import { badge, h, heading, notify, section, shortId, submitButton, table } from "../dom.js";
import { check, field, input, jsonObject, onSubmit, summary, textarea, value } from "../forms.js";
import { jobName, jobNames } from "./shared.js";

export async function eventsView({ query, signal }) {
  const [schedules, names] = await Promise.all([listAll("/schedules", {}, { signal }), jobNames(signal)]);
  const listening = schedules.filter((schedule) => schedule.kind === "event");
  const result = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "inline-form event-form", novalidate: true },
    field("Event name", input("event_name", { autocomplete: "off", list: "event-names", value: query.get("name") || "" })),
    h("datalist", { id: "event-names" }, [...new Set(listening.map((schedule) => schedule.event_name))].map((name) => h("option", { value: name }))),
    field("Payload (JSON object)", textarea("payload", { rows: 4, placeholder: '{"file": "2026-01-31.csv"}' }), {
      help: "Becomes the parameters of every task the event starts, over the schedule's own.",
    }),
    summary(),
    submitButton("Send event"),
  );
  onSubmit(form, async () => {
    const errors = [];
    const name = value(form, "event_name");
    if (!name) errors.push({ path: "$.event_name", message: "an event needs a name" });
    const payload = jsonObject(form, "payload", errors);
    check(errors);
    const answer = await api.post(`/events/${encodeURIComponent(name)}`, payload);
    notify(`Event ${name} sent: ${answer.task_ids.length} task(s) started.`);
    result.replaceChildren(
      answer.task_ids.length
        ? h("div", { class: "sent" }, h("p", {}, `Event ${name} started:`), h("ul", {}, answer.task_ids.map((id) => h("li", {}, h("a", { href: `/tasks/${id}` }, shortId(id))))))
        : h("p", { class: "empty sent" }, `No enabled job listens to ${name}: nothing started.`),
    );
  });
  return h(
    "div",
    {},
    heading("Events"),
    section("Send an event", form, result),
    section(
      "Jobs listening",
      table(
        [
          ["Event", (s) => h("code", {}, s.event_name)],
          ["Job", (s) => h("a", { href: `/jobs/${s.job_id}` }, jobName(names, s.job_id))],
          ["Schedule", (s) => h("a", { href: `/schedules/${s.id}` }, shortId(s.id))],
          ["Status", (s) => badge(s.status)],
        ],
        listening,
        { empty: "No event schedule yet: add one to a job (kind 'event')." },
      ),
    ),
  );
}
