"""Keep-alive safety: finish reading a request body the application did not read before answering.

Many answers are decided before the body matters: 401/403 from the auth guard, 404/405 from routing, 415
from a wrong content type. If the response completes while the server has not yet seen the end of the request
body, Hypercorn cannot reuse the HTTP/1.1 connection and closes it without a ``Connection: close`` header, so
a client that sends its next request on that connection sees "server disconnected" instead of an answer
(reproducible with a few hundred alternating requests on one keep-alive connection).

`DrainRequestBody` reads and discards what is left of the body when the response starts, up to
`MAX_DRAIN_BYTES` and `MAX_DRAIN_SECS`; a body larger or slower than that is not waited for, and the
response then says ``Connection: close`` so that the client does not reuse the connection.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_DRAIN_BYTES", "MAX_DRAIN_SECS", "DrainRequestBody"]

MAX_DRAIN_BYTES: Final = 1024 * 1024
MAX_DRAIN_SECS: Final = 1.0


class DrainRequestBody:
    """ASGI middleware: read the rest of an unread request body before the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope):
            # Without a body h11 sees the end of the request right after its head: nothing to drain (and
            # streaming responses that listen for a disconnect keep their receive channel to themselves).
            await self.app(scope, receive, send)
            return
        body_done = False

        async def tracked_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done = True
            return message

        async def drain() -> bool:
            drained = 0
            try:
                async with asyncio.timeout(MAX_DRAIN_SECS):
                    while not body_done and drained <= MAX_DRAIN_BYTES:
                        drained += len((await tracked_receive()).get("body", b""))
            except TimeoutError:
                return False
            return body_done

        async def draining_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done and not await drain():
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, tracked_receive, draining_send)


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False
