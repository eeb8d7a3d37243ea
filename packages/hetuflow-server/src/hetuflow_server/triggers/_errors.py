"""The one error of schedule validation: which schedule field is wrong, and why.

``InvalidSchedule`` is an ``InvalidInput`` (so the API answers 422 with the field's JSON path) and also a
``ValueError`` (so code that only parses a cron expression can catch the usual exception).
"""

from __future__ import annotations

from hetuflow_server.errors import FieldProblem, InvalidInput

__all__ = ["InvalidSchedule"]


class InvalidSchedule(InvalidInput, ValueError):
    """A schedule field cannot be used: ``field`` names it (``"cron_expression"``, ``"timezone"``, ...)."""

    code = "invalid-schedule"
    title = "Invalid schedule"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", [FieldProblem(f"$.{field}", reason)])
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidSchedule], tuple[str, str]]:
        return (type(self), (self.field, self.reason))
