// Tokens (admin only): issue one — its text is shown once, here, and never again — list the issued ones and
// revoke them. The server keeps only each token's record (jti, name, scope, times), never the token.

import { ApiError, api } from "../api.js";
import { badge, confirmButton, h, heading, notify, section, shortId, submitButton, table, time } from "../dom.js";
import { check, field, input, number, onSubmit, select, summary, value } from "../forms.js";
import { pager } from "./shared.js";

const PAGE_SIZE = 100;
const DAY_SECS = 86400;

export async function tokensView({ query, signal, reload }) {
  let page;
  try {
    page = await api.get("/tokens", { limit: PAGE_SIZE, cursor: query.get("cursor") }, { signal });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    return h("div", {}, heading("Tokens"), h("p", { class: "notice" }, "Listing, issuing and revoking tokens needs an admin token."));
  }
  const issued = h("div", { "aria-live": "polite" });
  return h(
    "div",
    {},
    heading("Tokens"),
    section("Issue a token", issueForm(issued), issued),
    section(
      "Issued tokens",
      table(
        [
          ["Name", (t) => t.name],
          ["Scope", (t) => badge(t.scope)],
          ["Subject", (t) => t.subject],
          ["Id (jti)", (t) => shortId(t.jti)],
          ["Issued", (t) => time(t.created_at)],
          ["Expires", (t) => time(t.expires_at)],
          ["State", (t) => (t.revoked_at ? h("span", {}, badge("revoked"), " ", time(t.revoked_at)) : new Date(t.expires_at) < new Date() ? badge("expired") : badge("active"))],
          [
            "",
            (t) =>
              t.revoked_at
                ? ""
                : confirmButton("Revoke", async () => {
                    await api.delete(`/tokens/${t.jti}`);
                    notify(`Token ${t.name} revoked: it is refused from now on.`);
                    await reload();
                  }, { key: `revoke:${t.jti}` }),
          ],
        ],
        page.items,
        { empty: "No token issued yet." },
      ),
      pager("/tokens", query, page.next_cursor),
    ),
  );
}

function issueForm(issued) {
  const scope = select("scope", [["read", "read: may only look"], ["admin", "admin: may change things"], ["agent", "agent: for one agent's connection"]], "read");
  const agentField = field("Agent id", input("agent_id", { autocomplete: "off", placeholder: "worker-01" }), { help: "The agent this token lets connect." });
  const form = h(
    "form",
    { class: "inline-form token-form", novalidate: true },
    h(
      "div",
      { class: "grid" },
      field("Name", input("name", { autocomplete: "off", required: true, placeholder: "ci" }), { help: "To recognise it by in this list." }),
      field("Scope", scope),
      agentField,
      field("Valid for (days)", input("ttl_days", { type: "number", min: 1, max: 3650, value: 365 })),
    ),
    summary(),
    submitButton("Issue token"),
  );
  const showAgent = () => (agentField.hidden = scope.value !== "agent");
  scope.addEventListener("change", showAgent);
  showAgent();
  onSubmit(form, async () => {
    const errors = [];
    const body = { name: value(form, "name"), scope: value(form, "scope") };
    if (!body.name) errors.push({ path: "$.name", message: "a token needs a name" });
    const days = number(form, "ttl_days", errors);
    if (days !== null) body.ttl_secs = Math.round(days * DAY_SECS);
    if (body.scope === "agent") body.agent_id = value(form, "agent_id");
    check(errors);
    const result = await api.post("/tokens", body);
    form.reset();
    showAgent();
    issued.replaceChildren(shownOnce(result));
    notify(`Token ${result.info.name} issued.`);
  });
  return form;
}

/** The new token's text, with the warning that this is the only time it is shown. */
function shownOnce(result) {
  const text = h("code", { class: "token-once", id: "issued-token" }, result.token);
  const copy = h("button", { type: "button", class: "btn" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(result.token);
      notify("Copied.");
    } catch {
      notify("The browser refused the clipboard: select the token and copy it.", "error");
    }
  });
  return h(
    "div",
    { class: "notice", role: "alert" },
    h("p", {}, h("strong", {}, `Token "${result.info.name}" (${result.info.scope}): copy it now. `), "It is shown only this once; the server keeps no copy."),
    h("p", {}, text),
    copy,
  );
}
