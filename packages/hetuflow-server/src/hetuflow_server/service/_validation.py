"""Re-validation of request Structs built in code, and the field-path errors services raise.

The API decodes bodies with msgspec, which already enforces the constraints declared on the types; services
are also called directly (CLI, tests, other services), so they convert their input once more through msgspec
and turn a ``ValidationError`` into ``InvalidInput`` naming the JSON path of the bad field.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

import msgspec

from hetuflow_server.errors import FieldProblem, InvalidInput

__all__ = ["invalid", "revalidate"]

T = TypeVar("T")

# msgspec ends its messages with "- at `$.a.b`", or "- at `key` in `$.a.b`" for a bad mapping key.
_PATH: Final = re.compile(r"- at (?:`key` in )?`(\$[^`]*)`$")


def invalid(path: str, message: str) -> InvalidInput:
    """InvalidInput for one field."""
    return InvalidInput(f"{path}: {message}", [FieldProblem(path, message)])


def revalidate(value: T, type_: type[T]) -> T:
    """``value`` checked against every constraint of ``type_``; else InvalidInput with its path."""
    try:
        return msgspec.convert(msgspec.to_builtins(value), type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        path = match.group(1) if match else "$"
        reason = message[: match.start()].strip() if match else message
        raise invalid(path, reason) from None
