"""Leader election: one server at a time holds the ``leader`` lease and does the singleton work.

Every server runs a ``Leadership`` that takes or renews the lease row each ``renew_secs`` (a third of the
lease) with one conditional upsert; every change of holder raises the lease's fencing token. A crashed
leader is replaced within ``lease_secs + renew_secs``; one that stops cleanly releases the lease at once.
A server believes it leads only until ``lease_secs`` after it *sent* its last renewal, so never longer than
the database does, and that belief only decides whether to start singleton work: every write of that work
is fenced in SQL by the tenure (``fence``, or a token check in the statement), so a deposed leader that has
not noticed yet changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final
from uuid import UUID

import msgspec

from hetuflow_server.errors import HetuflowError
from hetuflow_server.infra import bmc, db
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.loops import LoopFactory

__all__ = ["DEFAULT_LEASE_SECS", "Leadership", "Tenure"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECS: Final = 15.0
RELEASE_TIMEOUT_SECS: Final = 5.0

Clock = Callable[[], float]
ChangeHook = Callable[[bool], None]


class Tenure(msgspec.Struct, kw_only=True, frozen=True):
    """One term of holding a lease: who holds it and the fencing token of this term."""

    name: str
    holder: UUID
    token: int


class Leadership:
    """Takes, renews and releases the ``name`` lease for ``holder``; says whether this server leads now.

    Hooks given to ``watch`` are called with the new answer (on the loop's task; keep them quick) whenever it
    changes, e.g. to wake the generator as soon as this server is elected.
    """

    def __init__(
        self,
        db: ModelManager,
        holder: UUID,
        *,
        lease_secs: float = DEFAULT_LEASE_SECS,
        name: str = bmc.LEADER_LEASE,
        clock: Clock = time.monotonic,
    ) -> None:
        if lease_secs <= 0:
            raise ValueError(f"lease_secs must be positive, got {lease_secs}")
        self._db = db
        self._holder = holder
        self._name = name
        self._lease_secs = lease_secs
        self._hooks: list[ChangeHook] = []
        self._clock = clock
        self._tenure: Tenure | None = None
        self._valid_until = 0.0
        self._was_leading = False

    @property
    def holder(self) -> UUID:
        """The id this server holds leases under (its server id)."""
        return self._holder

    @property
    def lease_secs(self) -> float:
        """How long one acquisition or renewal holds the lease."""
        return self._lease_secs

    @property
    def renew_secs(self) -> float:
        """How often the lease is renewed (and how often a standby tries to take it): a third of the lease."""
        return self._lease_secs / 3

    @property
    def is_leader(self) -> bool:
        """True while this server holds the lease as far as it can tell (fence writes anyway)."""
        return self._tenure is not None and self._clock() < self._valid_until

    @property
    def tenure(self) -> Tenure | None:
        """The current term while leading, else None; its token fences singleton writes."""
        return self._tenure if self.is_leader else None

    def watch(self, hook: ChangeHook) -> None:
        """Call ``hook(leading)`` whenever this server becomes or stops being the leader."""
        self._hooks.append(hook)

    async def fence(self, conn: db.Connection) -> bool:
        """Inside a transaction: True while this server still holds the lease with its token. The lease row
        stays share-locked until the transaction ends, so no takeover happens before it commits."""
        tenure = self.tenure
        if tenure is None:
            return False
        return await bmc.LeaseBmc.hold(conn, tenure.name, holder=tenure.holder, token=tenure.token)

    async def step(self) -> bool:
        """Take or renew the lease once; whether this server leads afterwards. Database errors are logged
        (the lease then runs out locally on its own)."""
        sent_at = self._clock()
        try:
            async with self._db.transaction() as conn:
                lease = await bmc.LeaseBmc.acquire(
                    conn, self._name, holder=self._holder, ttl_secs=self._lease_secs
                )
        except HetuflowError as exc:
            logger.warning("could not renew the %s lease: %s", self._name, exc.detail)
            self._notice_change()
            return self.is_leader
        if lease is None:
            self._tenure = None
        else:
            previous = self._tenure
            self._tenure = Tenure(name=self._name, holder=self._holder, token=lease.token)
            self._valid_until = sent_at + self._lease_secs
            if previous is None or previous.token != lease.token:
                logger.info(
                    "holding the %s lease (fencing token %d)",
                    self._name,
                    lease.token,
                    extra={"lease": self._name, "token": lease.token},
                )
        self._notice_change()
        return self.is_leader

    async def release(self) -> None:
        """Give the lease up now (clean shutdown), so a standby takes over on its next attempt."""
        tenure, self._tenure = self._tenure, None
        self._notice_change()
        if tenure is None:
            return
        try:
            async with self._db.transaction() as conn:
                await bmc.LeaseBmc.release(conn, tenure.name, holder=tenure.holder)
        except HetuflowError as exc:
            logger.warning("could not release the %s lease: %s", tenure.name, exc.detail)
        else:
            logger.info("released the %s lease", tenure.name, extra={"lease": tenure.name})

    def loop(self) -> LoopFactory:
        """The background loop: ``step`` every ``renew_secs``; releases the lease when cancelled."""

        async def run() -> None:
            try:
                while True:
                    try:
                        await self.step()
                    except Exception:
                        logger.exception("leader election step failed")
                    await asyncio.sleep(self.renew_secs)
            except asyncio.CancelledError:
                # Hand over at once instead of making a standby wait for the lease to run out.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self.release()), RELEASE_TIMEOUT_SECS)
                raise

        return run

    def _notice_change(self) -> None:
        leading = self.is_leader
        if leading is self._was_leading:
            return
        self._was_leading = leading
        if not leading:
            logger.info("no longer holding the %s lease", self._name, extra={"lease": self._name})
        for hook in self._hooks:
            try:
                hook(leading)
            except Exception:
                logger.exception("leadership change hook failed")
