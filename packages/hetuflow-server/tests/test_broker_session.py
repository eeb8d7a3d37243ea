"""Bookkeeping of one agent connection: credits, unacked dispatches, hand-backs, the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import pytest
from starlette.websockets import WebSocket

from hetuflow_core.agent import AgentCapabilities
from hetuflow_core.enums import AgentStatus, CommandKind, InstanceStatus, ProtocolErrorCode, TaskStatus
from hetuflow_core.ids import uuid7
from hetuflow_core.job import JobConfig
from hetuflow_core.protocol import (
    AckData,
    AgentRegisterData,
    ErrorData,
    HeartbeatResponse,
    HeartbeatResponseData,
    RunningInstance,
    ScheduledTask,
    decode,
)
from hetuflow_core.task import Task, TaskInstance
from hetuflow_server.broker.registry import SessionRegistry
from hetuflow_server.broker.session import MAX_QUEUED_FRAMES, AgentSession, SessionClosed
from hetuflow_server.service import Dispatch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class _Socket:
    """Collects what the writer sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _session(
    capacity: int = 4,
    running: list[RunningInstance] | None = None,
    prefetch: int | None = None,
    **kwargs: Any,
) -> AgentSession:
    capabilities = AgentCapabilities(commands=[CommandKind.BASH], capacity=capacity)
    if prefetch is not None:
        capabilities.prefetch = prefetch
    data = AgentRegisterData(
        agent_id="a1", name="a1", labels={"zone": "x"}, capabilities=capabilities, running=running or []
    )
    return AgentSession(cast(WebSocket, _Socket()), data, **kwargs)


def _dispatch() -> Dispatch:
    task_id, instance_id, job_id = uuid7(), uuid7(), uuid7()
    task = Task(
        id=task_id,
        job_id=job_id,
        schedule_id=None,
        flow_run_id=None,
        scheduled_at=NOW,
        priority=0,
        parameters={},
        config=JobConfig(command=CommandKind.BASH, script="true"),
        status=TaskStatus.DISPATCHED,
        attempt=1,
        next_attempt_at=None,
        depends_on=[],
        instance_id=instance_id,
        agent_id="a1",
        error=None,
        created_at=NOW,
        updated_at=NOW,
        completed_at=None,
    )
    instance = TaskInstance(
        id=instance_id,
        task_id=task_id,
        job_id=job_id,
        agent_id="a1",
        attempt=1,
        status=InstanceStatus.DISPATCHED,
        dispatched_at=NOW,
        started_at=None,
        completed_at=None,
        exit_code=None,
        signal=None,
        error=None,
        output="",
        output_truncated=False,
        metrics=None,
    )
    return Dispatch(task=task, instance=instance, fire_at=NOW)


def _sent_dispatches(session: AgentSession) -> list[ScheduledTask]:
    socket = cast(_Socket, session.websocket)
    return [frame for frame in (decode(text) for text in socket.sent) if isinstance(frame, ScheduledTask)]


async def test_credits_count_the_dispatches_not_acked_when_the_agent_announced() -> None:
    session = _session()
    assert session.capacity_view() is None  # no credits before the first announcement
    session.on_acquire(2)
    first, second = _dispatch(), _dispatch()
    session.push(first)
    session.push(second)
    assert session.credits == 0
    assert session.capacity_view() is None
    # The agent announces 3 free slots before it saw either dispatch: both still count against it.
    session.on_acquire(3)
    assert session.credits == 1
    view = session.capacity_view()
    assert view is not None
    assert (view.free_slots, view.load, view.labels) == (1, 3, {"zone": "x"})


