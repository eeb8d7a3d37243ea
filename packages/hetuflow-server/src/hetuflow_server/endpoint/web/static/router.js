// Client-side routing over the History API.
//
// Each route is a path pattern and a view: ``async (ctx) => Node``, where ctx holds the path parameters, the
// query (URLSearchParams), an AbortSignal that fires when the user leaves the page (it stops the view's
// fetches, refresh timers and log streams) and ``reload()`` to render the page again. The server answers
// index.html for every client path (see hetuflow_server.endpoint.web), so deep links and reloads work.

import { ApiError, session } from "./api.js";
import { h, errorPanel } from "./dom.js";

const routes = [];
let current = null;

/** Register ``view`` for ``pattern`` ("/jobs/:id"); ``title`` names the page, ``section`` the nav entry. */
export function route(pattern, view, { title, section = pattern.split("/")[1] || "dashboard", open = false } = {}) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), names, view, title, section, open });
}

/** Go to ``path`` (with its query) inside the app. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

/** Render the page for the current location. */
export async function render() {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const { pathname, search } = window.location;
  const match = find(pathname);
  if (!match?.route.open && !session.token) {
    const next = pathname === "/" ? "" : `?next=${encodeURIComponent(pathname + search)}`;
    navigate(`/login${next}`, { replace: true });
    return;
  }
  const main = document.getElementById("main");
  main.setAttribute("aria-busy", "true");
  markSection(match?.route.section);
  let node;
  let title = "Not found";
  try {
    if (!match) {
      node = h("div", {}, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "No page at this address. ", h("a", { href: "/" }, "Back to the dashboard.")));
    } else {
      title = match.route.title;
      const ctx = { params: match.params, query: new URLSearchParams(search), signal: controller.signal, reload: render };
      node = await match.route.view(ctx);
    }
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    if (error instanceof ApiError && error.status === 401) return; // the unauthorized handler navigates
    node = h("div", {}, h("h1", { tabindex: "-1" }, title), errorPanel(error));
  }
  if (controller.signal.aborted) return;
  document.title = `${title} · hetuflow`;
  main.replaceChildren(node);
  main.removeAttribute("aria-busy");
  main.dispatchEvent(new Event("hetuflow:rendered"));
  // Move focus to the new page's heading so keyboard and screen-reader users land on it.
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
}

function find(pathname) {
  for (const candidate of routes) {
    const found = candidate.regex.exec(pathname);
    if (found) {
      const params = {};
      candidate.names.forEach((name, index) => (params[name] = decodeURIComponent(found[index + 1])));
      return { route: candidate, params };
    }
  }
  return null;
}

function markSection(section) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** Follow same-origin links inside the app without reloading it. */
export function interceptLinks() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("a[href]");
    // Attributes, not properties: an SVG <a> (the flow graph's steps) has no string href or target.
    if (!link || link.getAttribute("target") || link.hasAttribute("download")) return;
    const url = new URL(link.getAttribute("href"), window.location.href);
    if (url.origin !== window.location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/static/")) return;
    if (url.pathname === window.location.pathname && url.search === window.location.search && url.hash) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", render);
}
