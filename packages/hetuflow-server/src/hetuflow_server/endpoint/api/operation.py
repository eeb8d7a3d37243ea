"""Declared API operations: one decorator gives a handler its route, its checks and its OpenAPI entry.

A handler is a plain typed coroutine::

    @operations.post("/jobs", scope=ADMIN, status=201, summary="Create a job", location=job_location)
    async def create_job(ctx: Context, body: JobCreate) -> Job: ...

Its signature is the declaration: ``body`` is the decoded request body, ``query`` the Struct of the query
parameters, any other parameter a path parameter, the return annotation the response (``None``: 204), so the
OpenAPI document cannot drift from the code. ``Operation.handle`` is the API's one exception boundary:
deliberate errors become their problem, anything else is logged and becomes a generic 500 problem.

Every operation that changes state (all but ``GET``, unless declared with ``audit=False``) runs its handler
in one unit of work of the database and records an audit entry in it: who (the token's name, jti and scope),
the action (the operation id), the target (the resource's path) and a summary of the request body without
secret values. A change and its entry commit together; a change that fails leaves neither.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hetuflow_core.enums import TokenScope
from hetuflow_server import errors
from hetuflow_server.endpoint.api import codec, problems, wiring
from hetuflow_server.infra import bmc
from hetuflow_server.service import Services, audit

__all__ = ["API_PREFIX", "Context", "NoQuery", "Operation", "Operations", "PathParam"]

API_PREFIX = "/api/v1"

Handler = Callable[..., Awaitable[Any]]


class NoQuery(msgspec.Struct, forbid_unknown_fields=True):
    """The query of operations that take no parameters: any parameter given is refused."""


@dataclasses.dataclass(frozen=True, slots=True)
class PathParam:
    """A path parameter: its name in the path template, its type and the resource it addresses."""

    name: str
    type: Any
    resource: str


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What a handler gets besides its decoded inputs: the request, the services and who is calling."""

    request: Request
    services: Services

    @property
    def actor(self) -> str:
        """The name recorded as ``created_by``/``updated_by``: the subject of the caller's token."""
        return wiring.principal(self.request).subject


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, with everything the router and the OpenAPI document need to know."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: TokenScope
    status: int
    response: Any | None
    body: Any | None
    body_optional: bool
    query: type[msgspec.Struct]
    path_params: tuple[PathParam, ...]
    location: Callable[[Any], str] | None
    extra_errors: tuple[int, ...]
    audited: bool
    """The operation changes state: each successful call records an audit entry in its transaction."""

    @property
    def operation_id(self) -> str:
        """The handler's name, unique across the API (``list_jobs``, ``cancel_task``)."""
        return self.handler.__name__

    @property
    def description(self) -> str:
        """The handler's docstring, the longer text of the OpenAPI operation."""
        return inspect.cleandoc(self.handler.__doc__ or self.summary)

    async def handle(self, request: Request) -> Response:
        """Authorize, decode, call the handler and encode its result; every error becomes a problem."""
        try:
            await wiring.authorize(request, self.scope)
            kwargs: dict[str, Any] = {
                param.name: codec.decode_path_value(
                    request.path_params[param.name], param.type, param.resource
                )
                for param in self.path_params
            }
            query = codec.decode_query(request, self.query)
            if self.query is not NoQuery:
                kwargs["query"] = query
            if self.body is not None:
                kwargs["body"] = await codec.decode_body(request, self.body, optional=self.body_optional)
            result = await self._call(request, kwargs)
            if self.response is None:
                return Response(status_code=204)
            headers = {"Location": self.location(result)} if self.location is not None else None
            return codec.json_response(result, self.status, headers)
        except errors.HetuflowError as exc:
            return problems.error_response(request, exc)
        except Exception as exc:  # the one boundary: nothing unexpected escapes as a non-problem response
            return problems.internal_error_response(request, exc)

    async def _call(self, request: Request, kwargs: dict[str, Any]) -> Any:
        services = wiring.services(request)
        ctx = Context(request, services)
        if not self.audited:
            return await self.handler(ctx, **kwargs)
        async with services.db.unit_of_work() as conn:
            result = await self.handler(ctx, **kwargs)
            await services.audit.record(conn, self.audit_entry(request, kwargs, result))
        return result

    def audit_entry(self, request: Request, kwargs: dict[str, Any], result: Any) -> bmc.NewAuditEntry:
        """The audit entry of a successful call with decoded inputs ``kwargs`` that answered ``result``."""
        caller = wiring.principal(request)
        body = kwargs.get("body")
        return bmc.NewAuditEntry(
            actor=caller.name,
            actor_jti=caller.jti,
            scope=caller.scope.value,
            action=self.operation_id,
            method=self.method,
            path=request.url.path,
            target=self.audit_target(kwargs, result),
            summary=audit.summarize(None if body is None else msgspec.to_builtins(body)),
        )

    def audit_target(self, kwargs: dict[str, Any], result: Any) -> str:
        """The resource a call changed, as its path under the API prefix: the path up to its last
        parameter (``/tasks/{task_id}/cancel`` → ``/tasks/<id>``), else where a created resource lives, else
        the operation's path."""
        if self.path_params:
            last = "{" + self.path_params[-1].name + "}"
            template = self.path[: self.path.index(last) + len(last)]
            return template.format(**{param.name: kwargs[param.name] for param in self.path_params})
        if self.location is not None:
            return self.location(result).removeprefix(API_PREFIX)
        return self.path


