"""The web UI in a real browser: headless Chromium driven over the DevTools protocol against a real server.

Sign-in with a token (a bad or agent token is refused; a read token sees every write button disabled), a job
created through the form and triggered with JSON parameters, its task followed to success on a real agent
and its log arriving live in the log view, cancel and retry from the task page, and the schedule form's
live preview across the 2026 spring-forward of America/New_York. Then the operators' pages: the task
history without planned runs (those are under Upcoming), the dashboard chart drawn from the stats endpoint,
a token issued and revoked on the Tokens page, the whole log downloaded and searched, a flow created and
edited in the form whose failed step is one click from its run (and the run one click from the task), a
flow's schedules made, listed with their next fire times, edited and deleted from the flow's page, the job
page (run grid, next runs, delete) with schedule edit and delete, an event sent, the audit trail of a change
made in the UI, a notification delivery listed, an offline agent forgotten, run durations in the task lists,
and every page free of the texts null and undefined and of clipped selects (with screenshots of the main pages
for docs/web-ui.md). Every page must run without a script error or a Content-Security-Policy violation.

Needs a Chromium binary (``chromium`` on PATH, or ``HETUFLOW_CHROMIUM``); without one the module is
skipped, unless ``HETUFLOW_REQUIRE_BROWSER=1`` makes that a failure. Chromium is driven by a small CDP
client over the DevTools WebSocket (the ``websockets`` library), so no browser download is ever needed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from pipelinefixtures import AgentPool, Pipeline, wait_for
from webhookfixtures import Receiver, running_receiver

CHROMIUM = os.environ.get("HETUFLOW_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
if CHROMIUM is None:
    reason = "no Chromium binary (install the Debian package 'chromium' or set HETUFLOW_CHROMIUM)"
    if os.environ.get("HETUFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and HETUFLOW_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(f"{reason}; set HETUFLOW_REQUIRE_BROWSER=1 to fail instead", allow_module_level=True)

from websockets.sync.client import ClientConnection, connect  # noqa: E402 - only needed with a browser

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
START_TIMEOUT_SECS = 20.0
CALL_TIMEOUT_SECS = 30.0
WAIT_SECS = 20.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
)


class BrowserError(AssertionError):
    """The browser answered a command with an error, or a page script threw."""


class Browser:
    """A headless Chromium process and one DevTools connection to it."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.log_path = profile.parent / "chromium.log"
        with self.log_path.open("wb") as log:
            # A session of its own: the browser's helper processes are stopped with it, as one group.
            self.process = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TZ": "UTC", "LANG": "en_US.UTF-8"},
                start_new_session=True,
            )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self._exit = contextlib.ExitStack()
        self.ws: ClientConnection = self._exit.enter_context(
            connect(self._devtools_url(profile), max_size=None, open_timeout=10)
        )

    def _devtools_url(self, profile: Path) -> str:
        # Chromium writes its port and browser target path here once the DevTools server listens.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"chromium exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                port, path = port_file.read_text().split("\n")[:2]
                if port and path:
                    return f"ws://127.0.0.1:{int(port)}{path}"
            time.sleep(0.05)
        raise AssertionError(f"chromium did not open DevTools within {START_TIMEOUT_SECS:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Send one DevTools command and return its result; events arriving meanwhile are kept."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + CALL_TIMEOUT_SECS
        while True:
            answer = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def new_page(self, base_url: str) -> Page:
        """A fresh tab (its own sessionStorage) attached over a flat DevTools session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(domain, session=session)
        return Page(self, target, session, base_url)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        self._exit.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # helpers left behind by the browser


class Page:
    """One tab: navigate, run script, fill and click, wait for conditions, collect script errors."""

    def __init__(self, browser: Browser, target: str, session: str, base_url: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.base_url = base_url

    def eval(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (awaiting a promise); its JSON value."""
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, path: str) -> None:
        """Load ``path`` of the server in this tab and wait until the app rendered it."""
        self.eval("window.leftBehind = true")  # marks the old document, so the wait below sees the new one
        self.browser.call("Page.navigate", {"url": self.base_url + path}, session=self.session)
        self.wait(
            "!window.leftBehind && document.getElementById('main')?.ariaBusy === null", f"{path} to render"
        )

    def wait(self, expression: str, what: str, timeout: float = WAIT_SECS) -> Any:
        """Poll ``expression`` until it is truthy; its value. Fails with the page's text after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrowserError):
                value = self.eval(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                text = self.eval("document.body ? document.body.innerText : ''")
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}; the page says:\n{text}"
                )
            time.sleep(0.1)

    def wait_path(self, pattern: str) -> str:
        """Wait until the app shows a page whose path matches the regular expression ``pattern``; its path."""
        check = f"/^{pattern}$/.test(location.pathname) && document.getElementById('main').ariaBusy === null"
        self.wait(check, f"a page at {pattern}")
        return str(self.eval("location.pathname"))

    def wait_search(self, search: str) -> None:
        """Wait until the app shows the page of the current path with the query ``search`` ("?a=1")."""
        rendered = "document.getElementById('main').ariaBusy === null"
        check = f"location.search === {json.dumps(search)} && {rendered}"
        self.wait(check, f"a page at {search}")

    def wait_created(self, section: str) -> str:
        """Wait for the page of a resource just created under ``/section/``; its id."""
        return self.wait_path(rf"\/{section}\/{UUID}").rpartition("/")[2]

    def fill(self, selector: str, value: str) -> None:
        """Set the value of a form control as typing would (input and change events)."""
        self.eval(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" el.value = {json.dumps(value)};"
            " el.dispatchEvent(new Event('input', {bubbles: true}));"
            " el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )

    def click(self, selector: str) -> None:
        self.wait(f"!!document.querySelector({json.dumps(selector)})", f"{selector} to exist")
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def click_text(self, tag: str, text: str) -> None:
        """Click the first ``tag`` element whose text is ``text``."""
        find = (
            f"[...document.querySelectorAll({json.dumps(tag)})]"
            f".find(el => el.textContent.trim() === {json.dumps(text)})"
        )
        self.wait(f"!!{find}", f"a {tag} saying {text!r}")
        self.eval(f"{find}.click()")

    def text(self, selector: str) -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)})?.textContent ?? ''"))

    def sign_in(self, token: str) -> None:
        self.goto("/login")
        self.fill("[name=token]", token)
        self.click("form.login button[type=submit]")
        self.wait(
            "location.pathname === '/' && document.querySelector('h1')?.textContent === 'Dashboard'",
            "sign-in",
        )

    def script_errors(self) -> list[str]:
        """Uncaught exceptions, console errors and CSP violations of this tab (network errors aside)."""
        self.eval("1")  # flush the events sent before this point
        errors = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(json.dumps(params.get("args"))[:500])
            elif event["method"] == "Log.entryAdded":
                entry = params["entry"]
                # A refused token or a 409 shows as a failed resource load: expected, and the UI handles it.
                if entry["level"] == "error" and entry.get("source") != "network":
                    errors.append(entry["text"])
        return errors

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    assert CHROMIUM is not None
    chromium = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def page(browser: Browser, pipeline: Pipeline) -> Iterator[Page]:
    """A fresh tab on the module's server; the test fails if its pages threw or broke the CSP."""
    tab = browser.new_page(pipeline.server.url)
    try:
        yield tab
        assert tab.script_errors() == []
    finally:
        tab.close()


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    """A webhook receiver answering 204 to every POST (what the notifications page lists)."""
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def pipeline_env(hook: Receiver) -> dict[str, str]:
    """The module's server knows one webhook target, ``ui-hook``."""
    targets = {"ui-hook": {"kind": "webhook", "url": hook.url, "timeout_secs": 5}}
    return {"HETUFLOW_NOTIFICATIONS__TARGETS": json.dumps(targets)}


