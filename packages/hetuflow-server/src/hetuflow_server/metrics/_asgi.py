"""ASGI middleware measuring what crosses the wire: HTTP requests, and refusals on the agent WebSocket.

HTTP: every request is counted by method, route *template* and status, and timed from its arrival to the
end of its response. The template is the route Starlette matched (it records it in ``scope["route"]``), with
the prefix of the mounts it went through, e.g. ``/api/v1/jobs/{job_id}``; a path no route matched counts as
``unmatched``. Labels never carry raw paths, so their number stays bounded whatever clients request.

WebSocket (the agent gateway): the frames the server sends are watched for ``error`` frames, whose code is
counted, and the close messages for their code, so protocol trouble is visible without touching the gateway.
Only frames starting like an error frame are decoded; everything else passes after one prefix check.
"""

from __future__ import annotations

import time
from typing import Final

import msgspec
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hetuflow_server.metrics._registry import ServerMetrics

__all__ = ["UNMATCHED_ROUTE", "MetricsMiddleware", "route_template"]

UNMATCHED_ROUTE: Final = "unmatched"
# msgspec writes the tag field first, so an error frame always starts like this.
_ERROR_PREFIX: Final = '{"type":"error"'
_ERROR_PREFIX_BYTES: Final = _ERROR_PREFIX.encode()


class _ErrorData(msgspec.Struct):
    code: str = "other"


class _ErrorFrame(msgspec.Struct):
    data: _ErrorData


_error_decoder = msgspec.json.Decoder(_ErrorFrame)


class MetricsMiddleware:
    """Feeds ``metrics`` with HTTP requests and agent WebSocket refusals (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # what the client gets when the application raises before answering

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.http_request(
                scope["method"], route_template(scope, root_path), status, time.perf_counter() - started
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.send":
                frame: str | bytes = message.get("text") or message.get("bytes") or b""
                if _is_error_frame(frame):
                    self.metrics.protocol_error(_error_code(frame))
            elif kind == "websocket.close":
                self.metrics.agent_socket_closed(int(message.get("code", 1000)))
            elif kind == "websocket.http.response.start":  # refused with a plain HTTP answer instead
                self.metrics.agent_socket_closed(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watched_send)


def route_template(scope: Scope, root_path: str = "") -> str:
    """The template of the route that handled ``scope`` (after the app ran), relative to ``root_path``."""
    route = scope.get("route")
    # Mounts extend root_path by the prefix they matched; what the app's own root path adds is not ours.
    prefix = str(scope.get("root_path", ""))[len(root_path) :]
    if isinstance(route, Mount):
        # A mount that matched but none of its routes did (a 404 inside the API) or that serves files.
        return f"{prefix}/{{path}}"
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    return prefix + template


def _is_error_frame(frame: str | bytes) -> bool:
    if isinstance(frame, str):
        return frame.startswith(_ERROR_PREFIX)
    return frame.startswith(_ERROR_PREFIX_BYTES)


def _error_code(frame: str | bytes) -> str:
    try:
        return _error_decoder.decode(frame).data.code
    except msgspec.DecodeError:
        return "other"
