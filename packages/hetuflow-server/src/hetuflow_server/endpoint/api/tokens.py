"""``/api/v1/tokens``: issue, list and revoke API and agent tokens (admin only)."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.api import Page, TokenCreate, TokenInfo, TokenIssued
from hetuflow_core.enums import TokenScope
from hetuflow_server.endpoint.api import paging, wiring
from hetuflow_server.endpoint.api.operation import API_PREFIX, Context, Operations
from hetuflow_server.endpoint.api.params import PageQuery

__all__ = ["operations"]

operations = Operations("tokens", "Bearer tokens: issue, list, revoke")


def _location(issued: TokenIssued) -> str:
    return f"{API_PREFIX}/tokens/{issued.info.jti}"


class TokenListQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Query of ``GET /api/v1/tokens``."""

    include_revoked: bool = True


@operations.get("/tokens", summary="List tokens", scope=TokenScope.ADMIN)
async def list_tokens(ctx: Context, query: TokenListQuery) -> Page[TokenInfo]:
    """Records of issued tokens, oldest first (never the tokens themselves)."""
    tokens = await wiring.token_service(ctx.request).list(include_revoked=query.include_revoked)
    return paging.page_of(
        tokens, lambda info: f"{info.created_at.isoformat()}|{info.jti}", query.cursor, query.limit
    )


@operations.post("/tokens", summary="Issue a token", status=201, location=_location)
async def create_token(ctx: Context, body: TokenCreate) -> TokenIssued:
    """Issue a token; ``token`` appears in this answer only. ``agent`` tokens must name ``agent_id`` (the
    agent they belong to); other scopes must not."""
    return await wiring.token_service(ctx.request).issue(body, created_by=ctx.actor)


@operations.delete("/tokens/{jti}", summary="Revoke a token", resources={"jti": "token"})
async def revoke_token(ctx: Context, jti: UUID) -> None:
    """Revoke the token (idempotent): the server refuses it from now on."""
    await wiring.token_service(ctx.request).revoke(jti)
