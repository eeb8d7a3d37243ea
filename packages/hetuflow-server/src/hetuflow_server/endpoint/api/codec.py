"""The API's one boundary for msgspec: request bodies, query strings and path segments in, JSON out.

Request bodies are read with a size limit (413), must be declared as JSON (415), must parse (400) and must
match the target Struct (422 naming the failing field's JSON path, extracted from msgspec's message). Query
parameters are converted into a per-route Struct the same way (422 naming the parameter), and path segments
that cannot name a resource (a malformed UUID, say) answer 404: no resource can live at such a URL.

Bodies nested more than ``MAX_NESTING_DEPTH`` arrays and objects deep are refused (422) as soon as they are
decoded: storing and answering such values recurses once per level, and deep enough input would
exhaust the stack wherever the first recursion happens to be.

Strings that PostgreSQL cannot store (those containing U+0000) are refused here too, with their path, so that
no client input can reach the database as a value it would reject with an internal error.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar, get_args, get_origin

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hetuflow_server import errors
from hetuflow_server.endpoint.api import problems

__all__ = [
    "JSON_MEDIA_TYPE",
    "MAX_BODY_BYTES",
    "MAX_NESTING_DEPTH",
    "decode_body",
    "decode_path_value",
    "decode_query",
    "field_problem",
    "json_response",
    "read_body",
]

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

JSON_MEDIA_TYPE = "application/json"
MAX_BODY_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have (free-form parameters included)."""

_encoder = msgspec.json.Encoder()

# msgspec ends validation messages with the location of the bad value: "- at `$.config.timeout_secs`", or
# "- at `key` in `$.config.env`" when a mapping key is wrong. Missing and unknown fields name the field in
# the message itself, relative to that location.
_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`(?P<path>\$[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`$")
_NUL = "\x00"
# Strings (escapes included) hide brackets from the nesting count; an unterminated one is left in place, and
# the decoder refuses that body anyway.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(code for code in range(256) if code not in b"[]{}")


