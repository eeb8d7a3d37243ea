"""``/api/v1/audit``: the trail of changes made through the API (admin only)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from hetuflow_core.api import Page
from hetuflow_core.enums import TokenScope
from hetuflow_core.notification import AuditEntry
from hetuflow_server.endpoint.api.operation import Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations"]

operations = Operations("audit", "Who changed what through the API, and when")

_Filter = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class AuditQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/audit``: every filter given must match."""

    target: Annotated[_Filter, msgspec.Meta(description="The resource's path, e.g. /jobs/<id>")] | None = None
    actor: Annotated[_Filter, msgspec.Meta(description="The name or jti of the token used")] | None = None
    action: Annotated[_Filter, msgspec.Meta(description="The operation id, e.g. delete_job")] | None = None


@operations.get("/audit", summary="List audit entries", scope=TokenScope.ADMIN)
async def list_audit(ctx: Context, query: AuditQuery) -> Page[AuditEntry]:
    """Changes made through the API, newest first: who (token name, jti and scope), when, which operation on
    which resource, and the request body with secret values replaced by ``[redacted]``."""
    return await ctx.services.audit.list(
        target=query.target, actor=query.actor, action=query.action, cursor=query.cursor, limit=query.limit
    )
