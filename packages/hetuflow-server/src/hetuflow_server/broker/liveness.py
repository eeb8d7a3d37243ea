"""Liveness: heartbeats, the state sync they carry, silent connections, and the reaper of silent agents.

A heartbeat costs the connection nothing but a dict entry: every ``HEARTBEAT_FLUSH_SECS`` the beats received
since the last flush are stored in one statement, which also returns each agent's live attempts. The state
sync then compares them with what its connection knows (`AgentSession.known`): an attempt dispatched over a
connection the agent had already left is handed back (the agent cannot hold it); one whose task already
ended is cancelled on the agent; one the agent runs that is no longer live for it (declared lost while its
heartbeats could not be stored) is cancelled too, so a stale process never runs beside its retry. Each cancel
is sent once per connection. The dispatcher's lock is taken only when an attempt looks foreign.

One loop gives up connections on which the agent said nothing for the agent timeout, counting only the time
the server was listening. The reaper runs on the leader only: agents silent for ``agent_timeout_secs`` go
offline and their live attempts become ``lost``. See docs/architecture.md (Liveness).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from hetuflow_core.agent import AgentMetrics
from hetuflow_core.enums import AgentCommandKind, AgentStatus
from hetuflow_core.protocol import AgentCommandData
from hetuflow_server.broker.dispatcher import Dispatcher
from hetuflow_server.broker.session import AgentSession, SessionClosed
from hetuflow_server.errors import DatabaseUnavailable, HetuflowError
from hetuflow_server.infra import bmc
from hetuflow_server.service import Services

__all__ = ["FRAME_ID_RETENTION", "HEARTBEAT_FLUSH_SECS", "Liveness"]

logger = logging.getLogger(__name__)

FRAME_ID_RETENTION: Final = timedelta(days=1)
"""How long the ids of applied agent frames are remembered (the retention pass forgets older ones; a resend
older than that is still harmless: every report and chunk is idempotent by state or by sequence number)."""
HEARTBEAT_FLUSH_SECS: Final = 0.5
"""How often the heartbeats received meanwhile are stored (one statement for all of them), at most: a quarter
of the heartbeat interval when that is shorter, so a stored heartbeat is never much older than the last one
received (the reaper measures silence from the stored ones)."""
SILENCE_CHECK_SECS: Final = 1.0
"""How often connections are checked for silence (at most a quarter of the agent timeout)."""
STALL_SECS: Final = 1.0
"""A silence check running this much later than planned means the server itself could not run: frames may be
waiting unread, so the check is skipped once rather than blaming the agents."""


class _Beat:
    """The latest heartbeat of one connection, waiting for the next flush."""

    __slots__ = ("known", "metrics", "running", "session")

    def __init__(self, session: AgentSession, metrics: AgentMetrics, running: Sequence[UUID]) -> None:
        self.session = session
        self.metrics = metrics
        self.running = set(running)
        self.known: set[UUID] = set()


class Liveness:
    """Heartbeats, silent connections and the leader's reaper (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        dispatcher: Dispatcher,
        *,
        server_id: UUID,
        heartbeat_interval_secs: float,
        agent_timeout_secs: float,
        is_leader: Callable[[], bool],
    ) -> None:
        self._services = services
        self._dispatcher = dispatcher
        self._server_id = server_id
        self._agent_timeout_secs = agent_timeout_secs
        self.flush_secs = min(HEARTBEAT_FLUSH_SECS, heartbeat_interval_secs / 4)
        """How often `flush` runs (see ``HEARTBEAT_FLUSH_SECS``)."""
        self._is_leader = is_leader
        self._pending: dict[str, _Beat] = {}
        self._flushing: dict[str, _Beat] = {}
        self._flush_lock = asyncio.Lock()
        self._sessions: set[AgentSession] = set()
        self._leading = False
        self._database_down = False
        self._judge_from: float | None = None
        """Loop time before which the reaper judges no agent (see `reap`)."""
        self._last_tick: float | None = None
        self._stall_secs = max(agent_timeout_secs / 4, STALL_SECS)
        """A reaper tick this late, or a pass this long: heartbeats may not have been stored meanwhile."""

    @property
    def tick_secs(self) -> float:
        """How often the reaper looks: four times per agent timeout."""
        return self._agent_timeout_secs / 4

    # -- connections ------------------------------------------------------------------------------------

    def watch(self, session: AgentSession) -> None:
        """Start watching a registered connection for silence."""
        self._sessions.add(session)

    async def forget(self, session: AgentSession) -> None:
        """The connection ended: stop watching it, and store its last heartbeat now if it is not stored yet.
        That must happen before the disconnect is recorded: the reaper measures silence from the last stored
        beat, and a beat stored after the disconnect would mark the agent online again."""
        self._sessions.discard(session)
        for beats in (self._pending, self._flushing):
            beat = beats.get(session.agent_id)
            if beat is not None and beat.session is session:
                await self.flush()  # waits for a flush in flight, then stores what is pending
                return

    async def watch_silence(self) -> None:
        """The loop giving up connections on which the agent stayed silent for the agent timeout (it beats far
        more often): a half-open TCP connection must not keep taking dispatches for an agent that went
        elsewhere. The gateway restarts a connection's silence whenever it starts listening again."""
        loop = asyncio.get_running_loop()
        interval = min(SILENCE_CHECK_SECS, self._agent_timeout_secs / 4)
        planned = loop.time() + interval
        while True:
            await asyncio.sleep(max(planned - loop.time(), 0.0))
            now = loop.time()
            stalled = now - planned > STALL_SECS
            planned = now + interval
            if stalled:
                continue
            for session in list(self._sessions):
                silent = now - session.last_seen
                if silent > self._agent_timeout_secs and not session.aborted.is_set():
                    logger.warning(
                        "agent %s silent for %.1f s; dropping its connection",
                        session.agent_id,
                        silent,
                        extra={"agent_id": session.agent_id},
                    )
                    session.abort()

    # -- heartbeats -------------------------------------------------------------------------------------

    def beat(self, session: AgentSession, metrics: AgentMetrics, running: Sequence[UUID] = ()) -> None:
        """Take a heartbeat of ``session``'s agent and the attempts it says it runs; stored and state-synced
        at the next flush (a newer beat of the same agent replaces this one)."""
        if session.open:  # a replaced connection's late beat must not stand for the current one
            self._pending[session.agent_id] = _Beat(session, metrics, running)

    def finished(self, session: AgentSession, instance_id: UUID) -> None:
        """``session``'s agent reported ``instance_id`` final after its last beat: that beat no longer says it
        runs it (else the state sync would cancel an attempt that simply ended before the flush)."""
        for beats in (self._pending, self._flushing):
            beat = beats.get(session.agent_id)
            if beat is not None and beat.session is session:
                beat.running.discard(instance_id)

    async def flush(self) -> None:
        """Store the heartbeats received since the last flush and run their state syncs. When the database
        refuses, the beats wait for the next flush (errors are logged)."""
        async with self._flush_lock:
            if not self._pending:
                return
            beats, self._pending = self._pending, {}
            self._flushing = beats
            try:
                agents = await self._store(beats)
                if agents is not None:
                    await self._sync(beats, agents)
            finally:
                self._flushing = {}

    async def _store(self, beats: dict[str, _Beat]) -> dict[str, bmc.AgentBeat] | None:
        for beat in beats.values():
            # Copied before the read: every attempt in it was committed before, so one the read does not find
            # live has ended for good (attempts queued on the session later are not in this copy).
            beat.known = set(beat.session.known)
        try:
            return await self._services.agents.heartbeats(
                [(agent_id, beat.metrics) for agent_id, beat in beats.items()], server_id=self._server_id
            )
        except HetuflowError as exc:
            logger.warning("%d heartbeats not stored yet: %s", len(beats), exc.detail)
            for agent_id, beat in beats.items():
                if beat.session in self._sessions:  # an ended connection's beat must not outlive it
                    self._pending.setdefault(agent_id, beat)  # a beat received meanwhile is newer
            return None

    async def _sync(self, beats: dict[str, _Beat], agents: dict[str, bmc.AgentBeat]) -> None:
        """The state sync of each beat against the agent's live attempts as the flush read them."""
        suspects: list[tuple[AgentSession, list[UUID]]] = []
        for agent_id, beat in beats.items():
            session = beat.session
            agent = agents.get(agent_id)
            if agent is None:
                logger.warning("heartbeat of unknown agent %s", agent_id, extra={"agent_id": agent_id})
                continue
            # Disabling an agent sends it nothing: its session learns it here, within a heartbeat.
            session.draining = agent.status in (AgentStatus.DRAINING, AgentStatus.DISABLED)
            live = {item.instance_id for item in agent.live}
            session.known.difference_update(beat.known - live)
            unknown = [instance_id for instance_id in live if instance_id not in session.known]
            if unknown:
                suspects.append((session, unknown))
            ended = [
                item.instance_id
                for item in agent.live
                if item.task_status.is_final
                and item.instance_id in session.known
                and item.instance_id not in session.cancelled
            ]
            self.cancel(session, ended, "the task ended while its agent could not be told")
            stale = [i for i in beat.running if i not in live and i not in session.cancelled]
            if stale:
                logger.warning(
                    "agent %s runs %d attempts that are no longer live for it: cancelling them",
                    agent_id,
                    len(stale),
                    extra={"agent_id": agent_id},
                )
            self.cancel(session, stale, "the attempt is no longer current (declared lost while unreachable)")
        if suspects:
            # A dispatch round may have committed an attempt the read saw without queueing it on its session
            # yet. Under the dispatcher's lock no round is halfway, so whatever is still unknown is foreign.
            async with self._dispatcher.lock:
                foreign = [(s, [i for i in ids if i not in s.known]) for s, ids in suspects]
            for session, instance_ids in foreign:
                if instance_ids:
                    logger.warning(
                        "agent %s cannot hold %d attempts dispatched over a connection it had left: "
                        "handed back",
                        session.agent_id,
                        len(instance_ids),
                        extra={"agent_id": session.agent_id},
                    )
                    self._dispatcher.hand_back(
                        instance_ids, "dispatched over a connection the agent had already left"
                    )

    def cancel(self, session: AgentSession, instance_ids: Sequence[UUID], reason: str) -> None:
        """Tell the agent to cancel ``instance_ids`` (closed sessions are skipped: registration re-syncs)."""
        for instance_id in instance_ids:
            try:
                session.command(
                    AgentCommandData(command=AgentCommandKind.CANCEL, instance_id=instance_id, reason=reason)
                )
            except SessionClosed:
                return

    # -- the reaper -------------------------------------------------------------------------------------

    async def reap(self) -> None:
        """One reaper tick: on the leader, reap silent agents (idempotent, so a second reaper during a
        leadership change does no harm).

        Silence is measured from stored heartbeats, and none could be stored while the database was down,
        while nobody led, or while this server itself could not run. So every agent gets one full agent
        timeout to be heard again before the reaper judges it: after this server becomes the leader, after
        the database answers again following a failed pass, and after a tick that came or ended late (a
        stalled process, or a database that kept its statements waiting without refusing them). The cutoff
        is taken when the tick starts, so a pass held up by the database never judges by a later clock."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        previous, self._last_tick = self._last_tick, now
        if not self._is_leader():
            self._leading = False
            return
        if not self._leading:
            self._leading = True
            self._grace(now, "this server became the leader")
        elif previous is not None and now - previous > self.tick_secs + self._stall_secs:
            self._grace(now, f"the reaper could not run for {now - previous:.1f}s")
        if self._database_down:
            await self._services.db.ping()  # still down: raises, and the next tick tries again
            self._database_down = False
            self._grace(loop.time(), "the database is reachable again")
        if self._judge_from is not None and now < self._judge_from:
            return
        try:
            offline = await self._services.dispatch.reap_offline_agents(
                timeout_secs=self._agent_timeout_secs, now=datetime.now(UTC)
            )
        except DatabaseUnavailable:
            self._database_down = True
            raise
        finally:
            if loop.time() - now > self._stall_secs:
                self._grace(loop.time(), f"a reaper pass took {loop.time() - now:.1f}s")
        if offline:
            logger.warning(
                "agents silent for %gs are offline: %s", self._agent_timeout_secs, ", ".join(offline)
            )
            self._dispatcher.wake()

    def _grace(self, now: float, reason: str) -> None:
        self._judge_from = now + self._agent_timeout_secs
        logger.info(
            "%s: agents get %gs to be heard before any is judged silent", reason, self._agent_timeout_secs
        )
