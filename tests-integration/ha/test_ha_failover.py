"""Two servers on one database and agents given both URLs: a server dying (kill -9) or stopping (SIGTERM)
under running tasks, and an agent dying on the follower while the leader reaps it (the guarantees in
docs/architecture.md).

Real ``hetuflow-server serve`` and ``hetuflow-agent run`` processes (``pipelinefixtures``: heartbeat 0.5 s,
agent timeout 3 s, lease 3 s). Every task appends a line to a `Ledger` when its process starts, so "ran
exactly once" is counted from what really ran, not only from what the database says.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import httpx
from hahelpers import (
    Ledger,
    agent_server,
    assert_ran_once,
    frozen,
    job_attempts,
    leader,
    wait_job_ended,
    wait_registered_with,
)
from pipelinefixtures import AGENT_TIMEOUT_SECS, AgentPool, FakeAgent, Pipeline, open_ws, wait_for
from schedulingfixtures import at

from hetuflow_core.protocol import AcquireTaskData, AcquireTaskRequest, ScheduledTask

RETRY = {"max_retries": 2, "backoff": "fixed", "base_secs": 0.2, "jitter": 0.0}


def test_kill_9_of_the_agents_server_mid_task_fails_over_and_each_task_succeeds_once(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    doomed = pipeline.start_server("doomed")
    survivor = pipeline.server
    agent = agents.start(servers=[doomed, survivor], capacity=2)  # the first URL is tried first
    assert agent_server(pipeline, agent.agent_id) is doomed
    ledger = Ledger(tmp_path / "ledger")
    job_id = pipeline.create_job(
        suite=agents.suite, script=ledger.script("sleep 1.5\necho done"), retry=RETRY
    )
    # Two run and the agent holds the third ahead of a free slot (its prefetch): it keeps all three on the
    # survivor, where the two running ones report and the held one starts when a slot frees.
    task_ids = [pipeline.trigger(job_id) for _ in range(3)]
    wait_for(lambda: len(ledger.runs()) == 2, what="two tasks to start")
    wait_for(lambda: all(pipeline.instances(task_id) for task_id in task_ids), what="the third held ahead")

    killed_at = time.monotonic()
    pipeline.kill_server(doomed)
    failed_over_at = wait_registered_with(pipeline, agent.agent_id, survivor)
    agent.wait_registered(2)

    for task_id in task_ids:
        assert pipeline.wait_task(task_id)["status"] == "succeeded"
    assert_ran_once(job_attempts(pipeline, job_id), ledger)
    for task_id in task_ids:
        (instance,) = pipeline.instances(task_id)
        assert "done" in instance["output"]
    # The running attempts and the held one were listed in the state sync of the new registration and kept.
    assert re.search(
        rf"registered with ws://127\.0\.0\.1:{survivor.port}/\S+ \(.*, 3 kept, 0 killed\)", agent.log()
    )
    print(f"agent failover after kill -9 of its server: {failed_over_at - killed_at:.2f} s")


def test_an_agent_killed_on_one_server_is_reaped_by_the_leader_and_retried_on_the_other_servers_agent(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    follower = pipeline.start_server("follower")
    assert leader(pipeline) is pipeline.server  # the reaper runs on the other server than the dying agent's
    doomed = agents.start(servers=[follower], capacity=1)
    ledger = Ledger(tmp_path / "ledger")
    # The first attempt outlives the time the rescuer takes to start on a busy machine; its group, orphaned by
    # the kill, is killed at the end. The retry is short.
    pid_file = tmp_path / "first.pid"
    then = f'if [ "$HETUFLOW_ATTEMPT" = 1 ]; then echo $$ > {pid_file}; sleep 60; else sleep 1; fi\necho done'
    job_id = pipeline.create_job(suite=agents.suite, script=ledger.script(then), retry=RETRY)
    task_id = pipeline.trigger(job_id)
    wait_for(lambda: ledger.runs(), what="the task to start on the doomed agent")
    rescuer = agents.start(servers=[pipeline.server], capacity=1)

    doomed.kill()
    killed_at = time.time()
    try:
        task = pipeline.wait_task(task_id, timeout=AGENT_TIMEOUT_SECS + 20)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)

    assert task["status"] == "succeeded"
    first, second = pipeline.instances(task_id)
    assert (first["agent_id"], first["status"]) == (doomed.agent_id, "lost")
    assert (second["agent_id"], second["status"]) == (rescuer.agent_id, "succeeded")
    assert_ran_once(job_attempts(pipeline, job_id), ledger, retried=[task_id])
    delay = at(second["started_at"]).timestamp() - killed_at
    # The liveness guarantee: again elsewhere within the agent timeout, a reaper tick and the backoff.
    bound = AGENT_TIMEOUT_SECS + AGENT_TIMEOUT_SECS / 4 + RETRY["base_secs"] + 2.0
    assert delay < bound, f"the retry started {delay:.2f} s after the kill"
    print(f"retry on the other server's agent started {delay:.2f} s after kill -9 (bound {bound:g} s)")


def test_sigterm_of_a_server_moves_its_agents_to_the_other_and_nothing_is_lost(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    leaving = pipeline.start_server("leaving")
    staying = pipeline.server
    fleet = [agents.start(servers=[leaving, staying], capacity=2) for _ in range(2)]
    assert all(agent_server(pipeline, agent.agent_id) is leaving for agent in fleet)
    ledger = Ledger(tmp_path / "ledger")
    job_id = pipeline.create_job(suite=agents.suite, script=ledger.script("sleep 1.5"), retry=RETRY)
    task_ids = [pipeline.trigger(job_id) for _ in range(8)]  # four run, four wait
    wait_for(lambda: len(ledger.runs()) == 4, what="four tasks to start")

    stopping_at = time.monotonic()
    assert leaving.terminate() == 0
    stopped_at = time.monotonic()
    pipeline.servers.remove(leaving)
    moved_at = max(wait_registered_with(pipeline, agent.agent_id, staying) for agent in fleet)

    for task_id in task_ids:
        assert pipeline.wait_task(task_id)["status"] == "succeeded"
    # The running attempts were kept by the state sync at the new registration: one attempt each, none lost.
    assert_ran_once(job_attempts(pipeline, job_id), ledger)
    print(
        f"SIGTERM: server stopped in {stopped_at - stopping_at:.2f} s,"
        f" agents registered with the other {moved_at - stopping_at:.2f} s after the signal"
    )


def test_kill_9_of_a_server_in_a_flood_of_quick_tasks_loses_and_doubles_nothing(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    doomed = pipeline.start_server("flooded")
    survivor = pipeline.server
    fleet = [agents.start(servers=order, capacity=4, wait=False) for order in ([doomed, survivor],) * 2]
    fleet.append(agents.start(servers=[survivor, doomed], capacity=4, wait=False))
    for agent in fleet:
        agent.wait_registered()
    ledger = Ledger(tmp_path / "ledger")
    job_id = pipeline.create_job(suite=agents.suite, script=ledger.script())
    task_ids = {pipeline.trigger(job_id) for _ in range(150)}
    # The kill lands among dispatches not yet acked, reports not yet stored and acks not yet sent.
    wait_for(lambda: len(ledger.runs()) >= 40, what="the flood to be under way")
    pipeline.kill_server(doomed)
    attempts = wait_job_ended(pipeline, job_id, tasks=len(task_ids))
    assert set(attempts) == task_ids
    # A dispatch that never reached its agent is lost at its next registration and runs once on the next try.
    assert_ran_once(attempts, ledger, handed_back=True)
    lost = sum(len(runs) - 1 for runs in attempts.values())
    print(f"kill -9 in a flood of 150 tasks: {lost} dispatches handed back, none ran twice")


def test_agents_of_a_frozen_server_move_before_their_running_work_counts_as_lost(
    pipeline: Pipeline, agents: AgentPool, tmp_path: Path
) -> None:
    stalled = pipeline.start_server("stalled")
    survivor = pipeline.server
    fleet = [agents.start(servers=[stalled, survivor], capacity=2) for _ in range(2)]
    ledger = Ledger(tmp_path / "ledger")
    # Each run spans the whole freeze, longer than the agent timeout.
    script = ledger.script(f"sleep {AGENT_TIMEOUT_SECS + 1.5:g}")
    job_id = pipeline.create_job(suite=agents.suite, script=script, retry=RETRY)
    task_ids = [pipeline.trigger(job_id) for _ in range(4)]
    wait_for(lambda: len(ledger.runs()) == 4, what="four tasks to start")

    # SIGSTOP: the connections stay open but nothing answers (a stalled process, a stuck event loop). The
    # agents must give the server up and register elsewhere before the leader's reaper, counting the same
    # silence, declares their running attempts lost (which would kill and re-run them).
    with frozen(stalled) as frozen_at:
        moved_at = max(wait_registered_with(pipeline, agent.agent_id, survivor) for agent in fleet)
        for task_id in task_ids:
            assert pipeline.wait_task(task_id)["status"] == "succeeded"
    # One attempt each, none lost, none re-run: the agents moved before the leader counted their silence (how
    # fast is printed below; tests do not assert timings).
    assert_ran_once(job_attempts(pipeline, job_id), ledger)
    wait_for(
        lambda: httpx.get(f"{stalled.url}/readyz", timeout=5).status_code == 200, what="the thawed server"
    )
    print(f"frozen server: its agents registered elsewhere {moved_at - frozen_at:.2f} s after the freeze")


async def test_a_dispatch_lost_with_its_server_runs_elsewhere_even_with_no_retries(
    pipeline: Pipeline, agents: AgentPool
) -> None:
    doomed = pipeline.start_server("doomed-in-flight")
    agent_id = f"{agents.suite}-fake"
    token = pipeline.agent_token(agent_id)
    labels = {"suite": agents.suite}
    fake = FakeAgent(await open_ws(doomed, token, agent_id), agent_id)
    assert (await fake.register(labels=labels)).data.accepted
    task_id = pipeline.run(suite=agents.suite, script="echo ran")  # max_retries 0
    await fake.send(AcquireTaskRequest(data=AcquireTaskData(free_slots=1)))
    await fake.recv_until(ScheduledTask)  # pushed; the server dies before the agent could take it
    pipeline.kill_server(doomed)
    fake.ws.abort()

    # The agent registers with the other server without the attempt: it never started, so it is handed back
    # (its task due again) rather than lost against a retry budget of zero, which would fail a task that
    # never ran.
    back = FakeAgent(await open_ws(pipeline.server, token, agent_id), agent_id)
    try:
        assert (await back.register(labels=labels)).data.accepted
    finally:
        back.ws.abort()
    runner = agents.start()
    task = pipeline.wait_task(task_id)
    assert task["status"] == "succeeded", task
    first, second = pipeline.instances(task_id)
    assert (first["agent_id"], first["status"], first["started_at"]) == (agent_id, "lost", None)
    assert (second["agent_id"], second["status"]) == (runner.agent_id, "succeeded")
