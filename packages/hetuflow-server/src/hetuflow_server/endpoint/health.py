"""Probes for process supervisors and load balancers; no token needed.

``GET /healthz`` answers 200 as long as the process serves HTTP at all (liveness). ``GET /readyz`` answers
200 only when the server is started, the database answers and no migration is pending, and 503 with an
``application/problem+json`` body naming the reasons otherwise (readiness), including while shutting down.
"""

from __future__ import annotations

from typing import Protocol, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hetuflow_core.api import Problem
from hetuflow_server.endpoint.api.problems import problem_response, problem_type

__all__ = ["HEALTH_PATH", "NOT_READY_CODE", "READY_PATH", "routes"]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
NOT_READY_CODE = "not-ready"

_encoder = msgspec.json.Encoder()


class _Probed(Protocol):
    """The part of the application container the probes use."""

    async def readiness(self) -> list[str]: ...


async def healthz(request: Request) -> Response:
    """Liveness: the process is up and serving."""
    return Response(_encoder.encode({"status": "ok"}), media_type="application/json")


async def readyz(request: Request) -> Response:
    """Readiness: database reachable, migrations current, not shutting down."""
    application = cast(_Probed, request.app.state.hetuflow)
    reasons = await application.readiness()
    if not reasons:
        return Response(_encoder.encode({"status": "ready"}), media_type="application/json")
    problem = Problem(
        type=problem_type(NOT_READY_CODE),
        title="Not ready",
        status=503,
        detail="; ".join(reasons),
        instance=request.url.path,
    )
    return problem_response(problem, headers={"Cache-Control": "no-store", "Retry-After": "1"})


def routes() -> list[BaseRoute]:
    """The probe routes, for the root of the application."""
    return [
        Route(HEALTH_PATH, healthz, methods=["GET"], name="healthz"),
        Route(READY_PATH, readyz, methods=["GET"], name="readyz"),
    ]