def token(pipeline: Pipeline, scope: str, **extra: str) -> str:
    body = {"name": f"ui-{scope}-{time.monotonic_ns()}", "scope": scope, **extra}
    return str(pipeline.call("POST", "/tokens", json=body, expect=201)["token"])


def test_a_bad_token_is_refused_at_login(page: Page, pipeline: Pipeline) -> None:
    page.goto("/jobs")
    page.wait_path(r"\/login")
    assert page.eval("location.search") == "?next=%2Fjobs"
    for bad, message in (
        ("not-a-token", "Token refused"),
        (token(pipeline, "agent", agent_id="ui-x"), "agent"),
    ):
        page.fill("[name=token]", bad)
        page.click("form.login button[type=submit]")
        page.wait(
            f"document.querySelector('.form-errors').textContent.includes({json.dumps(message)})", message
        )
        assert page.eval("location.pathname") == "/login"
        assert page.eval("sessionStorage.getItem('hetuflow.token')") is None
    # A good token then leads where the user wanted to go.
    page.fill("[name=token]", pipeline.server.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_path(r"\/jobs")
    assert page.text("#scope") == "admin"


def test_admin_creates_triggers_and_follows_a_job(
    page: Page, pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start()
    gate = tmp_path / "gate"
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/jobs']")
    page.wait_path(r"\/jobs")
    page.click_text("button", "New job")
    page.wait_path(r"\/jobs\/new")
    name = f"ui-{agents.suite}"
    script = "\n".join(
        [
            'echo "hello from the ui: $HETUFLOW_PARAMS"',
            f"while [ ! -e {gate} ]; do sleep 0.05; done",
            "echo finished",
        ]
    )
    for selector, value in {
        "[name=name]": name,
        "[name='config.script']": script,
        "[name='config.env']": "GREETING=hi",
        "[name='config.timeout_secs']": "30",
        "[name='config.retry.max_retries']": "1",
        "[name='config.limits.memory_mb']": "512",
        "[name='config.target.labels']": f"suite={agents.suite}",
        "[name='config.concurrency']": "forbid",
    }.items():
        page.fill(selector, value)
    page.click("form.job-form button[type=submit]")
    job_id = page.wait_created("jobs")
    config = pipeline.call("GET", f"/jobs/{job_id}")["config"]
    assert config["script"] == script
    assert config["env"] == {"GREETING": "hi"}
    assert config["timeout_secs"] == 30
    assert config["retry"]["max_retries"] == 1
    assert config["limits"]["memory_mb"] == 512
    assert config["target"] == {"labels": {"suite": agents.suite}, "routing": "any", "agent_id": None}
    assert config["concurrency"] == "forbid"

    page.fill("[name=parameters]", '{"who": "browser"}')
    page.click_text("button", "Trigger now")
    task_id = page.wait_created("tasks")
    assert pipeline.task(task_id)["parameters"] == {"who": "browser"}
    page.click_text("a", "View log")  # appears once the task is dispatched (the page refreshes itself)
    page.wait_path(rf"\/instances\/{UUID}")
    page.wait(
        "document.querySelector('.log').textContent.includes('hello from the ui')", "the first log line"
    )
    assert "browser" in page.text(".log")
    assert "finished" not in page.text(".log")
    gate.touch()  # the process goes on only now: what follows arrives through the live stream
    page.wait("document.querySelector('.log').textContent.includes('finished')", "the live log line")
    page.wait("document.querySelector('.log-state').dataset.ended === 'succeeded'", "the end of the attempt")
    assert pipeline.task(task_id)["status"] == "succeeded"

    page.goto(f"/tasks/{task_id}")  # a deep link: the server answers the app for client routes
    page.wait(
        "document.querySelector('.page-head .badge')?.textContent === 'succeeded'", "the succeeded task"
    )
    page.goto("/tasks")
    page.click("input[name=status][value=succeeded]")
    page.click_text("button", "Apply")
    page.wait(
        f"location.search.includes('status=succeeded') && document.body.innerText.includes('{task_id[-8:]}')",
        "the filtered list",
    )


def test_cancel_and_retry_from_the_task_page(page: Page, pipeline: Pipeline) -> None:
    # No agent carries this label: the task stays pending until cancelled.
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    task_id = pipeline.trigger(job_id)
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/tasks/{task_id}")
    page.click_text("button", "Cancel")
    page.wait(
        "document.querySelector('.page-head .badge')?.textContent === 'cancelled'", "the cancelled task"
    )
    assert pipeline.task(task_id)["status"] == "cancelled"
    page.click_text("button", "Retry")
    page.wait(f"location.pathname !== '/tasks/{task_id}'", "the new task's page")
    retried = page.wait_created("tasks")
    assert retried != task_id
    assert pipeline.task(retried)["job_id"] == job_id
    pipeline.call("POST", f"/tasks/{retried}/cancel")


def test_a_secret_env_value_shows_masked_and_survives_an_edit(page: Page, pipeline: Pipeline) -> None:
    secret = "ui-s3cret-4d1e"
    config = {
        "command": "bash",
        "script": "true",
        "env": {"API_TOKEN": secret, "REGION": "eu"},
        "secret_env": ["API_TOKEN"],
    }
    job_id = pipeline.call("POST", "/jobs", json={"name": "ui-secret", "config": config}, expect=201)["id"]
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/jobs/{job_id}")
    page.wait("document.body.innerText.includes('API_TOKEN=***')", "the masked secret")
    assert secret not in page.text("body")
    page.goto(f"/jobs/{job_id}/edit")
    page.wait(
        "document.querySelector(\"[name='config.secret_env']\")?.value === 'API_TOKEN'", "the secret names"
    )
    assert secret not in page.eval("document.querySelector(\"[name='config.env']\").value")
    page.fill("[name='config.env']", "API_TOKEN=***\nREGION=us")
    page.click("form.job-form button[type=submit]")
    page.wait(f"location.pathname === '/jobs/{job_id}'", "the saved job's page")
    page.wait("document.body.innerText.includes('REGION=us')", "the saved change")
    with psycopg.connect(pipeline.database_url) as conn:
        (stored,) = conn.execute("SELECT config FROM sched_job WHERE id = %s", (job_id,)).fetchone() or (
            None,
        )
    assert stored["env"] == {"API_TOKEN": secret, "REGION": "us"}
    assert stored["secret_env"] == ["API_TOKEN"]


def test_a_read_token_sees_write_buttons_disabled(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    task_id = pipeline.trigger(job_id)
    pipeline.call("POST", f"/tasks/{task_id}/cancel")
    issued = pipeline.call("POST", "/tokens", json={"name": "ui-read", "scope": "read"}, expect=201)
    page.sign_in(issued["token"])
    assert page.text("#scope") == "read-only"
    every_write_disabled = (
        "(() => { const b = [...document.querySelectorAll('[data-write]')];"
        " return b.length > 0 && b.every(x => x.disabled) ? b.length : 0; })()"
    )
    for path in (f"/jobs/{job_id}", "/jobs", "/schedules", f"/tasks/{task_id}", "/jobs/new"):
        page.goto(path)
        assert page.wait(every_write_disabled, f"disabled write buttons on {path}"), path
    page.goto(f"/jobs/{job_id}")
    assert page.eval(
        "[...document.querySelectorAll('button')].find(b => b.textContent === 'Trigger now').disabled"
    )
    # Revoked while the page is open: the next call answers 401 and the UI returns to the sign-in page.
    pipeline.call("DELETE", f"/tokens/{issued['info']['jti']}", expect=204)
    page.click("#nav a[href='/agents']")
    page.wait_path(r"\/login")
    assert page.eval("location.search") == "?reason=expired&next=%2Fagents"
    assert page.eval("sessionStorage.getItem('hetuflow.token')") is None
    assert "refused" in page.text("form.login")


def test_schedule_preview_follows_the_spring_forward(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/schedules/new?job_id={job_id}")
    page.fill("[name=cron_expression]", "30 2 * * *")
    page.fill("[name=timezone]", "America/New_York")
    page.fill("[name=preview_from]", "2026-03-07T12:00:00")  # the browser runs in UTC
    # Each fire time as the API gave it (the schedule's zone and offset) in its datetime, shown in the UI's
    # format.
    fire_times = "[...document.querySelectorAll('.fire-times time')].map(t => t.dateTime)"
    page.wait(f"{fire_times}[0] === '2026-03-08T03:00:00-04:00'", "the DST-adjusted preview")
    assert page.text(".fire-times code") == "2026-03-08 03:00:00 -04:00"
    assert page.text(".cron-words") == "Fires at 02:30 every day, by the clock of America/New_York."
    # 02:30 does not exist on 8 March: it fires once, right after the jump; then 02:30 again by the new clock.
    assert page.eval(fire_times)[:3] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]
    page.fill("[name=cron_expression]", "61 2 * * *")
    page.wait(
        "document.querySelector('.preview [role=status]').textContent.includes('cron')", "the preview's error"
    )
    assert page.eval(fire_times) == []
    page.fill("[name=cron_expression]", "30 2 * * *")
    page.wait(f"{fire_times}.length > 0", "the preview again")
    page.click("form.schedule-form button[type=submit]")
    schedule_id = page.wait_created("schedules")
    stored = pipeline.call("GET", f"/schedules/{schedule_id}")
    assert (stored["kind"], stored["cron_expression"], stored["timezone"]) == (
        "cron",
        "30 2 * * *",
        "America/New_York",
    )
    page.click_text("button", "Disable")
    page.wait(
        "document.querySelector('.page-head .badge')?.textContent === 'disabled'", "the disabled schedule"
    )
    assert pipeline.call("GET", f"/schedules/{schedule_id}")["status"] == "disabled"


def test_the_log_stream_parser_takes_events_split_anywhere(page: Page) -> None:
    # What the server sends, cut at every position: the parser must give the same events however it arrives.
    stream = (
        ': keep-alive\n\nevent: log\ndata: {"seq": 1}\n\nevent: log\nid: 7\ndata: {"seq": 2}\n\n'
        'event: end\r\ndata: {"status":\r\ndata:  "ok"}\r\n\r\n'
    )
    page.goto("/login")
    events = page.eval(
        f"""(async () => {{
            const {{ EventStreamParser }} = await import("/static/logtail.js");
            const text = {json.dumps(stream)};
            const results = [];
            for (let cut = 0; cut <= text.length; cut += 1) {{
                const parser = new EventStreamParser();
                const events = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
                results.push(JSON.stringify(events));
            }}
            return [...new Set(results)];
        }})()"""
    )
    assert [json.loads(variant) for variant in events] == [
        [
            {"event": "log", "data": '{"seq": 1}', "id": None},
            {"event": "log", "data": '{"seq": 2}', "id": "7"},
            {"event": "end", "data": '{"status":\n "ok"}', "id": None},
        ]
    ]


SCREENSHOTS = os.environ.get("HETUFLOW_UI_SCREENSHOTS")
"""A folder to save the main pages' screenshots in (``docs/images`` refreshes those of docs/web-ui.md)."""
DOC_PAGES = {
    "dashboard",
    "job",
    "tasks",
    "flow",
    "flow-run",
    "attempt",
    "tokens",
    "schedule",
    "schedule-edit",
    "audit",
    "notifications",
}
"""The pages docs/web-ui.md shows."""
CLIPPED_CHOICES = """(() => {
    // The choices of every visible select that its box is too narrow to show whole (a select cannot wrap).
    const measure = document.createElement("canvas").getContext("2d");
    const cut = [];
    for (const box of document.querySelectorAll("select")) {
        if (!box.offsetParent) continue;
        const style = getComputedStyle(box);
        measure.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        const arrow = 20; // the room Chromium keeps for the drop-down arrow
        const room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - arrow;
        for (const option of box.options) {
            if (measure.measureText(option.text).width > room) cut.push(`${box.name}: ${option.text}`);
        }
    }
    return cut;
})()"""


def shoot(page: Page, name: str, folder: Path) -> Path:
    """Save a PNG of the whole rendered page as ``<folder>/<name>.png``."""
    size = page.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = page.browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 2400), "scale": 1},
        },
        session=page.session,
    )
    target = folder / f"{name}.png"
    target.write_bytes(base64.b64decode(shot["data"]))
    return target


