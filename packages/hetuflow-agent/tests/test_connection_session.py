"""The session against a real WebSocket server: registration, reports, reconnects, resends, dedup.

Every test runs a real ``AgentApplication`` (real process manager, real ``bash`` processes) against the
``ProtocolServer`` of ``test_connection_wire`` on 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from protocol_server import (
    AGENT_ID,
    ProtocolServer,
    agent_config,
    dispatch,
    eventually,
    final_update,
    free_port,
    running_agent,
    running_server,
    start_running,
    updates_of,
)

from hetuflow_core.enums import AgentCommandKind, AgentStatus, CommandKind, InstanceStatus, ProtocolErrorCode
from hetuflow_core.protocol import (
    PROTOCOL_VERSION,
    Ack,
    AcquireTaskRequest,
    AgentCommand,
    AgentCommandData,
    AgentRegisterRequest,
    Error,
    HeartbeatRequest,
    TaskInstanceUpdated,
    TaskLogChunk,
)


@pytest.fixture
async def server() -> AsyncIterator[ProtocolServer]:
    async with running_server() as srv:
        yield srv


async def test_registers_with_identity_capabilities_and_credits(
    server: ProtocolServer, tmp_path: Path
) -> None:
    config = agent_config(tmp_path, server.url, labels={"gpu": "yes"}, name="worker one", capacity=3)
    async with running_agent(config) as app:
        conn = await server.registered(0)
        register = (await conn.expect(AgentRegisterRequest)).data
        assert register.agent_id == AGENT_ID
        assert register.name == "worker one"
        assert register.labels == {"gpu": "yes"}
        assert register.capabilities.capacity == 3
        assert CommandKind.BASH in register.capabilities.commands
        assert register.protocol_version == PROTOCOL_VERSION
        assert register.running == []
        credits = await conn.expect(AcquireTaskRequest)
        assert credits.data.free_slots == 3
        assert isinstance(conn.frames[0], AgentRegisterRequest)  # the first frame, always
        assert app.session.registered
        assert app.session.server_url == server.url + "/api/v1/agents/ws"


async def test_registration_measures_the_clock_offset(server: ProtocolServer, tmp_path: Path) -> None:
    server.clock_offset_ms = 120_000
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        await server.registered(0)
        assert await app.session.wait_registered(5)
        assert app.clock.offset_secs == pytest.approx(120.0, abs=1.0)


async def test_heartbeats_carry_status_metrics_and_running(server: ProtocolServer, tmp_path: Path) -> None:
    server.heartbeat_interval_secs = 0.1
    async with running_agent(agent_config(tmp_path, server.url, drain_timeout_secs=0.1)) as app:
        conn = await server.registered(0)
        task = dispatch("sleep 5")
        await conn.send_frame(task)
        beat = await conn.expect(HeartbeatRequest, lambda f: task.data.instance_id in f.data.running)
        assert beat.data.status is AgentStatus.ONLINE
        assert beat.data.metrics.running == 1
        assert beat.data.metrics.free_slots == 1
        assert 0 <= beat.data.metrics.memory_percent <= 100
        assert app.clock.synced


async def test_dispatch_is_acked_then_reported_and_credit_returned(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        conn = await server.registered(0)
        task = dispatch("echo hi; echo oops >&2")
        await conn.send_frame(task)
        ack = await conn.expect(Ack, lambda f: f.data.ack_id == task.id)
        assert ack.data.ok
        final = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        assert final.data.status is InstanceStatus.SUCCEEDED
        assert final.data.exit_code == 0
        statuses = [u.status for u in updates_of(conn, task.data.instance_id)]
        assert statuses == [InstanceStatus.RUNNING, InstanceStatus.SUCCEEDED]
        logs = b"".join(f.data.content for f in conn.of(TaskLogChunk) if f.data.stream == "stdout")
        assert logs == b"hi\n"
        # the freed slot is announced again after the final report
        after = conn.frames.index(final)
        credit = await conn.expect(AcquireTaskRequest, lambda f: conn.frames.index(f) > after)
        assert credit.data.free_slots == 2
        assert await app.session.flush(5)


async def test_reconnects_after_the_server_drops_the_connection(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        first = await server.registered(0)
        first.drop()
        await server.registered(1)
        await eventually(lambda: app.session.connections == 2)


async def test_reconnects_after_a_clean_close(server: ProtocolServer, tmp_path: Path) -> None:
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        first = await server.registered(0)
        await first.close(1001, "server restarting")
        assert first.close_code == 1001
        await server.registered(1)
        await eventually(lambda: app.session.connections == 2)


async def test_unacked_reports_are_resent_after_reconnect(server: ProtocolServer, tmp_path: Path) -> None:
    server.auto_ack = False
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        first = await server.registered(0)
        task = dispatch("echo resend-me")
        await first.send_frame(task)
        await first.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        sent = [f.id for f in first.frames if isinstance(f, TaskInstanceUpdated | TaskLogChunk)]
        assert len(sent) >= 3  # running, a log chunk, succeeded
        assert len(app.session.outbox) == len(sent)

        server.auto_ack = True
        first.drop()
        second = await server.registered(1)
        # state sync names the finished attempt whose report is still unacked
        register = (await second.expect(AgentRegisterRequest)).data
        assert [(r.instance_id, r.status) for r in register.running] == [
            (task.data.instance_id, InstanceStatus.SUCCEEDED)
        ]
        await second.wait_for(
            lambda: [f.id for f in second.frames if isinstance(f, TaskInstanceUpdated | TaskLogChunk)] == sent
        )
        assert await app.session.flush(5)


async def test_duplicate_dispatches_are_applied_once(server: ProtocolServer, tmp_path: Path) -> None:
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        conn = await server.registered(0)
        task = dispatch("echo once")
        again = dispatch()
        again.data = task.data  # another message id, the same instance
        await conn.send_frame(task)
        await conn.send_frame(task)
        await conn.send_frame(again)
        await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        await conn.wait_for(
            lambda: len([a for a in conn.of(Ack) if a.data.ack_id in (task.id, again.id)]) == 3
        )
        assert all(a.data.ok for a in conn.of(Ack))
        running = [u for u in updates_of(conn, task.data.instance_id) if u.status is InstanceStatus.RUNNING]
        assert len(running) == 1
        assert app.session.duplicates == 2


async def test_garbage_from_the_server_is_answered_and_survived(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        conn = await server.registered(0)
        await conn.send_text("this is not json")
        await conn.send_text('{"type": "no.such.frame", "id": "m-1", "ts": 0, "data": {}}')
        await conn.send_text('{"type": "task.dispatch", "id": "m-2", "ts": 0, "data": {"nope": 1}}')
        await conn.wait_for(lambda: len(conn.of(Error)) == 3)
        codes = [e.data.code for e in conn.of(Error)]
        assert codes == [
            ProtocolErrorCode.MALFORMED,
            ProtocolErrorCode.UNKNOWN_TYPE,
            ProtocolErrorCode.INVALID,
        ]
        assert [e.data.ref_id for e in conn.of(Error)][1:] == ["m-1", "m-2"]
        # and the connection still works
        task = dispatch("echo still-here")
        await conn.send_frame(task)
        done = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        assert done.data.status is InstanceStatus.SUCCEEDED
        assert app.session.bad_frames == 3
        assert app.session.connections == 1


async def test_oversized_server_message_is_refused_without_dropping(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_agent(agent_config(tmp_path, server.url, max_message_bytes=65_536)) as app:
        conn = await server.registered(0)
        await conn.send_text("x" * 100_000)
        error = await conn.expect(Error)
        assert error.data.code is ProtocolErrorCode.TOO_LARGE
        task = dispatch()
        await conn.send_frame(task)
        await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        assert app.session.connections == 1


async def test_fails_over_to_the_next_url(server: ProtocolServer, tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    async with running_agent(agent_config(tmp_path, dead, server.url)) as app:
        await server.registered(0)
        assert await app.session.wait_registered(5)
        assert app.session.server_url == server.url + "/api/v1/agents/ws"


async def test_moves_to_the_other_server_when_one_goes_away(tmp_path: Path) -> None:
    async with (
        running_server() as a,
        running_server() as b,
        running_agent(agent_config(tmp_path, a.url, b.url)) as app,
    ):
        await a.registered(0)
        await a.stop()
        await b.registered(0)
        await eventually(lambda: app.session.server_url == b.url + "/api/v1/agents/ws")


async def test_a_refused_token_is_logged_and_retried(
    server: ProtocolServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.tokens = {"another-token": AGENT_ID}
    with caplog.at_level(logging.ERROR, logger="hetuflow_agent"):
        async with running_agent(agent_config(tmp_path, server.url)) as app:
            await eventually(lambda: server.attempts >= 3)
            assert not app.session.registered
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)


async def test_a_busy_server_is_retried_no_sooner_than_its_retry_after(
    server: ProtocolServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.busy_refusals, server.retry_after_secs = 1, 1.5
    with caplog.at_level(logging.INFO, logger="hetuflow_agent"):
        async with running_agent(agent_config(tmp_path, server.url)) as app:
            assert await app.session.wait_registered(10)
    delays = [
        float(r.getMessage().rsplit(" in ", 1)[1].removesuffix(" s"))
        for r in caplog.records
        if r.getMessage().startswith("reconnecting to ")
    ]
    (delay,) = delays
    assert delay >= 1.5  # the jitter comes on top of the server's delay


async def test_a_rejected_registration_is_retried(server: ProtocolServer, tmp_path: Path) -> None:
    server.accept = False
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        await server.registered(1)
        assert not app.session.registered
        server.accept = True
        assert await app.session.wait_registered(10)


async def test_a_silent_server_is_left(server: ProtocolServer, tmp_path: Path) -> None:
    server.heartbeat_interval_secs = 0.1
    server.agent_timeout_secs = 0.6
    server.answer_heartbeats = False
    async with running_agent(agent_config(tmp_path, server.url)):
        await server.registered(1)


async def test_kill_list_at_registration_stops_the_instance(server: ProtocolServer, tmp_path: Path) -> None:
    async with running_agent(agent_config(tmp_path, server.url)):
        first = await server.registered(0)
        task = await start_running(first)
        server.kill = [task.data.instance_id]
        first.drop()
        second = await server.registered(1)
        register = (await second.expect(AgentRegisterRequest)).data
        assert [r.instance_id for r in register.running] == [task.data.instance_id]
        final = await second.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        assert final.data.status is InstanceStatus.CANCELLED


async def test_cancel_command_stops_a_running_task(server: ProtocolServer, tmp_path: Path) -> None:
    async with running_agent(agent_config(tmp_path, server.url)):
        conn = await server.registered(0)
        task = await start_running(conn)
        cancel = AgentCommand(
            data=AgentCommandData(command=AgentCommandKind.CANCEL, instance_id=task.data.instance_id)
        )
        await conn.send_frame(cancel)
        ack = await conn.expect(Ack, lambda f: f.data.ack_id == cancel.id)
        assert ack.data.ok
        final = await conn.expect(TaskInstanceUpdated, final_update(task.data.instance_id))
        assert final.data.status is InstanceStatus.CANCELLED
        # cancelling what does not run here is acked as not found
        again = AgentCommand(
            data=AgentCommandData(command=AgentCommandKind.CANCEL, instance_id=task.data.task_id)
        )
        await conn.send_frame(again)
        refused = await conn.expect(Ack, lambda f: f.data.ack_id == again.id)
        assert not refused.data.ok


async def test_drain_command_stops_taking_work(server: ProtocolServer, tmp_path: Path) -> None:
    server.heartbeat_interval_secs = 0.2
    async with running_agent(agent_config(tmp_path, server.url)) as app:
        conn = await server.registered(0)
        await conn.send_frame(AgentCommand(data=AgentCommandData(command=AgentCommandKind.DRAIN)))
        await conn.expect(HeartbeatRequest, lambda f: f.data.status is AgentStatus.DRAINING)
        await conn.expect(AcquireTaskRequest, lambda f: f.data.free_slots == 0)
        task = dispatch()
        await conn.send_frame(task)
        ack = await conn.expect(Ack, lambda f: f.data.ack_id == task.id)
        assert (ack.data.ok, ack.data.error) == (False, "agent is draining")
        assert app.session.draining


async def test_update_labels_command_applies_at_next_registration(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_agent(agent_config(tmp_path, server.url, labels={"zone": "a"})):
        conn = await server.registered(0)
        relabel = AgentCommand(
            data=AgentCommandData(command=AgentCommandKind.UPDATE_LABELS, labels={"zone": "b"})
        )
        await conn.send_frame(relabel)
        await conn.expect(Ack, lambda f: f.data.ack_id == relabel.id)
        conn.drop()
        second = await server.registered(1)
        assert (await second.expect(AgentRegisterRequest)).data.labels == {"zone": "b"}


async def test_a_held_dispatch_runs_once_the_running_one_ended(
    server: ProtocolServer, tmp_path: Path
) -> None:
    # Capacity 1 and one held ahead: the second dispatch is taken but starts only after the first ended.
    async with running_agent(agent_config(tmp_path, server.url, capacity=1), prefetch=1) as app:
        conn = await server.registered(0)
        assert (await conn.expect(AcquireTaskRequest)).data.free_slots == 2
        first, second = dispatch("sleep 0.3"), dispatch("true")
        await conn.send_frame(first)
        await conn.send_frame(second)
        assert (await conn.expect(Ack, lambda f: f.data.ack_id == second.id)).data.ok
        second_running = await conn.expect(
            TaskInstanceUpdated,
            lambda f: (
                f.data.instance_id == second.data.instance_id and f.data.status is InstanceStatus.RUNNING
            ),
        )
        first_final = await conn.expect(TaskInstanceUpdated, final_update(first.data.instance_id))
        assert conn.frames.index(first_final) < conn.frames.index(second_running)
        await conn.expect(TaskInstanceUpdated, final_update(second.data.instance_id))
        assert await app.session.flush(5)


async def test_a_dispatch_beyond_capacity_is_refused(server: ProtocolServer, tmp_path: Path) -> None:
    async with running_agent(agent_config(tmp_path, server.url, capacity=1, drain_timeout_secs=0.1)):
        conn = await server.registered(0)
        first, second = dispatch("sleep 5"), dispatch("sleep 5")
        await conn.send_frame(first)
        await conn.send_frame(second)
        ack = await conn.expect(Ack, lambda f: f.data.ack_id == second.id)
        assert (ack.data.ok, ack.data.error) == (False, "agent is at capacity (1 tasks)")
        assert (await conn.expect(Ack, lambda f: f.data.ack_id == first.id)).data.ok
