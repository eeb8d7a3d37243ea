"""TokenRecordService: the record of issued tokens (by jti) for listing and revocation.

Encryption and checking of tokens live in ``hetuflow_server.auth``; this only stores what is needed to list
tokens and refuse revoked ones. A jti that was never recorded counts as revoked: a token this database did not
issue is not trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from hetuflow_core.api import TokenInfo
from hetuflow_server.infra import bmc, notify
from hetuflow_server.infra.db import ModelManager
from hetuflow_server.service._validation import invalid

__all__ = ["TokenRecordService"]


class TokenRecordService:
    """Issued tokens."""

    def __init__(self, db: ModelManager) -> None:
        self._db = db

    async def insert(self, info: TokenInfo, *, created_by: str | None = None) -> TokenInfo:
        """Record a newly issued token; Conflict when its jti is already recorded."""
        if info.created_at.tzinfo is None or info.expires_at.tzinfo is None:
            raise invalid("$.expires_at", "token times need a UTC offset")
        if info.expires_at <= info.created_at:
            raise invalid("$.expires_at", "must be after created_at")
        async with self._db.transaction() as conn:
            return await bmc.TokenBmc.insert(conn, info, created_by=created_by)

    async def get(self, jti: UUID) -> TokenInfo:
        """The token record, or NotFound."""
        async with self._db.transaction() as conn:
            return await bmc.TokenBmc.get(conn, jti)

    async def list(self, *, include_revoked: bool = True) -> Sequence[TokenInfo]:
        """Token records, oldest first."""
        async with self._db.transaction() as conn:
            return await bmc.TokenBmc.select_all(conn, include_revoked=include_revoked)

    async def select(self, jtis: Sequence[UUID]) -> Sequence[TokenInfo]:
        """The records of the tokens ``jtis`` that exist."""
        async with self._db.transaction() as conn:
            return await bmc.TokenBmc.select(conn, [*jtis])

    async def revoke(self, jti: UUID) -> TokenInfo:
        """Revoke the token (idempotent; NotFound for an unknown jti) and tell every server at commit."""
        async with self._db.transaction() as conn:
            record = await bmc.TokenBmc.revoke(conn, jti)
            await notify.token_revoked(conn, jti)
            return record

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the unit of work the caller runs in committed (at once outside of one)."""
        self._db.after_commit(callback)

    async def is_revoked(self, jti: UUID) -> bool:
        """True when the token was revoked or was never recorded here."""
        async with self._db.transaction() as conn:
            info = await bmc.TokenBmc.get_or_none(conn, jti)
        return info is None or info.revoked_at is not None
