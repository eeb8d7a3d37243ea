// The login page: paste an API token (read or admin scope); it is checked against the server before it is
// kept in sessionStorage for this tab.

import { ApiError, probeScope, session } from "../api.js";
import { h } from "../dom.js";
import { field, showErrors, summary, textarea } from "../forms.js";
import { navigate } from "../router.js";

export async function loginView({ query }) {
  const reason = query.get("reason");
  const form = h(
    "form",
    { class: "login", novalidate: true },
    h("h1", { tabindex: "-1" }, "Sign in"),
    h(
      "p",
      {},
      "Paste an API token with read or admin scope. Create one on the server host, naming the server's data directory (a token from another directory is refused): ",
      h("code", {}, "hetuflow-server token create --data-dir DIR --scope admin --name me"),
      ".",
    ),
    reason === "expired" ? h("p", { class: "notice error", role: "alert" }, "Your token was refused (expired or revoked): sign in again.") : null,
    field("API token", textarea("token", { rows: 4, autocomplete: "off", required: true, "aria-required": "true" }), {
      help: "Kept in this browser tab only (sessionStorage), sent as a bearer token.",
    }),
    summary(),
    h("button", { type: "submit", class: "btn primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.elements.namedItem("token").value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      if (!token) throw new ApiError(0, { title: "Missing token", detail: "paste a token first" });
      const scope = await probeScope(token);
      session.save(token, scope);
      const next = query.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
    } catch (error) {
      const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
      const detail = error.status === 403 ? "this token may not read the API (an agent token?)" : error.detail;
      showErrors(form, refused ? new ApiError(error.status, { title: "Token refused", detail }) : error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
