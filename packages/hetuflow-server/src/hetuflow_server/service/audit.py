"""The audit trail: recording a change made through the API, and listing what was recorded.

``summarize`` turns a request body into the summary an entry keeps: secret values (environment variables,
secrets, passwords, tokens) are replaced, long strings and lists are cut, so the trail can be shown to every
admin without becoming a second copy of what it records.
"""

from __future__ import annotations

from typing import Any, Final

from hetuflow_core.api import Page
from hetuflow_core.notification import AuditEntry
from hetuflow_server.infra import bmc, db
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._paging import DEFAULT_LIMIT, check_limit, decode_serial_cursor, make_page

__all__ = ["REDACTED", "AuditService", "summarize"]

REDACTED: Final = "[redacted]"
SECRET_KEYS: Final = frozenset({"secret", "password", "token", "api_key", "authorization"})
"""Keys whose values never enter the trail."""
SECRET_MAPPINGS: Final = frozenset({"env"})
"""Keys of mappings whose names are kept and whose values are not (which variables changed, not to what)."""
MAX_STRING_CHARS: Final = 256
MAX_ITEMS: Final = 50
MAX_DEPTH: Final = 8


def summarize(value: Any) -> dict[str, Any]:
    """The audit summary of a decoded request body (JSON builtins): secrets replaced, size bounded."""
    if value is None:
        return {}
    summary = _summarize(value, 0)
    return summary if isinstance(summary, dict) else {"body": summary}


def _summarize(value: Any, depth: int) -> Any:
    if depth >= MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in list(value.items())[:MAX_ITEMS]:
            name = str(key)
            if name.lower() in SECRET_KEYS:
                out[name] = REDACTED
            elif name.lower() in SECRET_MAPPINGS and isinstance(item, dict):
                out[name] = {str(k): REDACTED for k in list(item)[:MAX_ITEMS]}
            else:
                out[name] = _summarize(item, depth + 1)
        return out
    if isinstance(value, list):
        items = [_summarize(item, depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"[{len(value) - MAX_ITEMS} more]")
        return items
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return f"{value[:MAX_STRING_CHARS]}[{len(value) - MAX_STRING_CHARS} more characters]"
    return value


class AuditService:
    """The audit trail of changes made through the API."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    @staticmethod
    async def record(conn: db.Connection, entry: bmc.NewAuditEntry) -> None:
        """Record one change on ``conn``, in the change's own transaction (committed with it)."""
        await bmc.AuditBmc.insert(conn, entry)

    async def list(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[AuditEntry]:
        """A page of entries, newest first, matching every filter given."""
        limit = check_limit(limit)
        before = decode_serial_cursor(cursor)
        async with self._db.transaction() as conn:
            rows = await bmc.AuditBmc.select_page(
                conn, before_id=before, target=target, actor=actor, action=action, limit=limit + 1
            )
        return make_page(rows, limit, lambda entry: (entry.id,))
