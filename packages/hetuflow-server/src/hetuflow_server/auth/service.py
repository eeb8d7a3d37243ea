"""Issuing, listing, revoking and verifying tokens, and ending the connections of revoked ones.

A token is accepted only when it opens with the server's key and bears its signature (`TokenCodec`), and its
``jti`` is on record in ``sched_token``. The record is the authority: it must not be revoked or expired, and
the token's scope, subject and name must be the record's, its expiry no later than the record's.

Records of valid tokens are cached for ``cache_secs`` so that a busy API does not query ``sched_token`` on
every request. A revocation reaches every server at once: the server that revoked evicts the entry itself,
and the others evict it when the NOTIFY of the revoking transaction arrives (``on_revoked``). Should a
notification be lost (the LISTEN connection was down), the whole cache is dropped when it reconnects, and an
entry lives ``cache_secs`` at most anyway. Revoked and unknown tokens are never cached. The claims of tokens
that opened are kept too (by token string, until they expire or the token is revoked), so a client repeating
its token is not decrypted again; the record check above still runs for every request.

Connections that outlive the request that opened them (agent WebSockets, log tails) ``watch`` their token:
a revocation, or the periodic ``recheck`` against the records (every ``cache_secs``, for notifications
lost and for tokens that expire while connected), sets the connection's event and it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hetuflow_core.api import TokenCreate, TokenInfo, TokenIssued
from hetuflow_core.enums import TokenScope
from hetuflow_core.ids import uuid7
from hetuflow_server.auth.principal import Principal
from hetuflow_server.auth.tokens import Claims, TokenCodec
from hetuflow_server.auth.watch import TokenWatch
from hetuflow_server.errors import FieldProblem, InvalidInput, NotFound, Unauthorized
from hetuflow_server.service import tokens as token_records

__all__ = ["TokenService"]

logger = logging.getLogger(__name__)

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
        self._live = TokenWatch()

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
        """Revoke token ``jti`` (idempotent; NotFound if none): refused from now on by every server, and the
        connections it opened are closed."""
        self._forget(jti)
        record = await self._records.revoke(jti)
        # Again after the commit (of the API call's unit of work, when there is one): a lookup that read the
        # old row meanwhile may have cached it, and the connections it opened here are closed.
        self._records.after_commit(lambda: self._revoked(jti))
        return record

    def _forget(self, jti: UUID) -> None:
        self._revocations += 1
        self._cache.pop(jti, None)

    def _revoked(self, jti: UUID) -> None:
        self._forget(jti)
        for token in [token for token, claims in self._opened.items() if claims.jti == jti]:
            del self._opened[token]
        ended = self._live.end(jti)
        if ended:
            logger.info(
                "token %s is revoked or expired: closing its %d connection(s)",
                jti,
                ended,
                extra={"jti": str(jti)},
            )

    async def on_revoked(self, payload: str) -> None:
        """A token revocation announced over NOTIFY (payload: the jti), from any server or CLI."""
        try:
            jti = UUID(payload)
        except ValueError:
            logger.warning("ignoring malformed token revocation notice %r", payload[:80])
            return
        self._revoked(jti)

    async def on_reconnected(self) -> None:
        """The LISTEN connection is (again) up: revocations may have been missed meanwhile."""
        self._revocations += 1
        self._cache.clear()
        await self.recheck()

    @contextlib.contextmanager
    def watch(self, principal: Principal) -> Iterator[asyncio.Event]:
        """For the life of a long connection: an event set once the token of ``principal`` is revoked or
        expired."""
        with self._live.watch(principal.jti) as event:
            yield event

    async def recheck(self) -> None:
        """End the connections of tokens whose records say revoked or expired, or that are gone."""
        jtis = self._live.jtis()
        if not jtis:
            return
        records = {record.jti: record for record in await self._records.select(jtis)}
        now = self._clock()
        for jti in jtis:
            record = records.get(jti)
            if record is None or record.revoked_at is not None or record.expires_at.timestamp() <= now:
                self._revoked(jti)

    async def verify(self, token: str) -> Principal:
        """The principal of ``token``; `Unauthorized` if it is invalid, expired, unknown, revoked, or does not
        agree with its record."""
        claims = self._open(token)
        record = await self._record(claims.jti)
        if record is None:
            raise Unauthorized("token is not known to this server")
        if record.revoked_at is not None:
            raise Unauthorized("token has been revoked")
        if record.expires_at.timestamp() <= self._clock():
            raise Unauthorized("token has expired")
        if (
            record.scope != claims.scope
            or record.subject != claims.sub
            or record.name != claims.name
            or claims.exp > record.expires_at.timestamp()
        ):
            raise Unauthorized("token does not match its record")
        return Principal(subject=record.subject, scope=record.scope, jti=record.jti, name=record.name)

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
