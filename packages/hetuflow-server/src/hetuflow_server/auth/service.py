"""Issuing, listing, revoking and verifying tokens.

A token is accepted only when three things hold: it opens with the server's key (`TokenCodec`), it has not
expired, and its ``jti`` is on record in ``sched_token`` and not revoked. The record check is what makes
tokens unforgeable even by someone who learnt the public key, and what makes revocation work.

Records of valid tokens are cached for ``cache_secs`` so that a busy API does not query ``sched_token`` on
every request. Revoking through this service evicts the entry at once, so a revocation takes effect
immediately on the server that performed it; other servers sharing the database see it within
``cache_secs``. Revoked and unknown tokens are never cached. The claims of tokens that opened are kept too
(by token string, until they expire), so a client repeating its token is not decrypted again; the record
check above still runs for every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hetuflow_core.api import TokenCreate, TokenInfo, TokenIssued
from hetuflow_core.enums import TokenScope
from hetuflow_core.ids import uuid7
from hetuflow_server.auth.principal import Principal
from hetuflow_server.auth.tokens import Claims, TokenCodec
from hetuflow_server.errors import FieldProblem, InvalidInput, NotFound, Unauthorized
from hetuflow_server.service import tokens as token_records

__all__ = ["TokenService"]

MAX_CACHED_TOKENS = 10_000
"""Most token records, and most opened tokens, kept in memory (the oldest go first)."""


class TokenService:
    """Tokens of one server: sealed with its key, recorded in (and revoked through) the database."""

    def __init__(
        self,
        records: token_records.TokenRecordService,
        codec: TokenCodec,
        *,
        cache_secs: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._codec = codec
        self._cache_secs = cache_secs
        self._clock = clock
        # jti -> (record, monotonic time it was read); insertion order doubles as age for eviction.
        self._cache: dict[UUID, tuple[TokenInfo, float]] = {}
        # Bumped by every revocation: a lookup that started before one must not cache what it read.
        self._revocations = 0
        # token -> its claims: opening a token (ECDH key agreement, AES-GCM) costs more than the rest of a
        # small request. Only tokens that opened are kept, so garbage cannot fill it with misses.
        self._opened: dict[str, Claims] = {}

    @property
    def key_id(self) -> str:
        """The id (RFC 7638 thumbprint) of the key tokens are sealed with."""
        return self._codec.key_id

    async def issue(self, request: TokenCreate, created_by: str | None) -> TokenIssued:
        """Seal a new token for ``request``, record its jti, and return it with its record.

        ``agent`` tokens must name ``agent_id`` (it becomes the subject); other scopes must not.
        """
        subject = _subject_of(request)
        issued_at = int(self._clock())
        created_at = datetime.fromtimestamp(issued_at, UTC)
        info = TokenInfo(
            jti=uuid7(),
            name=request.name,
            scope=request.scope,
            subject=subject,
            created_at=created_at,
            expires_at=created_at + timedelta(seconds=request.ttl_secs),
            revoked_at=None,
        )
        claims = Claims(
            sub=subject,
            scope=request.scope,
            exp=issued_at + request.ttl_secs,
            iat=issued_at,
            jti=info.jti,
            name=request.name,
        )
        token = self._codec.seal(claims)
        recorded = await self._records.insert(info, created_by=created_by)
        return TokenIssued(token=token, info=recorded)

    async def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every issued token's record, oldest first."""
        return list(await self._records.list(include_revoked=include_revoked))

    async def get(self, jti: UUID) -> TokenInfo:
        """The record of token ``jti`` (NotFound if none)."""
        return await self._records.get(jti)

    async def revoke(self, jti: UUID) -> TokenInfo:
        """Revoke token ``jti`` (idempotent; NotFound if none); refused from now on by this server."""
        self._forget(jti)
        record = await self._records.revoke(jti)
        # Again after the commit (of the API call's unit of work, when there is one): a lookup that read the
        # old row meanwhile may have cached it.
        self._records.after_commit(lambda: self._forget(jti))
        return record

    def _forget(self, jti: UUID) -> None:
        self._revocations += 1
        self._cache.pop(jti, None)

    async def verify(self, token: str) -> Principal:
        """The principal of ``token``; `Unauthorized` if it is invalid, expired, unknown or revoked."""
        claims = self._open(token)
        record = await self._record(claims.jti)
        if record is None:
            raise Unauthorized("token is not known to this server")
        if record.revoked_at is not None:
            raise Unauthorized("token has been revoked")
        if record.scope != claims.scope or record.subject != claims.sub:
            raise Unauthorized("token does not match its record")
        return Principal(subject=claims.sub, scope=claims.scope, jti=claims.jti, name=claims.name)

    def _open(self, token: str) -> Claims:
        now = self._clock()
        claims = self._opened.get(token)
        if claims is None:
            claims = self._codec.open(token, now=now)
            if len(self._opened) >= MAX_CACHED_TOKENS:
                del self._opened[next(iter(self._opened))]
            self._opened[token] = claims
        elif claims.exp <= now:
            del self._opened[token]
            raise Unauthorized("token has expired")
        return claims

    async def _record(self, jti: UUID) -> TokenInfo | None:
        now = time.monotonic()
        cached = self._cache.get(jti)
        if cached is not None and now - cached[1] < self._cache_secs:
            return cached[0]
        revocations = self._revocations
        try:
            record: TokenInfo | None = await self._records.get(jti)
        except NotFound:
            record = None
        self._cache.pop(jti, None)
        unchanged = revocations == self._revocations
        if record is not None and record.revoked_at is None and unchanged and self._cache_secs > 0:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                del self._cache[next(iter(self._cache))]
            self._cache[jti] = (record, now)
        return record


def _subject_of(request: TokenCreate) -> str:
    if request.scope is TokenScope.AGENT:
        if request.agent_id is None:
            raise InvalidInput(
                "an agent token needs the id of its agent",
                [FieldProblem("$.agent_id", "required when scope is agent")],
            )
        return request.agent_id
    if request.agent_id is not None:
        raise InvalidInput(
            f"only agent tokens name an agent, not {request.scope} tokens",
            [FieldProblem("$.agent_id", "allowed only when scope is agent")],
        )
    return request.name
