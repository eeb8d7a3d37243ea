"""A REST call as data, and the descriptor that makes one request builder a method of both clients.

Each endpoint is written once, as a method that only *builds* a ``Call`` (verb, path, query, body,
type of the reply). ``endpoint`` turns it into a method of ``Client`` that runs the call and returns
the decoded reply, and of ``AsyncClient`` that returns an awaitable of it, so the sync and async clients
can never drift apart, and request building is pure and testable without a network.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote
from uuid import UUID

import msgspec

__all__ = ["AsyncRunner", "Call", "Endpoint", "SyncRunner", "endpoint", "path_segment", "query"]

T = TypeVar("T")
P = ParamSpec("P")

QueryParams = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: ``response`` is the type a 2xx body decodes into (``type(None)``: no body)."""

    method: str
    path: str
    response: type[T]
    params: QueryParams = ()
    body: bytes | None = None


class SyncRunner(abc.ABC):
    """Base of clients that run a call and return its result."""

    @abc.abstractmethod
    def _execute(self, call: Call[T]) -> T:
        """Send ``call`` and decode its answer."""


class AsyncRunner(abc.ABC):
    """Base of clients that run a call in a coroutine."""

    @abc.abstractmethod
    async def _execute(self, call: Call[T]) -> T:
        """Send ``call`` and decode its answer."""


class Endpoint(Generic[P, T]):
    """A request builder seen as a client method (see the module docstring)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__name__ = build.__name__
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: SyncRunner, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, instance: AsyncRunner, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, instance: object, owner: type[Any]) -> Any:
        if instance is None:
            return self
        if not isinstance(instance, SyncRunner | AsyncRunner):
            raise TypeError(f"{self.__name__} belongs to a hetuflow client")
        build, run = self.build, instance._execute

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run(build(instance, *args, **kwargs))

        method.__name__ = self.__name__
        method.__qualname__ = f"{type(instance).__qualname__}.{self.__name__}"
        method.__doc__ = self.__doc__
        return method


def endpoint(build: Callable[Concatenate[Any, P], Call[T]]) -> Endpoint[P, T]:
    """Decorator form of ``Endpoint``."""
    return Endpoint(build)


def path_segment(value: UUID | str) -> str:
    """``value`` quoted for use as one path segment (agent ids may hold ``:``; nothing may hold ``/``)."""
    return quote(str(value), safe="")


def query(values: Mapping[str, object]) -> QueryParams:
    """Query pairs from ``values``: ``None`` and empty lists left out, lists repeated, values as text.

    Values go through ``msgspec.to_builtins`` so UUIDs, datetimes (RFC 3339) and enums are written the
    same way the JSON bodies write them.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if item is None:
                continue
            builtin = msgspec.to_builtins(item)
            text = ("true" if builtin else "false") if isinstance(builtin, bool) else str(builtin)
            pairs.append((key, text))
    return tuple(pairs)