def json_response(
    value: object, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Encode ``value`` (a Struct, list, dict ...) with msgspec as an ``application/json`` response."""
    return Response(
        _encoder.encode(value), status_code=status_code, headers=headers, media_type=JSON_MEDIA_TYPE
    )


def field_problem(exc: msgspec.ValidationError) -> errors.FieldProblem:
    """Turn a msgspec validation error into the failing field's JSON path and a message."""
    match = _LOCATION.match(str(exc))
    assert match is not None  # the pattern matches every string
    message = match.group("message")
    path = match.group("path") or "$"
    named = _NAMED_FIELD.match(message)
    if named is not None:
        path = f"{path}.{named.group('field')}"
    return errors.FieldProblem(path, message)


def _media_type_is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes before buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise problems.BodyTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise problems.BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode_body(request: Request, type_: type[T], *, optional: bool = False) -> T:
    """Decode the request's JSON body into ``type_``.

    With ``optional``, an empty body stands for ``{}`` (every field at its default), so that actions such as
    "trigger now" need no body at all.
    """
    body = await read_body(request)
    if not body.strip() and optional:
        body = b"{}"
    else:
        content_type = request.headers.get("content-type", "")
        if not _media_type_is_json(content_type):
            shown = content_type or "none"
            raise problems.UnsupportedMediaType(f"request body must be {JSON_MEDIA_TYPE} (got {shown})")
    try:
        value = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        problem = field_problem(exc)
        raise errors.InvalidInput(f"{problem.path}: {problem.message}", [problem]) from None
    except msgspec.DecodeError as exc:
        raise problems.MalformedBody(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        _raise_too_deep()  # nested deeper than the decoder's own recursion allows
    _refuse_deep_nesting(body)
    # "\u0000" is the only way a NUL can enter through JSON; look closer only when it may be there.
    if b"\\u0000" in body:
        _refuse_nul(msgspec.to_builtins(value), "$")
    return value


def _refuse_deep_nesting(body: bytes) -> None:
    """Raise InvalidInput when arrays and objects in ``body`` (well-formed JSON) nest past the limit."""
    # Fewer brackets than the limit cannot nest past it: the usual body costs two counts and nothing more.
    if body.count(b"[") + body.count(b"{") <= MAX_NESTING_DEPTH:
        return
    # Brackets alone, openers as "(" and closers as ")"; each pass removes the innermost level, so whatever
    # is left after the limit's number of passes nests deeper. Every pass runs at C speed over what is left.
    nesting = _JSON_STRING.sub(b"", body).translate(_PARENTHESES, _NOT_BRACKETS)
    for _ in range(MAX_NESTING_DEPTH):
        nesting = nesting.replace(b"()", b"")
        if not nesting:
            return
    _raise_too_deep()


def _raise_too_deep() -> NoReturn:
    message = f"arrays and objects are nested more than {MAX_NESTING_DEPTH} levels deep"
    raise errors.InvalidInput(f"$: {message}", [errors.FieldProblem("$", message)])


def _refuse_nul(value: object, path: str) -> None:
    """Raise InvalidInput naming the first string (value or key) under ``value`` that holds a NUL."""
    if isinstance(value, str):
        if _NUL in value:
            _raise_nul(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _NUL in str(key):
                _raise_nul(path)
            _refuse_nul(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{path}[{index}]")


def _raise_nul(path: str) -> None:
    message = "strings must not contain the NUL character (U+0000)"
    raise errors.InvalidInput(f"{path}: {message}", [errors.FieldProblem(path, message)])


def _is_list_type(annotation: object) -> bool:
    """True when a query Struct field takes a list, i.e. the parameter may repeat."""
    origin = get_origin(annotation)
    if origin is list:
        return True
    # Annotated[list[...], Meta] and unions with None wrap the list one level down.
    return any(_is_list_type(arg) for arg in get_args(annotation) if arg is not type(None))


def decode_query(request: Request, type_: type[S]) -> S:
    """Convert the query string into ``type_`` (a Struct of optional fields, one per parameter).

    List fields collect every occurrence of a repeated parameter; other parameters may appear once. Unknown
    parameters are refused rather than ignored, so that a misspelt filter never silently widens a listing.
    """
    params = request.query_params
    known, list_fields = _query_fields(type_)
    raw: dict[str, Any] = {}
    for name in params:
        values = params.getlist(name)
        if name not in known:
            raise _query_problem(name, f"unknown query parameter (accepted: {', '.join(sorted(known))})")
        if any(_NUL in value for value in values):
            raise _query_problem(name, "must not contain the NUL character (U+0000)")
        if name in list_fields:
            raw[name] = values
        elif len(values) > 1:
            raise _query_problem(name, "may be given only once")
        else:
            raw[name] = values[0]
    try:
        return msgspec.convert(raw, type_, strict=False)
    except msgspec.ValidationError as exc:
        problem = field_problem(exc)
        parameter = problem.path.removeprefix("$.").split(".", 1)[0].split("[", 1)[0]
        raise _query_problem(parameter, problem.message) from None


@functools.cache
def _query_fields(type_: type[msgspec.Struct]) -> tuple[frozenset[str], frozenset[str]]:
    """The parameter names of a query Struct, and those that may repeat (read once per type: msgspec
    inspects the class's annotations every time it is asked)."""
    fields = msgspec.structs.fields(type_)
    return (
        frozenset(field.encode_name for field in fields),
        frozenset(field.encode_name for field in fields if _is_list_type(field.type)),
    )


def _query_problem(name: str, message: str) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"query parameter {name!r}: {message}", [errors.FieldProblem(f"$.{name}", message)]
    )


def decode_path_value(raw: str, type_: Any, resource: str) -> Any:
    """Convert one path segment into ``type_``; a segment that cannot name a ``resource`` is a 404."""
    if _NUL in raw:
        raise errors.NotFound(resource, repr(raw))
    try:
        return msgspec.convert(raw, type_, strict=False)
    except msgspec.ValidationError:
        raise errors.NotFound(resource, repr(raw)) from None
