"""End-to-end fixtures: real ``hetuflow-server serve`` processes and real ``hetuflow-agent run`` processes.

- ``pipeline`` (module): a `Pipeline` — one server (``start_server`` of ``serverfixtures``) on the module's
  migrated database with short liveness timings (heartbeat ``HEARTBEAT_SECS``, agent timeout
  ``AGENT_TIMEOUT_SECS``), an admin ``httpx.Client`` and helpers to create jobs, trigger them and wait for
  their tasks. ``pipeline.start_server()`` adds more servers on the same database (HA tests); each is
  stopped with SIGTERM at the end of the module; ``pipeline.kill_server()`` crashes one (SIGKILL).
- ``pipeline_env`` (module): settings over ``SERVER_ENV`` for the module's servers; ``{}`` unless a test
  module overrides the fixture (e.g. a short leader lease for HA tests).
- `FakeAgent` / `open_ws`: a hand-driven agent connection, for protocol-level tests of the gateway.
- ``agents`` (function): an `AgentPool` starting ``python -m hetuflow_agent run`` processes with their own
  token and working directory; whatever is still running is stopped at the end of the test.

Isolation inside a module: every agent of a test carries the label ``suite=<test name>`` and every job a
test creates through `Pipeline.create_job` with ``suite=`` requires it, so a task left pending by one test
is never run by the agents of another. Agent processes get a short reconnect backoff and kill grace; their
``PATH`` ends with this virtualenv's ``bin`` so ``uv`` is found while ``python3`` stays the system one.

Load it with ``pytest_plugins = [..., "pipelinefixtures"]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from serverfixtures import ServerProcess, clean_env, start_server

from hetuflow_agent.connection.url import parse_server_url
from hetuflow_agent.connection.websocket import WebSocket, connect
from hetuflow_agent.errors import ConnectionClosed
from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import (
    AgentRegisterData,
    AgentRegisterRequest,
    Message,
    ServerMessage,
    decode,
    encode,
)

HEARTBEAT_SECS = 0.5
AGENT_TIMEOUT_SECS = 3.0
KILL_GRACE_SECS = 0.5
WAIT_SECS = 30.0
"""Default patience of every ``wait_*`` helper (generous: a loaded CI machine is slow, never wrong)."""

SERVER_ENV = {
    "HETUFLOW_SCHEDULER__HEARTBEAT_INTERVAL_SECS": str(HEARTBEAT_SECS),
    "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": str(AGENT_TIMEOUT_SECS),
    "HETUFLOW_SCHEDULER__LEASE_SECS": "3",
    "HETUFLOW_SCHEDULER__SAFETY_POLL_SECS": "2",
    "HETUFLOW_AUTH__REVOCATION_CACHE_SECS": "0",
}
AGENT_ENV = {
    "HETUFLOW_AGENT__KILL_GRACE_SECS": str(KILL_GRACE_SECS),
    "HETUFLOW_AGENT__BACKOFF_INITIAL_SECS": "0.1",
    "HETUFLOW_AGENT__BACKOFF_MAX_SECS": "0.5",
    "HETUFLOW_AGENT__CONNECT_TIMEOUT_SECS": "5",
    "HETUFLOW_AGENT__DRAIN_TIMEOUT_SECS": "2",
    "HETUFLOW_AGENT__FLUSH_TIMEOUT_SECS": "2",
}
FINAL = frozenset({"succeeded", "failed", "cancelled", "skipped"})

T = TypeVar("T")
_ids = itertools.count(1)


def wait_for(check: Callable[[], T | None], *, timeout: float = WAIT_SECS, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Pipeline:
    """The module's server(s) and an admin client, with helpers over the REST API."""

    def __init__(
        self, server: ServerProcess, database_url: str, root: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.server = server
        self.servers = [server]
        self.database_url = database_url
        self.root = root
        self.env = {**SERVER_ENV, **(env or {})}
        """The configuration variables every server of this pipeline is started with."""
        self.key_file = server.data_dir / "server.jwk"
        """The first server's key, which every other server shares (tokens work on all of them)."""
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=15
        )

    def start_server(
        self, name: str, *, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> ServerProcess:
        """Another server on the same database and with the same key (stopped with the module); ``env``
        adds settings over the pipeline's."""
        full_env = {**self.env, **(env or {}), "HETUFLOW_AUTH__KEY_FILE": str(self.key_file)}
        extra = start_server(self.root / name, database_url=self.database_url, env=full_env, port=port)
        self.servers.append(extra)
        return extra

    def kill_server(self, server: ServerProcess) -> None:
        """SIGKILL ``server``, as a crash would; it is no longer stopped with the module. When the API client
        was on it, the client moves to the first server still running."""
        server.process.kill()
        server.process.wait()
        self.servers.remove(server)
        if server is self.server:
            self.server = self.servers[0]
            self.client.base_url = httpx.URL(self.server.url)

    # -- API helpers -----------------------------------------------------------------------------------

    def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """One API call on the main server; asserts the status and returns the JSON body (or None)."""
        response = self.client.request(method, f"/api/v1{path}", **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def agent_token(self, agent_id: str) -> str:
        """A fresh agent token for ``agent_id``."""
        body = {"name": f"agent-{agent_id}-{next(_ids)}", "scope": "agent", "agent_id": agent_id}
        return str(self.call("POST", "/tokens", json=body, expect=201)["token"])

    def create_job(
        self, *, suite: str | None = None, labels: Mapping[str, str] | None = None, **config: Any
    ) -> str:
        """Create a job with ``config`` (``command`` defaults to bash) and return its id.

        With ``suite`` the job requires that test's agents (plus ``labels``).
        """
        target = dict(labels or {})
        if suite is not None:
            target["suite"] = suite
        body = {
            "name": f"job-{next(_ids)}",
            "config": {"command": "bash", **config, "target": {"labels": target}},
        }
        return str(self.call("POST", "/jobs", json=body, expect=201)["id"])

    def trigger(self, job_id: str, **body: Any) -> str:
        """Trigger the job now; the new task's id."""
        return str(self.call("POST", f"/jobs/{job_id}/trigger", json=body, expect=201)["task_ids"][0])

    def run(self, *, suite: str, **config: Any) -> str:
        """Create a job and trigger it once; the task id."""
        return self.trigger(self.create_job(suite=suite, **config))

    def task(self, task_id: str) -> dict[str, Any]:
        """The task as the API shows it."""
        return dict(self.call("GET", f"/tasks/{task_id}"))

    def wait_task(self, task_id: str, *statuses: str, timeout: float = WAIT_SECS) -> dict[str, Any]:
        """Wait until the task is in one of ``statuses`` (default: any final state); the task."""
        wanted = set(statuses) or FINAL

        def check() -> dict[str, Any] | None:
            task = self.task(task_id)
            return task if task["status"] in wanted else None

        try:
            return wait_for(check, timeout=timeout, what=f"task {task_id} to be {'/'.join(sorted(wanted))}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {self.task(task_id)}") from None

    def instances(self, task_id: str) -> list[dict[str, Any]]:
        """Every attempt of the task, first to last."""
        return list(self.call("GET", f"/tasks/{task_id}/instances", params={"limit": 100})["items"])

    def logs(self, instance_id: str) -> list[dict[str, Any]]:
        """Every stored log chunk of the attempt, in arrival order."""
        return list(self.call("GET", f"/instances/{instance_id}/logs")["items"])

    def close(self) -> None:
        self.client.close()


@dataclasses.dataclass
class AgentProcess:
    """A running ``hetuflow-agent run`` subprocess."""

    agent_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    args: list[str]
    env: dict[str, str]

    def log(self) -> str:
        """Everything the agent logged so far."""
        return self.log_path.read_text(errors="replace")

    def registrations(self) -> int:
        """How many registrations the agent completed so far."""
        return len(re.findall(r"registered with ", self.log()))

    def wait_registered(self, count: int = 1, timeout: float = WAIT_SECS) -> None:
        """Wait until the agent completed its ``count``-th registration."""
        deadline = time.monotonic() + timeout
        while self.registrations() < count:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"agent {self.agent_id} exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"agent {self.agent_id} did not register within {timeout:g} s:\n{self.log()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would (its task processes stay behind until a successor reaps them)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"agent {self.agent_id} ignored SIGTERM:\n{self.log()}") from None


class AgentPool:
    """Starts agents for one test and stops them afterwards."""

    def __init__(self, pipeline: Pipeline, root: Path, suite: str) -> None:
        self.pipeline = pipeline
        self.root = root
        self.suite = suite
        self.started: list[AgentProcess] = []

    def start(
        self,
        agent_id: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        capacity: int = 2,
        servers: list[ServerProcess] | None = None,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        token_in_env: bool = False,
    ) -> AgentProcess:
        """Start an agent (labels get ``suite=<this test>``); by default wait for its registration. The
        token is a ``--token`` flag, or with ``token_in_env`` the variable ``HETUFLOW_AGENT__TOKEN``."""
        agent_id = agent_id or f"{self.suite}-a{next(_ids)}"
        all_labels = {"suite": self.suite, **(labels or {})}
        workdir = workdir or self.root / f"work-{agent_id}"
        token = self.pipeline.agent_token(agent_id)
        if token_in_env:
            env = {**(env or {}), "HETUFLOW_AGENT__TOKEN": token}
        args = [
            sys.executable,
            "-m",
            "hetuflow_agent",
            "run",
            *[arg for server in servers or [self.pipeline.server] for arg in ("--server", server.url)],
            *([] if token_in_env else ["--token", token]),
            "--id",
            agent_id,
            "--labels",
            ",".join(f"{key}={value}" for key, value in all_labels.items()),
            "--capacity",
            str(capacity),
            "--workdir",
            str(workdir),
        ]
        return self.launch(agent_id, args, workdir, env=env, wait=wait)

    def launch(
        self,
        agent_id: str,
        args: list[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> AgentProcess:
        """Start an agent process with exactly ``args`` (e.g. to restart one with the same command line)."""
        full_env = clean_env({**AGENT_ENV, **(env or {})})
        full_env["PATH"] = f"{full_env.get('PATH', '')}{os.pathsep}{Path(sys.executable).parent}"
        log_path = self.root / f"agent-{agent_id}-{next(_ids)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        agent = AgentProcess(agent_id, process, log_path, workdir, args, full_env)
        self.started.append(agent)
        if wait:
            agent.wait_registered()
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            agent.stop()


FRAME_TIMEOUT_SECS = 10.0


class FakeAgent:
    """A hand-driven agent connection (the agent's own WebSocket client, frames chosen by the test)."""

    def __init__(self, ws: WebSocket, agent_id: str) -> None:
        self.ws = ws
        self.agent_id = agent_id

    async def send(self, frame: Message) -> None:
        await self.send_raw(encode(frame).decode())

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)
        # The agent's client writes what was sent at the end of the loop turn; let that turn end, so the
        # frame is on the wire before the test blocks the loop with a synchronous call.
        await asyncio.sleep(0)

    async def recv(self) -> Any:
        async with asyncio.timeout(FRAME_TIMEOUT_SECS):
            return decode(await self.ws.recv(), ServerMessage)

    async def recv_until(self, kind: type[Any]) -> Any:
        """The next frame of type ``kind`` (heartbeat answers and acks of others in between are skipped)."""
        while True:
            frame = await self.recv()
            if isinstance(frame, kind):
                return frame

    async def register(self, *, labels: dict[str, str] | None = None, version: str = "1.0") -> Any:
        """Send ``agent.register`` (bash, capacity 4) and return the answer."""
        data = AgentRegisterData(
            agent_id=self.agent_id,
            name=self.agent_id,
            labels=labels or {},
            capabilities=AgentCapabilities(commands=[CommandKind.BASH], capacity=4),
            protocol_version=version,
        )
        await self.send(AgentRegisterRequest(data=data))
        return await self.recv()

    async def closed(self) -> ConnectionClosed:
        """Read until the server closes; the close."""
        async with asyncio.timeout(FRAME_TIMEOUT_SECS):
            while True:
                try:
                    await self.ws.recv()
                except ConnectionClosed as closed:
                    return closed


async def open_ws(server: ServerProcess, token: str | None, agent_id: str | None) -> WebSocket:
    """Open the agent WebSocket of ``server`` with ``token`` (and ``X-Hetuflow-Agent-Id: agent_id``)."""
    return await connect(parse_server_url(server.url), token, agent_id=agent_id, timeout_secs=5)


@pytest.fixture(scope="module")
def pipeline_env() -> dict[str, str]:
    """Settings over ``SERVER_ENV`` for the module's servers (override this fixture in a test module)."""
    return {}


@pytest.fixture(scope="module")
def pipeline(
    migrated_database_url: str, tmp_path_factory: pytest.TempPathFactory, pipeline_env: dict[str, str]
) -> Iterator[Pipeline]:
    """One server on the module's database, an admin client and helpers (see the module docstring)."""
    root = tmp_path_factory.mktemp("pipeline")
    env = {**SERVER_ENV, **pipeline_env}
    server = start_server(root / "server", database_url=migrated_database_url, env=env)
    pipe: Pipeline | None = None
    try:
        server.admin_token = server.create_token("--scope", "admin", "--name", "pipeline-admin")
        pipe = Pipeline(server, migrated_database_url, root, env)
        yield pipe
    finally:
        if pipe is not None:
            pipe.close()
        statuses = [(extra, extra.terminate()) for extra in reversed(pipe.servers if pipe else [server])]
    for extra, status in statuses:
        assert status == 0, f"server exited with {status}:\n{extra.log()}"


@pytest.fixture
def agents(pipeline: Pipeline, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentPool]:
    """Agents for this test, stopped when it ends."""
    suite = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40].strip("-")
    pool = AgentPool(pipeline, tmp_path, suite)
    try:
        yield pool
    finally:
        pool.stop_all()
