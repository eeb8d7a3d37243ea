"""Simulated agents: real WebSocket clients of the agent protocol that run nothing, to load the server alone.

Each one connects to ``/api/v1/agents/ws`` with its own agent token, registers (``agent.register`` with
``bash`` and a capacity), announces its free slots (``task.acquire``) and heartbeats at the interval the
server asks for. A ``task.dispatch`` is acked at once and answered with ``instance.updated`` ``running``
(seq 0) and ``succeeded`` (seq 1, exit code 0); the slot is free again as soon as both are queued, so the
next credit announcement (coalesced over ``CREDITS_COALESCE_SECS``, as the real agent does) says the full
capacity: the server subtracts the dispatches still on the wire. Commands are acked; report acks and
heartbeat answers are only counted. Every frame is built and read with ``hetuflow_core.protocol``.

With nothing spawned, what limits the rate is the server and PostgreSQL: the whole state machine (claim,
instance, dispatch frame, reports, batch commits) at full speed.

The agents run in a child process (``python bench/_sim.py``, so they do not share a core with the benchmark's
own loop) that reads ``[[agent_id, token], …]`` from a JSON file, prints ``ready N`` once all registered
(``error …`` and exits 1 otherwise), and on SIGTERM closes its connections and prints its counters as JSON.
``simulated_agents`` is the benchmark's side: it issues the tokens and runs that process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from hetuflow_core.agent import AgentCapabilities, AgentMetrics
from hetuflow_core.enums import CommandKind, InstanceStatus
from hetuflow_core.ids import now_ms
from hetuflow_core.protocol import (
    Ack,
    AckData,
    AcquireTaskData,
    AcquireTaskRequest,
    AgentCommand,
    AgentRegisterData,
    AgentRegisterRequest,
    AgentRegisterResponse,
    Error,
    HeartbeatData,
    HeartbeatRequest,
    HeartbeatResponse,
    ScheduledTask,
    ServerMessage,
    TaskInstanceUpdated,
    TaskInstanceUpdatedData,
    decode,
    encode,
)

CREDITS_COALESCE_SECS = 0.002
CONNECT_CONCURRENCY = 32
READY_TIMEOUT_SECS = 180.0
TOKEN_CLIENTS = 16


class Counters:
    """What the simulated agents saw, printed as JSON when they stop."""

    def __init__(self) -> None:
        self.registered = 0
        self.dispatches = 0
        self.duplicates = 0
        self.errors = 0
        self.disconnects = 0
        self.seen: set[str] = set()
        self.heartbeat_rtts_ms: list[int] = []

    def as_dict(self) -> dict[str, float]:
        rtts = sorted(self.heartbeat_rtts_ms) or [0]
        return {
            "registered": self.registered,
            "dispatches": self.dispatches,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "disconnects": self.disconnects,
            "heartbeats": len(self.heartbeat_rtts_ms),
            "heartbeat_p50_ms": rtts[len(rtts) // 2],
            "heartbeat_p99_ms": rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)],
        }


def _text(frame: Any) -> str:
    return encode(frame).decode()


class SimAgent:
    """One simulated agent on one connection."""

    def __init__(self, url: str, agent_id: str, token: str, capacity: int, counters: Counters) -> None:
        self.url = url
        self.agent_id = agent_id
        self.token = token
        self.capacity = capacity
        self.counters = counters
        self.ready = asyncio.Event()
        self._credits_due = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        headers = {"Authorization": f"Bearer {self.token}", "X-Hetuflow-Agent-Id": self.agent_id}
        # No permessage-deflate, like the real agent: offered (the websockets default), the server would
        # compress every frame and the benchmark would measure zlib instead of the dispatch path.
        options: dict[str, Any] = {"ping_interval": None, "max_size": None, "compression": None}
        async with connect(self.url, additional_headers=headers, **options) as ws:
            capabilities = AgentCapabilities(commands=[CommandKind.BASH], capacity=self.capacity)
            data = AgentRegisterData(agent_id=self.agent_id, name=self.agent_id, capabilities=capabilities)
            await ws.send(_text(AgentRegisterRequest(data=data)))
            answer = decode(await ws.recv(), ServerMessage)
            if not isinstance(answer, AgentRegisterResponse) or not answer.data.accepted:
                raise RuntimeError(f"{self.agent_id}: registration refused: {answer}")
            self.counters.registered += 1
            self.ready.set()
            await ws.send(_text(AcquireTaskRequest(data=AcquireTaskData(free_slots=self.capacity))))
            loops = [
                asyncio.create_task(self._heartbeats(ws, answer.data.heartbeat_interval_secs)),
                asyncio.create_task(self._credits(ws)),
                asyncio.create_task(self._read(ws)),
            ]
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*loops, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in [*loops, stopped]:
                task.cancel()
            await asyncio.gather(*loops, stopped, return_exceptions=True)
            if stopped not in done:
                self.counters.disconnects += 1

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            message = decode(raw, ServerMessage)
            if isinstance(message, ScheduledTask):
                for text in self._run(message):
                    await ws.send(text)
            elif isinstance(message, HeartbeatResponse):
                # Round trip on this process's clock (the request's ts, echoed): what a stall of the server
                # (a garbage collection, a busy loop) costs every agent.
                self.counters.heartbeat_rtts_ms.append(now_ms() - message.data.request_ts)
            elif isinstance(message, AgentCommand):
                await ws.send(_text(Ack(data=AckData(ack_id=message.id))))
            elif isinstance(message, Error):
                self.counters.errors += 1
                print(f"{self.agent_id}: server error {message.data}", file=sys.stderr)

    def _run(self, message: ScheduledTask) -> tuple[str, str, str]:
        """The ack and both reports of one dispatch, to send in this order."""
        data = message.data
        self.counters.dispatches += 1
        key = str(data.instance_id)
        if key in self.counters.seen:
            self.counters.duplicates += 1
        self.counters.seen.add(key)
        now = datetime.now(UTC)
        running = TaskInstanceUpdatedData(
            instance_id=data.instance_id, task_id=data.task_id, status=InstanceStatus.RUNNING, seq=0, at=now
        )
        succeeded = TaskInstanceUpdatedData(
            instance_id=data.instance_id,
            task_id=data.task_id,
            status=InstanceStatus.SUCCEEDED,
            seq=1,
            at=now,
            exit_code=0,
        )
        self._credits_due.set()
        ack = _text(Ack(data=AckData(ack_id=message.id)))
        return ack, _text(TaskInstanceUpdated(data=running)), _text(TaskInstanceUpdated(data=succeeded))

    async def _credits(self, ws: Any) -> None:
        while True:
            await self._credits_due.wait()
            await asyncio.sleep(CREDITS_COALESCE_SECS)
            self._credits_due.clear()
            await ws.send(_text(AcquireTaskRequest(data=AcquireTaskData(free_slots=self.capacity))))

    async def _heartbeats(self, ws: Any, interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))  # spread a thousand agents over the interval
        while True:
            metrics = AgentMetrics(free_slots=self.capacity)
            await ws.send(_text(HeartbeatRequest(data=HeartbeatData(metrics=metrics))))
            await asyncio.sleep(interval)


# ---------------------------------------------------------------- the child process


async def _serve(url: str, pairs: list[list[str]], capacity: int) -> int:
    counters = Counters()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    agents = [SimAgent(url, agent_id, token, capacity, counters) for agent_id, token in pairs]

    async def one(agent: SimAgent) -> None:
        async with gate:
            runner = asyncio.create_task(agent.run(stop))
            ready = asyncio.create_task(agent.ready.wait())
            await asyncio.wait([runner, ready], return_when=asyncio.FIRST_COMPLETED)
            if not agent.ready.is_set():
                ready.cancel()
                await runner  # raises why the registration failed
        await runner

    runs = [asyncio.create_task(one(agent)) for agent in agents]
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECS):
            while counters.registered < len(agents):
                failed = [run for run in runs if run.done() and run.exception() is not None]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                await asyncio.sleep(0.05)
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
        return 1
    print(f"ready {counters.registered}", flush=True)
    await stop.wait()
    await asyncio.gather(*runs, return_exceptions=True)
    print(json.dumps(counters.as_dict()), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://host:port/api/v1/agents/ws")
    parser.add_argument("--capacity", type=int, required=True)
    parser.add_argument("--agents", type=Path, required=True, help="JSON file: [[agent_id, token], ...]")
    args = parser.parse_args()
    pairs = json.loads(args.agents.read_text())
    return asyncio.run(_serve(args.url, pairs, args.capacity))


# ---------------------------------------------------------------- the benchmark's side


class SimHandle:
    """A running set of simulated agents; ``counters`` is filled once they stopped."""

    def __init__(self, process: subprocess.Popen[str], ids: list[str]) -> None:
        self.process = process
        self.ids = ids
        self.counters: dict[str, float] = {}


async def _issue_tokens(base_url: str, headers: dict[str, str], ids: list[str]) -> list[list[str]]:
    queue = list(reversed(ids))
    pairs: list[list[str]] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:

        async def issuer() -> None:
            while queue:
                agent_id = queue.pop()
                body = {"name": agent_id, "scope": "agent", "agent_id": agent_id}
                response = await client.post("/api/v1/tokens", json=body)
                pairs.append([agent_id, response.raise_for_status().json()["token"]])

        await asyncio.gather(*(issuer() for _ in range(TOKEN_CLIENTS)))
    return pairs


@contextlib.contextmanager
def simulated_agents(
    client: httpx.Client, root: Path, prefix: str, count: int, capacity: int
) -> Iterator[SimHandle]:
    """``count`` simulated agents of ``capacity`` registered with the server of ``client`` for the block
    (their tokens are written to a file under ``root``)."""
    ids = [f"{prefix}-{index}" for index in range(count)]
    headers = {"Authorization": client.headers["Authorization"]}
    agents_file = root / f"{prefix}-agents.json"
    agents_file.write_text(json.dumps(asyncio.run(_issue_tokens(str(client.base_url), headers, ids))))
    url = str(client.base_url).replace("http://", "ws://", 1).rstrip("/") + "/api/v1/agents/ws"
    args = [sys.executable, str(Path(__file__)), "--url", url, "--capacity", str(capacity)]
    args += ["--agents", str(agents_file)]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    handle = SimHandle(process, ids)
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("ready"):
            raise RuntimeError(f"simulated agents did not come up: {line or 'no answer'}")
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        last = out.strip().splitlines()[-1:] if out else []
        if last and last[0].startswith("{"):
            handle.counters = json.loads(last[0])


if __name__ == "__main__":
    sys.exit(main())
