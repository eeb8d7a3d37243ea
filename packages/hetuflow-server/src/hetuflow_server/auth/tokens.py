"""Sealing and opening tokens: JWE compact serialization, ECDH-ES key agreement, A256GCM content encryption.

A token is a JSON claims set (``sub``, ``scope``, ``exp``, ``iat``, ``jti``, ``name``) encrypted to the
server's P-256 key. Only the holder of the private key can read it, and AES-GCM authenticates it, so a token
that was altered, garbled, or encrypted to another key fails to open. This module is the one place where
jwcrypto's exceptions are caught: whatever goes wrong while opening a token becomes `errors.Unauthorized`
with a short reason that never echoes the token.

Encryption alone does not prove who made a token (anyone with the *public* key could seal claims to it),
which is why `TokenService` also requires the token's ``jti`` to be on record and not revoked.
"""

from __future__ import annotations

import json
from uuid import UUID

import msgspec
from jwcrypto import common, jwe, jwk

from hetuflow_core.enums import TokenScope
from hetuflow_server.errors import Unauthorized

__all__ = ["ALGORITHM", "ENCRYPTION", "MAX_TOKEN_CHARS", "Claims", "TokenCodec"]

ALGORITHM = "ECDH-ES"
ENCRYPTION = "A256GCM"
TOKEN_TYPE = "JWT"
MAX_TOKEN_CHARS = 4096
"""Longer bearer strings are refused before any cryptography (ours are about 510 characters)."""

CLOCK_SKEW_SECS = 60
"""Tolerance for an ``iat`` slightly in the future (another server's clock)."""


class Claims(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The claims inside a token. Times are seconds since the Unix epoch."""

    sub: str
    scope: TokenScope
    exp: int
    iat: int
    jti: UUID
    name: str


_claims_decoder = msgspec.json.Decoder(Claims)
_claims_encoder = msgspec.json.Encoder()


class TokenCodec:
    """Seals claims into tokens and opens tokens with one private key."""

    def __init__(self, key: jwk.JWK) -> None:
        self._key = key
        self._public = jwk.JWK(**key.export_public(as_dict=True))
        self.key_id: str = key.get("kid") or key.thumbprint()

    def seal(self, claims: Claims) -> str:
        """The compact JWE of ``claims``, encrypted to this codec's key."""
        header = {"alg": ALGORITHM, "enc": ENCRYPTION, "typ": TOKEN_TYPE, "kid": self.key_id}
        token = jwe.JWE(_claims_encoder.encode(claims), protected=json.dumps(header))
        token.add_recipient(self._public)
        return str(token.serialize(compact=True))

    def open(self, token: str, *, now: float) -> Claims:
        """The claims of ``token`` if it opens with this key and has not expired at ``now``.

        Raises `Unauthorized` for anything else: too long, not a JWE, another algorithm, encrypted to
        another key, altered, claims of the wrong shape, expired, or issued in the future.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("token is too long")
        envelope = jwe.JWE(algs=[ALGORITHM, ENCRYPTION])
        try:
            envelope.deserialize(token, key=self._key)
        except common.JWException as exc:
            raise Unauthorized(self._reason(envelope, exc)) from None
        except (ValueError, TypeError, KeyError):
            # jwcrypto lets a few of these escape on inputs it does not expect.
            raise Unauthorized("token is malformed") from None
        try:
            claims = _claims_decoder.decode(envelope.payload)
        except msgspec.ValidationError as exc:
            raise Unauthorized(f"token claims are invalid: {exc}") from None
        except msgspec.DecodeError:
            raise Unauthorized("token claims are not JSON") from None
        if claims.exp <= now:
            raise Unauthorized("token has expired")
        if claims.iat > now + CLOCK_SKEW_SECS:
            raise Unauthorized("token was issued in the future")
        return claims

    def _reason(self, envelope: jwe.JWE, exc: common.JWException) -> str:
        try:
            kid = envelope.jose_header.get("kid")
        except (common.JWException, ValueError, TypeError, KeyError, AttributeError):
            kid = None  # the header itself did not parse
        if kid is not None and kid != self.key_id:
            return "token was issued by another server (unknown key)"
        if isinstance(exc, common.InvalidJWEData) and "recipient" in str(exc):
            # AES-GCM refuses to authenticate: the token was altered or sealed to another key.
            return "token cannot be decrypted with this server's key"
        return "token is malformed"
