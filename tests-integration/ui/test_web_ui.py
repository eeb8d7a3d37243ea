"""The web UI in a real browser: headless Chromium driven over the DevTools protocol against a real server.

Sign-in with a token (a bad or agent token is refused; a read token sees every write button disabled), a job
created through the form and triggered with JSON parameters, its task followed to success on a real agent
and its log arriving live in the log view, cancel and retry from the task page, and the schedule form's
live preview across the 2026 spring-forward of America/New_York. Every page must run without a script
error or a Content-Security-Policy violation.

Needs a Chromium binary (``chromium`` on PATH, or ``HETUFLOW_CHROMIUM``); without one the module is
skipped, unless ``HETUFLOW_REQUIRE_BROWSER=1`` makes that a failure. Chromium is driven by a small CDP
client over the DevTools WebSocket (the ``websockets`` library), so no browser download is ever needed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipelinefixtures import AgentPool, Pipeline

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
