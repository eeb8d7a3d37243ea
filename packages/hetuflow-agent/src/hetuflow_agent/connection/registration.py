"""Registration: the first exchange of every connection, with the state sync.

The agent says who it is, what it can run and what it still holds: the attempts of the runner
(``dispatched`` while waiting for their fire time, ``running``) and the finished attempts whose final
report the server has not acknowledged yet, listed with their final status so the server does not take
them for lost — their report is replayed right after registration. The server answers with
``agent.registered``; anything but an accepted answer in a compatible protocol version ends the
connection.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from hetuflow_agent.connection.channel import Channel
from hetuflow_agent.errors import ConnectionLost, RegistrationRejected
from hetuflow_core.protocol import (
    AgentRegisterRequest,
    AgentRegisterResponse,
    Error,
    RegisterResponseData,
    RunningInstance,
    is_compatible,
)

__all__ = ["register", "state_sync"]

logger = logging.getLogger(__name__)


def state_sync(held: list[RunningInstance], finished: list[RunningInstance]) -> list[RunningInstance]:
    """The ``running`` list of a registration: held attempts, and finished ones with unacked reports."""
    merged: dict[UUID, RunningInstance] = {item.instance_id: item for item in held}
    for item in finished:
        merged[item.instance_id] = item  # a final status is what the replay will say
    return list(merged.values())


async def register(
    channel: Channel, request: AgentRegisterRequest, timeout_secs: float
) -> RegisterResponseData:
    """Send ``request`` and return the server's accepting answer.

    Raises ``RegistrationRejected`` (refused, an ``error`` frame, another protocol major) or
    ``ConnectionLost`` (no answer within ``timeout_secs``).
    """
    url = channel.url
    await channel.send(request)
    try:
        async with asyncio.timeout(timeout_secs):
            while True:
                message = await channel.receive()
                if isinstance(message, AgentRegisterResponse):
                    break
                if isinstance(message, Error):
                    raise RegistrationRejected(url.url, f"{message.data.code}: {message.data.message}")
                if message is not None:  # the server must answer the registration first; it resends
                    logger.warning("ignoring %s before the registration response", type(message).__name__)
    except TimeoutError:
        raise ConnectionLost(url.url, f"{url}: no registration response within {timeout_secs:g} s") from None
    data = message.data
    if not data.accepted:
        raise RegistrationRejected(url.url, data.error or "no reason given")
    if not is_compatible(data.protocol_version):
        raise RegistrationRejected(url.url, f"server speaks protocol {data.protocol_version}")
    return data