@pytest.mark.parametrize(("capacity", "prefetch", "most"), [(2, None, 2), (2, 1, 3), (2, 50, 4), (3, 0, 3)])
async def test_an_agent_never_holds_more_than_its_capacity_and_prefetch_window(
    capacity: int, prefetch: int | None, most: int
) -> None:
    # Whatever free_slots it claims; the window is at most its capacity.
    session = _session(capacity=capacity, prefetch=prefetch)
    session.on_acquire(10_000)
    pushed = []
    while (view := session.capacity_view()) is not None:
        pushed.append(_dispatch())
        session.push(pushed[-1])
        assert view.free_slots <= most
    assert len(pushed) == most
    session.on_acquire(10_000)  # acked or not, they are still on the agent
    assert session.capacity_view() is None
    session.on_ended(pushed[0].instance.id)  # its end was reported
    session.on_acquire(10_000)
    view = session.capacity_view()
    assert view is not None
    assert view.free_slots == 1


async def test_attempts_kept_at_registration_count_as_held() -> None:
    session = _session(capacity=2, running=[_running()], holding=[_running().instance_id])
    session.on_acquire(10_000)
    view = session.capacity_view()
    assert view is not None
    assert view.free_slots == 1
    # Without a state sync, the unfinished attempts the agent listed count.
    assert _session(capacity=1, running=[_running()]).held == {_running().instance_id}


async def test_pushed_frames_carry_the_attempt_and_fire_time() -> None:
    session = _session()
    session.on_acquire(1)
    dispatch = _dispatch()
    session.push(dispatch)
    session.close(1000, "bye")
    await session.write_loop()
    (frame,) = _sent_dispatches(session)
    assert frame.data.instance_id == dispatch.instance.id
    assert frame.data.fire_at == NOW
    assert frame.data.attempt == 1
    assert dispatch.instance.id in session.known
    assert cast(_Socket, session.websocket).closed == (1000, "bye")


async def test_a_refused_or_unreadable_dispatch_is_named_for_hand_back() -> None:
    session = _session()
    session.on_acquire(2)
    refused, unread = _dispatch(), _dispatch()
    session.push(refused)
    session.push(unread)
    session.close(1000, "flush")
    await session.write_loop()
    frames = {frame.data.instance_id: frame.id for frame in _sent_dispatches(session)}
    assert session.awaiting_ack == 2
    assert session.on_ack(AckData(ack_id=frames[refused.instance.id], ok=False, error="draining")) == (
        refused.instance.id
    )
    assert session.on_error(
        ErrorData(code=ProtocolErrorCode.INVALID, message="?", ref_id=frames[unread.instance.id])
    ) == (unread.instance.id)
    assert session.awaiting_ack == 0
    assert session.on_ack(AckData(ack_id="unknown")) is None


async def test_dispatches_still_queued_at_the_end_were_never_sent() -> None:
    session = _session()
    session.on_acquire(2)
    dispatch = _dispatch()
    session.push(dispatch)
    assert session.unsent_dispatches() == [dispatch.instance.id]
    with pytest.raises(SessionClosed):
        session.push(_dispatch())


async def test_a_draining_agent_or_one_that_stops_reading_takes_nothing() -> None:
    assert _session(status=AgentStatus.DISABLED).draining
    session = _session()
    session.on_acquire(5)
    session.draining = True
    assert session.capacity_view() is None
    for _ in range(MAX_QUEUED_FRAMES):
        session.send(_heartbeat())
    with pytest.raises(SessionClosed):
        session.send(_heartbeat())
    assert session.aborted.is_set()
    assert not session.open


def _heartbeat() -> HeartbeatResponse:
    return HeartbeatResponse(data=HeartbeatResponseData(server_time_ms=1, request_ts=1))


async def test_the_registry_replaces_and_only_forgets_the_current_session() -> None:
    registry = SessionRegistry()
    old, new = _session(), _session(running=[_running()])
    registry.add(old)
    registry.add(new)
    assert not old.open  # replaced: asked to close
    assert registry.get("a1") is new
    assert new.known == {_running().instance_id}
    assert registry.remove(old) is False
    new.on_acquire(2)
    assert registry.free_credits() == 2
    assert registry.remove(new) is True
    assert registry.get("a1") is None


def _running() -> RunningInstance:
    return RunningInstance(
        instance_id=UUID("01900000-0000-7000-8000-000000000001"),
        task_id=UUID("01900000-0000-7000-8000-000000000002"),
        status=InstanceStatus.RUNNING,
    )
