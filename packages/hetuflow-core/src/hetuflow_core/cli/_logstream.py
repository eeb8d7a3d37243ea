"""Client of the live log tail, ``GET /api/v1/instances/{id}/logs/stream`` (Server-Sent Events).

The typed REST client answers one request with one reply, so the stream has its own small reader here: it
parses ``event:``/``data:``/``id:`` lines, yields each stored log chunk as a ``TaskLogEntry`` and stops at the
``end`` event. A connection that drops mid-stream is opened again after the last position it saw (the ``id``
the server put on the last event of each read), so nothing is printed twice or lost. Failures are the REST
client's exceptions, so the command line reports them like any other request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Final
from uuid import UUID

import httpx
import msgspec

from hetuflow_core.client import RequestTimeout, TransportError
from hetuflow_core.client._errors import api_error
from hetuflow_core.enums import InstanceStatus
from hetuflow_core.task import TaskLogEntry

__all__ = ["LogStream", "StreamEnd"]

RECONNECTS: Final = 5
RECONNECT_DELAY_SECS: Final = 0.5
# The server sends a comment line every 15 s on an idle stream; a read waiting four times that is a dead link.
READ_TIMEOUT_SECS: Final = 60.0


class StreamEnd(msgspec.Struct, kw_only=True):
    """Data of the ``end`` event: the attempt ended in ``status``."""

    instance_id: UUID
    status: InstanceStatus


_entry = msgspec.json.Decoder(TaskLogEntry)
_end = msgspec.json.Decoder(StreamEnd)


class LogStream:
    """Reads live log tails from one server."""

    def __init__(self, server: str, token: str | None) -> None:
        headers = {"Accept": "text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECS)
        self._http = httpx.Client(base_url=server, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def follow(self, instance_id: UUID, after_seq: int = 0) -> Iterator[TaskLogEntry | StreamEnd]:
        """Every chunk of the attempt's log after ``after_seq``, as they are stored, then its `StreamEnd`."""
        position = after_seq
        failures = 0
        while True:
            try:
                for event, data, event_id in self._events(instance_id, position):
                    failures = 0
                    if event == "log":
                        yield _entry.decode(data)
                    elif event == "end":
                        yield _end.decode(data)
                        return
                    if event_id is not None:
                        position = int(event_id)
                # The server closed without an end event (it is shutting down): resume, maybe elsewhere.
            except (httpx.TimeoutException, httpx.RequestError) as exc:
                failures += 1
                if failures > RECONNECTS:
                    kind = RequestTimeout if isinstance(exc, httpx.TimeoutException) else TransportError
                    raise kind(f"log stream of {instance_id} failed: {exc}") from exc
            time.sleep(RECONNECT_DELAY_SECS)

    def _events(self, instance_id: UUID, after_seq: int) -> Iterator[tuple[str, bytes, str | None]]:
        path = f"/api/v1/instances/{instance_id}/logs/stream"
        with self._http.stream("GET", path, params={"after_seq": after_seq}) as response:
            if not response.is_success:
                raise api_error(
                    response.status_code, response.read(), method="GET", url=str(response.request.url)
                )
            event, data, event_id = "message", bytearray(), None
            for line in response.iter_lines():
                if not line:
                    if data:
                        yield event, bytes(data[:-1]), event_id
                    event, data, event_id = "message", bytearray(), None
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        event = value
                    elif field == "data":
                        data += value.encode() + b"\n"
                    elif field == "id":
                        event_id = value
