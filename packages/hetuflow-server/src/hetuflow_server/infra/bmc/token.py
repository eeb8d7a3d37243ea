"""TokenBmc: statements on ``sched_token`` (issued tokens by jti; the token itself is never stored)."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.api import TokenInfo
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import many, one, required
from hetuflow_server.infra.sql import query

__all__ = ["TokenBmc"]

_INSERT = query("insert_token")
_GET = query("get_token")
_LIST = query("list_tokens")
_REVOKE = query("revoke_token")
_SELECT = query("select_tokens")


class TokenBmc:
    """Issued tokens, for listing and revocation."""

    @staticmethod
    async def insert(conn: db.Connection, info: TokenInfo, *, created_by: str | None) -> TokenInfo:
        """Record an issued token; a jti already recorded is a Conflict."""
        params = {
            "jti": info.jti,
            "name": info.name,
            "scope": info.scope.value,
            "subject": info.subject,
            "created_at": info.created_at,
            "expires_at": info.expires_at,
            "created_by": created_by,
        }
        return required(await db.fetch_one(conn, _INSERT, params), TokenInfo, "token", info.jti)

    @staticmethod
    async def get(conn: db.Connection, jti: UUID) -> TokenInfo:
        """The token record, or NotFound."""
        return required(await db.fetch_one(conn, _GET, {"jti": jti}), TokenInfo, "token", jti)

    @staticmethod
    async def get_or_none(conn: db.Connection, jti: UUID) -> TokenInfo | None:
        """The token record, or None."""
        row = await db.fetch_one(conn, _GET, {"jti": jti})
        return None if row is None else one(row, TokenInfo)

    @staticmethod
    async def select_all(conn: db.Connection, *, include_revoked: bool) -> list[TokenInfo]:
        """Every token record, oldest first."""
        return many(await db.fetch_all(conn, _LIST, {"include_revoked": include_revoked}), TokenInfo)

    @staticmethod
    async def revoke(conn: db.Connection, jti: UUID) -> TokenInfo:
        """Revoke (idempotently: the first revocation time stays), or NotFound."""
        return required(await db.fetch_one(conn, _REVOKE, {"jti": jti}), TokenInfo, "token", jti)

    @staticmethod
    async def select(conn: db.Connection, jtis: list[UUID]) -> list[TokenInfo]:
        """The records of the tokens ``jtis`` that exist, in no particular order."""
        return many(await db.fetch_all(conn, _SELECT, {"jtis": jtis}), TokenInfo)
