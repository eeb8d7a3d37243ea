"""Sealing and opening tokens: a signed JWT (HS256) nested in a JWE (ECDH-ES key agreement, A256GCM).

A token is a JSON claims set (``sub``, ``scope``, ``exp``, ``iat``, ``jti``, ``name``), first signed and then
encrypted to the server's P-256 key. Encryption to a public key proves nothing about who made a token (anyone
who learnt the public key could seal claims to it), so the claims are signed too, with HMAC-SHA256 under a key
derived from the server's *private* key (HKDF, domain-separated, never the EC key itself): only a holder of
the key file can mint a token, and only a holder can read one. A token that was altered, garbled, encrypted
to another key, or never signed fails to open.

Tokens of the first format (claims encrypted but not signed) are refused with a message saying so; they
must be issued again. This module is the one place where jwcrypto's exceptions are caught: whatever goes
wrong while opening a token becomes `errors.Unauthorized` with a short reason that never echoes the token.
`TokenService` then holds the token against its record in the database, which has the last word.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from uuid import UUID

import msgspec
from jwcrypto import common, jwe, jwk, jws

from hetuflow_core.enums import TokenScope
from hetuflow_server.errors import Unauthorized

__all__ = ["ALGORITHM", "ENCRYPTION", "MAX_TOKEN_CHARS", "SIGNATURE", "Claims", "TokenCodec"]

ALGORITHM = "ECDH-ES"
ENCRYPTION = "A256GCM"
SIGNATURE = "HS256"
TOKEN_TYPE = "JWT"
MAX_TOKEN_CHARS = 4096
"""Longer bearer strings are refused before any cryptography (ours are about 800 characters)."""

CLOCK_SKEW_SECS = 60
"""Tolerance for an ``iat`` slightly in the future (another server's clock)."""

_SIGNING_KEY_INFO = b"hetuflow token signing key v1"
"""HKDF ``info``: binds the derived key to this one use, so it is independent of every other use of the
private key (ECDH here)."""
UNSIGNED = "token claims are not signed by this server (issued by an older version?): issue a new token"


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
    """Signs and seals claims into tokens, and opens and verifies tokens, with one private key."""

    def __init__(self, key: jwk.JWK) -> None:
        self._key = key
        self._public = jwk.JWK(**key.export_public(as_dict=True))
        self._signing = _signing_key(key)
        self.key_id: str = key.get("kid") or key.thumbprint()

    def seal(self, claims: Claims) -> str:
        """The compact JWE (encrypted to this codec's key) of the compact JWS (signed) of ``claims``."""
        signed = jws.JWS(_claims_encoder.encode(claims))
        signed.add_signature(
            self._signing,
            alg=SIGNATURE,
            protected=json.dumps({"alg": SIGNATURE, "typ": TOKEN_TYPE, "kid": self.key_id}),
        )
        # cty says the payload is itself a JWT (RFC 7519 section 5.2): the signed claims.
        header = {"alg": ALGORITHM, "enc": ENCRYPTION, "typ": TOKEN_TYPE, "cty": TOKEN_TYPE}
        header["kid"] = self.key_id
        token = jwe.JWE(signed.serialize(compact=True).encode("ascii"), protected=json.dumps(header))
        token.add_recipient(self._public)
        return str(token.serialize(compact=True))

    def open(self, token: str, *, now: float) -> Claims:
        """The claims of ``token`` if it opens with this key, bears this key's signature and has not expired.

        Raises `Unauthorized` for anything else: too long, not a JWE, another algorithm, encrypted to
        another key, altered, unsigned or signed by another key, claims of the wrong shape, expired, or
        issued in the future.
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
        claims = self._verified(envelope.payload)
        try:
            decoded = _claims_decoder.decode(claims)
        except msgspec.ValidationError as exc:
            raise Unauthorized(f"token claims are invalid: {exc}") from None
        except msgspec.DecodeError:
            raise Unauthorized("token claims are not JSON") from None
        if decoded.exp <= now:
            raise Unauthorized("token has expired")
        if decoded.iat > now + CLOCK_SKEW_SECS:
            raise Unauthorized("token was issued in the future")
        return decoded

    def _verified(self, payload: bytes) -> bytes:
        """The claims inside the signed payload of a token that opened; `Unauthorized` unless we signed it."""
        # A compact JWS is three base64url parts; the claims of the first format were bare JSON.
        if payload.count(b".") != 2:
            raise Unauthorized(UNSIGNED)
        signed = jws.JWS()
        try:
            signed.deserialize(payload.decode("ascii"))
            if signed.jose_header.get("alg") != SIGNATURE:
                raise Unauthorized(UNSIGNED)
            signed.verify(self._signing, alg=SIGNATURE)
        except common.JWException:
            raise Unauthorized("token signature is not valid") from None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise Unauthorized(UNSIGNED) from None
        return bytes(signed.payload)

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


def _signing_key(key: jwk.JWK) -> jwk.JWK:
    """The HMAC key of ``key``'s tokens: HKDF-SHA256 (RFC 5869) of the private scalar, one 32-byte block."""
    private = key.export_private(as_dict=True)["d"]
    scalar = base64.urlsafe_b64decode(private + "=" * (-len(private) % 4))
    extracted = hmac.new(b"\0" * hashlib.sha256().digest_size, scalar, hashlib.sha256).digest()
    derived = hmac.new(extracted, _SIGNING_KEY_INFO + b"\x01", hashlib.sha256).digest()
    return jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(derived).rstrip(b"=").decode("ascii"))
