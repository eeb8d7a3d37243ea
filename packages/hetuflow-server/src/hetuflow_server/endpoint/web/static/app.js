// The hetuflow web UI: routes, the session bar and start-up. Native ES modules, no build step, no
// dependencies; the server serves these files from its wheel (hetuflow_server.endpoint.web).

import { UNAUTHORIZED_EVENT, session } from "./api.js";
import { interceptLinks, navigate, render, route } from "./router.js";
import { agentsView } from "./views/agents.js";
import { auditView } from "./views/audit.js";
import { dashboardView } from "./views/dashboard.js";
import { eventsView } from "./views/events.js";
import { editFlowView, flowRunView, flowView, flowsView, newFlowView } from "./views/flows.js";
import { instanceView } from "./views/instances.js";
import { editJobView, jobView, jobsView, newJobView } from "./views/jobs.js";
import { loginView } from "./views/login.js";
import { notificationsView } from "./views/notifications.js";
import { editScheduleView, newScheduleView, scheduleView, schedulesView } from "./views/schedules.js";
import { taskView, tasksView } from "./views/tasks.js";
import { tokensView } from "./views/tokens.js";

// The first path segments here must match CLIENT_SECTIONS of the server's web module (its SPA fallback).
route("/", dashboardView, { title: "Dashboard" });
route("/login", loginView, { title: "Sign in", open: true });
route("/jobs", jobsView, { title: "Jobs" });
route("/jobs/new", newJobView, { title: "New job" });
route("/jobs/:id", jobView, { title: "Job" });
route("/jobs/:id/edit", editJobView, { title: "Edit job" });
route("/schedules", schedulesView, { title: "Schedules" });
route("/schedules/new", newScheduleView, { title: "New schedule" });
route("/schedules/:id", scheduleView, { title: "Schedule" });
route("/schedules/:id/edit", editScheduleView, { title: "Edit schedule" });
route("/tasks", tasksView, { title: "Tasks" });
route("/tasks/:id", taskView, { title: "Task" });
route("/instances/:id", instanceView, { title: "Attempt", section: "tasks" });
route("/agents", agentsView, { title: "Agents" });
route("/flows", flowsView, { title: "Flows" });
route("/flows/new", newFlowView, { title: "New flow" });
route("/flows/:id", flowView, { title: "Flow" });
route("/flows/:id/edit", editFlowView, { title: "Edit flow" });
route("/flows/:id/runs/:run", flowRunView, { title: "Flow run" });
route("/flow-runs/:run", flowRunView, { title: "Flow run", section: "flows" });
route("/events", eventsView, { title: "Events" });
route("/notifications", notificationsView, { title: "Notifications" });
route("/tokens", tokensView, { title: "Tokens" });
route("/audit", auditView, { title: "Audit trail" });

/** Show the navigation and the token's scope only while signed in; the admin-only sections only to admins. */
function showSession() {
  const signedIn = Boolean(session.token);
  document.getElementById("nav").hidden = !signedIn;
  for (const link of document.querySelectorAll("#nav a[data-admin]")) link.parentElement.hidden = !session.canWrite;
  document.getElementById("session").hidden = !signedIn;
  const scope = document.getElementById("scope");
  scope.textContent = session.canWrite ? "admin" : "read-only";
  scope.title = session.canWrite ? "This token may change things" : "This token may only read: write buttons are disabled";
}

document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  navigate("/login", { replace: true });
});
window.addEventListener(UNAUTHORIZED_EVENT, () => {
  if (window.location.pathname === "/login") return;
  const here = encodeURIComponent(window.location.pathname + window.location.search);
  navigate(`/login?reason=expired&next=${here}`, { replace: true });
});
// Every render may follow a sign-in or sign-out: keep the header in step.
document.getElementById("main").addEventListener("hetuflow:rendered", showSession);
interceptLinks();
render();