class Operations:
    """The operations of one resource (one tag of the OpenAPI document), declared by decorators."""

    def __init__(self, tag: str, description: str) -> None:
        self.tag = tag
        self.description = description
        self.operations: list[Operation] = []

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a ``GET`` operation (``read`` scope unless given)."""
        return self._declare("GET", path, **{"scope": TokenScope.READ, **options})

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a ``POST`` operation (``admin`` scope unless given)."""
        return self._declare("POST", path, **{"scope": TokenScope.ADMIN, **options})

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a ``PATCH`` operation (``admin`` scope)."""
        return self._declare("PATCH", path, **{"scope": TokenScope.ADMIN, **options})

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a ``DELETE`` operation (``admin`` scope)."""
        return self._declare("DELETE", path, **{"scope": TokenScope.ADMIN, **options})

    def _declare(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        scope: TokenScope,
        status: int = 200,
        body_optional: bool = False,
        location: Callable[[Any], str] | None = None,
        extra_errors: tuple[int, ...] = (),
        resources: dict[str, str] | None = None,
        audit: bool | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                _operation_from_signature(
                    handler,
                    method=method,
                    path=path,
                    summary=summary,
                    tag=self.tag,
                    scope=scope,
                    status=status,
                    body_optional=body_optional,
                    location=location,
                    extra_errors=extra_errors,
                    resources=resources or {},
                    audited=method != "GET" if audit is None else audit,
                )
            )
            return handler

        return register


def _operation_from_signature(
    handler: Handler,
    *,
    method: str,
    path: str,
    resources: dict[str, str],
    **declared: Any,
) -> Operation:
    """Read body, query, path parameters and response type off the handler's annotations."""
    hints = typing.get_type_hints(handler, include_extras=True)
    names = list(inspect.signature(handler).parameters)
    if not names or hints.get(names[0]) is not Context:
        raise TypeError(f"{handler.__name__}: the first parameter must be the Context")
    template_names = {segment[1:-1] for segment in path.split("/") if segment.startswith("{")}
    body: Any | None = None
    query: type[msgspec.Struct] = NoQuery
    path_params: list[PathParam] = []
    for name in names[1:]:
        if name == "body":
            body = hints[name]
        elif name == "query":
            query = hints[name]
        elif name in template_names:
            resource = resources.get(name, name.removesuffix("_id").replace("_", " "))
            path_params.append(PathParam(name, hints[name], resource))
        else:
            raise TypeError(f"{handler.__name__}: parameter {name!r} is neither body, query nor in {path!r}")
    if template_names != {param.name for param in path_params}:
        raise TypeError(f"{handler.__name__}: path {path!r} and parameters disagree")
    returned = hints["return"]
    response = None if returned is type(None) else returned
    status = declared.pop("status")
    if response is None:
        status = 204
    return Operation(
        method=method,
        path=path,
        handler=handler,
        status=status,
        response=response,
        body=body,
        query=query,
        path_params=tuple(path_params),
        **declared,
    )


def routes_for(operations: list[Operation]) -> list[Route]:
    """One Starlette route per path, dispatching on the method (so a 405 names every allowed method)."""
    by_path: dict[str, dict[str, Operation]] = {}
    for operation in operations:
        methods = by_path.setdefault(operation.path, {})
        if operation.method in methods:
            raise ValueError(f"{operation.method} {operation.path} declared twice")
        methods[operation.method] = operation
    return [Route(path, _dispatcher(methods), methods=list(methods)) for path, methods in by_path.items()]


def _dispatcher(methods: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        # Starlette routes HEAD to a GET route; answer it as the GET (servers drop the body).
        method = "GET" if request.method == "HEAD" else request.method
        return await methods[method].handle(request)

    return dispatch