def seconds_text(secs: float) -> str:
    """A run time below two minutes as the UI writes it ("210 ms", "1.25 s", "12.5 s")."""
    if secs < 1:
        return f"{round(secs * 1000)} ms"
    return f"{secs:.2f} s" if secs < 10 else f"{secs:.1f} s"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def run_to_end(pipeline: Pipeline, agents: AgentPool, script: str) -> tuple[str, str]:
    """A job running ``script`` on this test's agent, triggered once and followed to its end: (job, task)."""
    job_id = pipeline.create_job(suite=agents.suite, script=script)
    task_id = pipeline.trigger(job_id)
    pipeline.wait_task(task_id)
    return job_id, task_id


def whole_log(pipeline: Pipeline, instance_id: str) -> list[dict[str, Any]]:
    """Every stored chunk of an attempt's log, page after page."""
    chunks: list[dict[str, Any]] = []
    after = 0
    while True:
        page = pipeline.call("GET", f"/instances/{instance_id}/logs", params={"after_seq": after})
        chunks += page["items"]
        if not page["items"]:
            return chunks
        after = page["next_after_seq"]


def test_tasks_page_opens_on_history_with_no_future_rows(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    now = datetime.now(UTC)
    past = pipeline.trigger(job_id, scheduled_at=iso(now - timedelta(hours=1)))
    future = pipeline.trigger(job_id, scheduled_at=iso(now + timedelta(days=1)))
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/tasks']")
    page.wait_path(r"\/tasks")
    page.wait(f"document.body.innerText.includes('{past[-8:]}')", "the past task in the history")
    assert page.text(".tabs [aria-current=page]") == "History"
    scheduled = page.eval(
        "[...document.querySelectorAll('tbody tr td:nth-child(5) time')].map(t => t.dateTime)"
    )
    assert scheduled, "the history lists tasks"
    loaded = datetime.now(UTC)
    assert all(datetime.fromisoformat(at) <= loaded for at in scheduled)
    assert future[-8:] not in page.text("main")
    page.click_text("a", "Upcoming")
    page.wait(f"document.body.innerText.includes('{future[-8:]}')", "the planned task under Upcoming")
    assert past[-8:] not in page.text("main")
    assert page.text(".tabs [aria-current=page]") == "Upcoming"
    for task_id in (past, future):
        pipeline.call("POST", f"/tasks/{task_id}/cancel")


def test_a_chart_renders_with_data_from_the_aggregation_endpoint(
    page: Page, pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start()
    run_to_end(pipeline, agents, "echo charted")
    stats = pipeline.call("GET", "/stats/runs")
    succeeded = sum(bucket["succeeded"] for bucket in stats["buckets"])
    assert succeeded >= 1
    page.sign_in(pipeline.server.admin_token)
    page.wait("document.querySelectorAll('svg.chart .bar').length === 24", "the 24 hourly bars")
    drawn = page.eval(
        "[...document.querySelectorAll('svg.chart rect[data-series=succeeded]')]"
        ".reduce((sum, r) => sum + Number(r.getAttribute('height')), 0)"
    )
    assert drawn > 0
    assert f"{succeeded} succeeded" in page.text(".chart-summary")
    page.wait("document.querySelectorAll('.bar-rows .hbar').length > 0", "the per-job bars")
    page.click_text("a", "Last 7 days")
    page.wait("document.querySelectorAll('svg.chart .bar').length === 168", "the 168 hourly bars of a week")


def test_a_token_issued_in_the_ui_works_for_the_api(page: Page, pipeline: Pipeline) -> None:
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/tokens']")
    page.wait_path(r"\/tokens")
    page.fill("[name=name]", "from-the-ui")
    page.fill("[name=scope]", "read")
    page.click("form.token-form button[type=submit]")
    issued = page.wait("document.querySelector('#issued-token')?.textContent", "the token, shown once")
    with httpx.Client(base_url=pipeline.server.url, headers={"Authorization": f"Bearer {issued}"}) as client:
        assert client.get("/api/v1/jobs").status_code == 200
        assert client.post("/api/v1/jobs", json={}).status_code == 403  # read scope, as chosen
        page.goto("/tokens")  # the list shows the record, never the token again
        assert issued not in page.text("main")
        row = "[...document.querySelectorAll('tr')].find(r => r.textContent.includes('from-the-ui'))"
        revoke = f"{row}.querySelector('button')"
        page.eval(f"{revoke}.click()")
        page.wait(f"{revoke}.textContent.startsWith('Confirm')", "the revoke confirmation")
        page.eval(f"{revoke}.click()")
        page.wait(
            "[...document.querySelectorAll('tr')].find(r => r.textContent.includes('from-the-ui'))"
            ".textContent.includes('revoked')",
            "the revoked token",
        )
        assert client.get("/api/v1/jobs").status_code == 401


def test_download_gives_the_whole_log(
    page: Page, pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start()
    _, task_id = run_to_end(pipeline, agents, 'for i in $(seq 1 3000); do echo "line $i of the log"; done')
    (instance,) = pipeline.instances(task_id)
    stored = "".join(chunk["content"] for chunk in whole_log(pipeline, instance["id"]))
    assert stored.startswith("line 1 of the log\n")
    assert stored.endswith("line 3000 of the log\n")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.browser.call("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/instances/{instance['id']}")
    page.wait("document.querySelector('.log-state').dataset.ended === 'succeeded'", "the end of the attempt")
    chunks = page.eval("document.querySelectorAll('.log > span').length")
    assert page.eval("document.querySelectorAll('.log > span > .ts').length") == chunks  # a time per chunk
    page.click_text("button", "Download log")
    saved = downloads / f"attempt-{instance['id']}.log"
    deadline = time.monotonic() + WAIT_SECS
    while not (saved.exists() and saved.stat().st_size == len(stored.encode())):
        assert time.monotonic() < deadline, f"no complete download in {list(downloads.iterdir())}"
        time.sleep(0.1)
    assert saved.read_text() == stored
    page.fill("#log-search", "LINE 2999 ")
    page.wait("document.querySelectorAll('.log mark').length === 1", "the one hit, marked")
    assert page.text(".log mark") == "line 2999 "
    visible = page.eval("[...document.querySelectorAll('.log > span')].filter(s => !s.hidden).length")
    assert visible == 1
    assert page.text(".log-tools [role=status]").startswith(f"1 of {chunks} chunks match")


def test_a_flow_created_and_edited_in_the_ui_runs_and_its_failed_step_is_one_click_from_the_run(
    page: Page, pipeline: Pipeline, agents: AgentPool
) -> None:
    agents.start()
    ok = pipeline.create_job(suite=agents.suite, script="echo fine")
    bad = pipeline.create_job(suite=agents.suite, script='echo "broken: $HETUFLOW_PARAMS" >&2; exit 3')
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/flows']")
    page.wait_path(r"\/flows")
    page.click_text("button", "New flow")
    page.wait_path(r"\/flows\/new")
    name = f"ui-flow-{agents.suite}"[:60]
    page.fill("[name=name]", name)
    page.fill("[name='steps[0].name']", "prepare")
    page.fill("[name='steps[0].job_id']", ok)
    page.click_text("button", "Add step")
    page.fill("[name='steps[1].name']", "scratch")
    page.fill("[name='steps[1].job_id']", ok)
    page.click("form.flow-form button[type=submit]")
    flow_id = page.wait_created("flows")
    steps = pipeline.call("GET", f"/flows/{flow_id}")["steps"]
    assert [(s["name"], s["job_id"], s["depends_on"]) for s in steps] == [
        ("prepare", ok, []),
        ("scratch", ok, []),
    ]

    # Edit it: drop a step, add one after "prepare" with its own job, parameters and timeout.
    page.click_text("button", "Edit")
    page.wait_path(rf"\/flows\/{flow_id}\/edit")
    page.wait("document.querySelector(\"[name='steps[1].name']\")?.value === 'scratch'", "the stored steps")
    page.click("button[aria-label='Remove step 2']")
    page.wait("!document.querySelector(\"[name='steps[1].name']\")", "the step removed")
    page.click_text("button", "Add step")
    page.fill("[name='steps[1].name']", "publish")
    page.fill("[name='steps[1].job_id']", bad)
    page.fill("[name='steps[1].depends_on']", "prepare")
    page.fill("[name='steps[1].parameters']", '{"to": "prod"}')
    page.fill("[name='steps[1].timeout_secs']", "30")
    page.fill("[name='steps[1].trigger_rule']", "all_done")
    page.fill("[name=description]", "edited in the browser")
    page.click("form.flow-form button[type=submit]")
    page.wait_path(rf"\/flows\/{flow_id}")
    flow = pipeline.call("GET", f"/flows/{flow_id}")
    assert (flow["name"], flow["description"]) == (name, "edited in the browser")
    assert [
        (s["name"], s["job_id"], s["depends_on"], s["parameters"], s["timeout_secs"], s["trigger_rule"])
        for s in flow["steps"]
    ] == [
        ("prepare", ok, [], {}, None, "all_success"),
        ("publish", bad, ["prepare"], {"to": "prod"}, 30, "all_done"),
    ]

    # Run it: the run page opens, and the failed step is one click away.
    page.click_text("button", "Run flow")
    run_path = page.wait_path(rf"\/flow-runs\/{UUID}")
    run_id = run_path.rpartition("/")[2]
    page.wait("!!document.querySelector('.failed-steps a')", "the failed step, named on the run", timeout=60)
    assert page.eval("document.querySelector('.dag [data-step=prepare]').classList.contains('s-succeeded')")
    assert page.eval("document.querySelector('.dag [data-step=publish]').classList.contains('s-failed')")
    # The run is listed, as a link, on its flow's page: the runs' history, latest first.
    later = pipeline.call("POST", f"/flows/{flow_id}/run", expect=201)["id"]
    page.click(f"a[href='/flows/{flow_id}']")
    page.wait_path(rf"\/flows\/{flow_id}")
    runs = "document.querySelectorAll('tbody a[href^=\"/flow-runs/\"]')"
    listed = f"[...{runs}].map(a => a.getAttribute('href'))"
    assert page.eval(listed) == [f"/flow-runs/{later}", f"/flow-runs/{run_id}"]
    page.click(f"tbody a[href='/flow-runs/{run_id}']")
    page.wait_path(rf"\/flow-runs\/{run_id}")
    page.wait("!!document.querySelector('.failed-steps a')", "the failed step on the run page")
    page.click(".failed-steps a")
    task_id = page.wait_created("tasks")
    task = pipeline.task(task_id)
    assert (task["job_id"], task["status"], task["flow_step"]) == (bad, "failed", "publish")
    page.click_text("a", "View log")
    page.wait("document.querySelector('.log').textContent.includes('broken')", "the failed step's log")
    assert 'broken: {"to":"prod"}' in page.text(".log")  # the step's parameters reached it
    # And back: the attempt names its task, the task its flow run.
    page.click(f"a[href='/tasks/{task_id}']")
    page.wait_path(rf"\/tasks\/{task_id}")
    page.click("a.flow-run-link")
    page.wait_path(rf"\/flow-runs\/{run_id}")
    page.wait("document.querySelector('.page-head .badge')?.textContent === 'failed'", "the failed run")

    # Delete the flow: its run stays readable, named by the flow's id.
    page.goto(f"/flows/{flow_id}")
    page.click_text("button", "Delete")
    page.click_text("button", "Confirm: delete")
    page.wait_path(r"\/flows")
    pipeline.call("GET", f"/flows/{flow_id}", expect=404)
    page.goto(f"/flow-runs/{run_id}")
    assert "deleted flow" in page.text("h1")
    assert page.eval("document.querySelector('.dag [data-step=publish]').classList.contains('s-failed')")


def stray_words(text: str) -> list[str]:
    """The words a value the UI failed to render leaves in ``text`` (``null``, ``undefined`` ...)."""
    words = ("null", "undefined", "NaN", "[object Object]")
    return [word for word in words if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)]


def submit_schedule(page: Page, pipeline: Pipeline, **expected: object) -> str:
    """Submit the schedule form, wait for the schedule's page; its id (its stored fields are ``expected``)."""
    page.click("form.schedule-form button[type=submit]")
    schedule_id = page.wait_created("schedules")
    stored = pipeline.call("GET", f"/schedules/{schedule_id}")
    assert {key: stored[key] for key in expected} == expected
    return schedule_id


def test_a_flow_is_scheduled_from_its_page_listed_with_its_next_runs_edited_and_deleted(
    page: Page, pipeline: Pipeline
) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    steps = [{"name": "only", "job_id": job_id}]
    name = f"ui-scheduled-{time.monotonic_ns()}"[:60]
    flow_id = pipeline.call("POST", "/flows", json={"name": name, "steps": steps}, expect=201)["id"]
    schedules = "section[aria-label='Schedules']"
    rules = f'[...document.querySelectorAll("{schedules} tbody td:first-child a")].map(a => a.textContent)'
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/flows/{flow_id}")
    assert "No schedules" in page.text(schedules)

    # Add a cron schedule from the flow's page: the form targets the flow and offers no daemon for it.
    page.click_text("button", "Add schedule")
    page.wait_search(f"?flow_id={flow_id}")
    assert page.eval("document.querySelector('[name=target]').value") == "flow"
    assert page.eval("document.querySelector('[name=flow_id]').value") == flow_id
    assert page.eval("document.querySelector('[data-field=job_id]').hidden")
    assert page.eval("document.querySelector('[name=kind] option[value=daemon]').disabled")
    page.fill("[name=cron_expression]", "0 3 * * *")
    page.fill("[name=timezone]", "Europe/Berlin")
    page.fill("[name=parameters]", '{"mode": "full"}')
    page.wait("document.querySelectorAll('.fire-times time').length > 0", "the flow schedule's preview")
    assert stray_words(str(page.eval("document.body.innerText"))) == []
    cron = {"kind": "cron", "cron_expression": "0 3 * * *", "timezone": "Europe/Berlin", "job_id": None}
    cron_id = submit_schedule(page, pipeline, flow_id=flow_id, parameters={"mode": "full"}, **cron)
    assert page.text("dl.details a") == name  # the schedule's page names its flow, as a link

    # Listed on the flow's page with its next fire times, in the schedule's zone.
    page.click(f"dl.details a[href='/flows/{flow_id}']")
    page.wait_path(rf"\/flows\/{flow_id}")
    assert page.eval(rules) == ["at 03:00 every day (Europe/Berlin)"]
    fire_times = f'[...document.querySelectorAll("{schedules} .fire-times time")].map(t => t.dateTime)'
    listed = page.eval(fire_times)
    assert len(listed) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT03:00:00\+0[12]:00", text) for text in listed), listed
    assert stray_words(str(page.eval("document.body.innerText"))) == []

    # Edit it from the flow's page: the rule changes, its flow and kind stay.
    page.click(f"{schedules} button[data-key='edit:{cron_id}']")
    page.wait_path(rf"\/schedules\/{cron_id}\/edit")
    page.wait("document.querySelector('[name=cron_expression]').value === '0 3 * * *'", "the stored rule")
    assert page.eval("document.querySelector('[name=target]').disabled")
    assert not page.eval("document.querySelector('[data-field=flow_id]').hidden")
    assert stray_words(str(page.eval("document.body.innerText"))) == []
    page.fill("[name=cron_expression]", "15 4 * * *")
    edited = submit_schedule(page, pipeline, flow_id=flow_id, kind="cron", cron_expression="15 4 * * *")
    assert edited == cron_id

    # An interval schedule of the flow from the general form, choosing the flow there.
    page.goto("/schedules/new")
    page.fill("[name=target]", "flow")
    page.wait("!document.querySelector('[data-field=flow_id]').hidden", "the flow choice")
    page.fill("[name=flow_id]", flow_id)
    page.fill("[name=kind]", "interval")
    page.fill("[name=interval_secs]", "900")
    page.wait("document.querySelectorAll('.fire-times time').length > 0", "the interval's preview")
    submit_schedule(page, pipeline, flow_id=flow_id, job_id=None, kind="interval", interval_secs=900)
    page.goto(f"/flows/{flow_id}")
    assert sorted(page.eval(rules)) == ["at 04:15 every day (Europe/Berlin)", "every 15 min"]
    assert len(page.eval(fire_times)) == 6

    # Delete one from its page: back on the flow's page, which lists the other only.
    page.click(f"{schedules} a[href='/schedules/{cron_id}']")
    page.wait_path(rf"\/schedules\/{cron_id}")
    page.click_text("button", "Delete")
    page.click_text("button", "Confirm: delete")
    page.wait_path(rf"\/flows\/{flow_id}")
    pipeline.call("GET", f"/schedules/{cron_id}", expect=404)
    page.wait(f"JSON.stringify({rules}) === '[\"every 15 min\"]'", "the deleted schedule gone from the list")
    assert stray_words(str(page.eval("document.body.innerText"))) == []


def test_job_page_grid_next_runs_edit_delete_and_the_job_search(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody", "team": "grid"}, script="true")
    name = pipeline.call("GET", f"/jobs/{job_id}")["name"]
    cancelled = pipeline.trigger(job_id, scheduled_at=iso(datetime.now(UTC) - timedelta(minutes=5)))
    pipeline.call("POST", f"/tasks/{cancelled}/cancel")
    schedule = pipeline.call(
        "POST", "/schedules", json={"job_id": job_id, "kind": "interval", "interval_secs": 300}, expect=201
    )
    upcoming = {"job_id": job_id, "status": "pending", "order": "asc"}
    wait_for(
        lambda: pipeline.call(
            "GET", "/tasks", params={**upcoming, "scheduled_after": iso(datetime.now(UTC))}
        )["items"],
        what="the schedule's first planned run",
    )
    page.sign_in(pipeline.server.admin_token)
    page.goto("/jobs?q=team%3Dgrid")
    assert page.eval("[...document.querySelectorAll('tbody a')].map(a => a.textContent)") == [name]
    page.click_text("a", name)
    page.wait_path(rf"\/jobs\/{job_id}")
    assert page.eval("[...document.querySelectorAll('.run-grid a')].map(a => a.dataset.status)") == [
        "cancelled"
    ]
    page.wait(
        "document.querySelectorAll('section[aria-label=\"Next runs\"] tbody tr').length > 0", "next runs"
    )
    assert page.text("section[aria-label='Schedules'] tbody a") == "every 5 min"
    page.goto(f"/schedules/{schedule['id']}")
    page.click_text("button", "Edit")
    page.wait_path(rf"\/schedules\/{UUID}\/edit")
    page.fill("[name=interval_secs]", "7200")
    page.click("form.schedule-form button[type=submit]")
    page.wait_path(rf"\/schedules\/{schedule['id']}")
    assert pipeline.call("GET", f"/schedules/{schedule['id']}")["interval_secs"] == 7200
    page.click_text("button", "Delete")
    page.click_text("button", "Confirm: delete")
    page.wait_path(rf"\/jobs\/{job_id}")
    pipeline.call("GET", f"/schedules/{schedule['id']}", expect=404)
    page.click_text("button", "Delete")
    page.click_text("button", "Confirm: delete")
    page.wait_path(r"\/jobs")
    pipeline.call("GET", f"/jobs/{job_id}", expect=404)


def test_an_event_sent_from_the_ui_starts_its_listeners(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    pipeline.call(
        "POST", "/schedules", json={"job_id": job_id, "kind": "event", "event_name": "ui-landed"}, expect=201
    )
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/events']")
    page.wait_path(r"\/events")
    page.fill("[name=event_name]", "ui-landed")
    page.fill("[name=payload]", '{"file": "a.csv"}')
    page.click("form.event-form button[type=submit]")
    page.wait("!!document.querySelector('.sent a')", "the started task")
    page.click(".sent a")
    task_id = page.wait_created("tasks")
    task = pipeline.task(task_id)
    assert (task["job_id"], task["parameters"]) == (job_id, {"file": "a.csv"})
    pipeline.call("POST", f"/tasks/{task_id}/cancel")


def test_the_audit_page_shows_a_change_made_in_the_ui(page: Page, pipeline: Pipeline) -> None:
    job_id = pipeline.create_job(labels={"ui": "nobody"}, script="true")
    page.sign_in(pipeline.server.admin_token)
    page.goto(f"/jobs/{job_id}")
    page.click_text("button", "Disable")
    page.wait("document.querySelector('.page-head .badge')?.textContent === 'disabled'", "the disabled job")
    page.click("#nav a[href='/audit']")
    page.wait_path(r"\/audit")
    page.fill("[name=action]", "disable_job")
    page.click_text("button", "Apply")
    page.wait_search("?action=disable_job")
    row = f"document.querySelector(\"tbody tr:has(a[href='/jobs/{job_id}'])\")"
    page.wait(f"!!{row}", "the audit entry of the change")
    text = page.eval(f"{row}.textContent")
    assert "pipeline-admin" in text
    assert "disable_job" in text
    assert "POST …/disable" in text
    # The entry links to the job, and to every change of it.
    page.eval(f"{row}.querySelector('a[title^=Every]').click()")
    page.wait_search(f"?target={quote(f'/jobs/{job_id}', safe='')}")
    assert page.eval("document.querySelector('[name=target]').value") == f"/jobs/{job_id}"
    page.wait("document.querySelectorAll('tbody tr').length >= 2", "the job's create and disable entries")
    actions = page.eval("[...document.querySelectorAll('tbody tr td:nth-child(3)')].map(c => c.textContent)")
    assert actions[:2] == ["disable_job", "create_job"]  # newest first
    page.click(f"tbody a[href='/jobs/{job_id}']")
    page.wait_path(rf"\/jobs\/{job_id}")


def test_a_read_token_gets_no_audit_trail(page: Page, pipeline: Pipeline) -> None:
    page.sign_in(token(pipeline, "read"))
    assert page.eval("document.querySelector(\"#nav a[href='/audit']\").parentElement.hidden")
    assert page.eval("document.querySelector(\"#nav a[href='/tokens']\").parentElement.hidden")
    assert not page.eval("document.querySelector(\"#nav a[href='/notifications']\").parentElement.hidden")
    page.goto("/audit")
    assert "needs an admin token" in page.text("main")
    assert page.eval("document.querySelectorAll('table').length") == 0


def test_the_notifications_page_lists_a_delivery(
    page: Page, pipeline: Pipeline, agents: AgentPool, hook: Receiver
) -> None:
    agents.start()
    job_id = pipeline.create_job(suite=agents.suite, script="exit 3")
    page.sign_in(pipeline.server.admin_token)
    # The job's notify rules are set in its form.
    page.goto(f"/jobs/{job_id}/edit")
    page.fill("[name='config.notify']", "ui-hook: failed, retryin")
    page.click("form.job-form button[type=submit]")
    error = "[data-field='config.notify'] .field-error"
    page.wait(f"document.querySelector({json.dumps(error)}).textContent", "the error beside the field")
    assert "retryin" in page.text(error)
    page.fill("[name='config.notify']", "ui-hook: failed")
    page.click("form.job-form button[type=submit]")
    page.wait_path(rf"\/jobs\/{job_id}")
    notify = pipeline.call("GET", f"/jobs/{job_id}")["config"]["notify"]
    assert notify == [{"target": "ui-hook", "on": ["failed"]}]
    page.click_text("button", "Trigger now")
    task_id = page.wait_created("tasks")
    pipeline.wait_task(task_id, "failed")
    wait_for(
        lambda: [
            d
            for d in pipeline.call("GET", "/notifications/deliveries", params={"task_id": task_id})["items"]
            if d["status"] == "delivered"
        ],
        what="the delivered notification",
    )
    page.click("#nav a[href='/notifications']")
    page.wait_path(r"\/notifications")
    row = f"document.querySelector(\"tbody tr:has(a[href='/tasks/{task_id}'])\")"
    page.wait(f"!!{row}", "the delivery")
    text = page.eval(f"{row}.textContent")
    assert "ui-hook" in text
    assert "delivered" in text
    assert "204" in text
    page.fill("[name=status]", "failed")
    page.click_text("button", "Apply")
    page.wait_search("?status=failed")
    assert not page.eval(f"!!{row}")
    # From the job page: the notifications about it.
    page.goto(f"/jobs/{job_id}")
    page.click_text("a", "Notifications sent about it")
    page.wait_search(f"?job_id={job_id}")
    assert page.eval(f"!!{row}")
    assert hook.for_task(task_id)


def test_an_offline_agent_is_forgotten_from_the_agents_page(
    page: Page, pipeline: Pipeline, agents: AgentPool
) -> None:
    agent = agents.start()
    page.sign_in(pipeline.server.admin_token)
    page.click("#nav a[href='/agents']")
    page.wait_path(r"\/agents")
    key = f'[data-key="forget:{agent.agent_id}"]'
    forget = f"document.querySelector({json.dumps(key)})"
    assert page.wait(f"{forget}?.disabled", "a connected agent's Forget, disabled")
    assert agent.stop() == 0
    wait_for(
        lambda: pipeline.call("GET", f"/agents/{agent.agent_id}")["status"] == "offline" or None,
        what="the agent offline",
    )
    page.wait(f"{forget} && !{forget}.disabled", "Forget, once the agent is offline")
    page.eval(f"{forget}.click()")
    page.wait(f"{forget}.textContent === 'Confirm: forget'", "the confirmation")
    page.eval(f"{forget}.click()")
    page.wait(f"!{forget}", "the agent gone from the list")
    pipeline.call("GET", f"/agents/{agent.agent_id}", expect=404)


def test_durations_are_shown_in_the_task_lists(page: Page, pipeline: Pipeline, agents: AgentPool) -> None:
    agents.start()
    job_id, task_id = run_to_end(pipeline, agents, "sleep 0.2")
    (instance,) = pipeline.instances(task_id)
    expected = seconds_text(instance["metrics"]["duration_secs"])
    cell = f"document.querySelector(\"tr:has(a[href='/tasks/{task_id}']) .duration\")?.textContent"
    page.sign_in(pipeline.server.admin_token)
    for path in (f"/tasks?job_id={job_id}", f"/jobs/{job_id}"):
        page.goto(path)
        assert page.wait(f"/^\\d/.test({cell}) && {cell}", f"the duration on {path}") == expected
    page.goto(f"/tasks/{task_id}")
    attempt = f"tr:has(a[href='/instances/{instance['id']}']) td:nth-child(6)"
    shown = page.wait(f"document.querySelector({json.dumps(attempt)})?.textContent", "its duration")
    assert shown == expected


def test_no_page_shows_null_or_undefined(
    page: Page, pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    agents.start()
    job_id, task_id = run_to_end(pipeline, agents, "echo for every page")
    (instance,) = pipeline.instances(task_id)
    schedule = pipeline.call(
        "POST",
        "/schedules",
        json={"job_id": job_id, "kind": "cron", "cron_expression": "*/5 * * * *"},
        expect=201,
    )
    flow = pipeline.call(
        "POST",
        "/flows",
        json={"name": f"pages-{agents.suite}"[:60], "steps": [{"name": "one", "job_id": job_id}]},
        expect=201,
    )
    run = pipeline.call("POST", f"/flows/{flow['id']}/run", expect=201)
    flow_schedule = pipeline.call(
        "POST",
        "/schedules",
        json={"flow_id": flow["id"], "kind": "cron", "cron_expression": "0 3 * * *", "timezone": "UTC"},
        expect=201,
    )
    pages = {
        "dashboard": "/",
        "jobs": "/jobs",
        "job": f"/jobs/{job_id}",
        "job-edit": f"/jobs/{job_id}/edit",
        "job-new": "/jobs/new",
        "schedules": "/schedules",
        "schedule": f"/schedules/{schedule['id']}",
        "schedule-edit": f"/schedules/{schedule['id']}/edit",
        "schedule-new": "/schedules/new",
        "schedule-of-flow": f"/schedules/{flow_schedule['id']}",
        "schedule-of-flow-edit": f"/schedules/{flow_schedule['id']}/edit",
        "schedule-new-of-flow": f"/schedules/new?flow_id={flow['id']}",
        "schedules-of-flow": f"/schedules?flow_id={flow['id']}",
        "tasks": "/tasks",
        "tasks-upcoming": "/tasks?view=upcoming",
        "task": f"/tasks/{task_id}",
        "attempt": f"/instances/{instance['id']}",
        "agents": "/agents",
        "flows": "/flows",
        "flow-new": "/flows/new",
        "flow": f"/flows/{flow['id']}",
        "flow-edit": f"/flows/{flow['id']}/edit",
        "flow-run": f"/flow-runs/{run['id']}",
        "flow-run-of-flow": f"/flows/{flow['id']}/runs/{run['id']}",
        "events": "/events",
        "notifications": "/notifications",
        "tokens": "/tokens",
        "audit": "/audit",
    }
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=page.session,
    )
    page.sign_in(pipeline.server.admin_token)
    for name, path in pages.items():
        page.goto(path)
        page.eval(
            "new Promise(done => setTimeout(done, 300))"
        )  # the first refresh of pages that load in parts
        text = str(page.eval("document.body.innerText"))
        assert stray_words(text) == [], f"on {path}:\n{text}"
        assert page.eval(CLIPPED_CHOICES) == [], f"choices cut off on {path}"
        assert shoot(page, name, folder if name in DOC_PAGES else tmp_path).stat().st_size > 0
    page.goto("/login")
    assert "--data-dir" in page.text("form.login")
