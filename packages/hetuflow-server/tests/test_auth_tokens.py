"""Tokens and keys: sealing and opening, and every way a token is refused; the key file's life."""

from __future__ import annotations

import json
import os
import stat
import uuid
from base64 import urlsafe_b64decode, urlsafe_b64encode
from pathlib import Path

import msgspec
import pytest
from jwcrypto import jwe, jwk, jws

from hetuflow_core.enums import TokenScope
from hetuflow_server.auth.keys import KeyFileError, generate_key, load_key, load_or_create_key, write_key
from hetuflow_server.auth.principal import scope_satisfies
from hetuflow_server.auth.tokens import MAX_TOKEN_CHARS, Claims, TokenCodec
from hetuflow_server.errors import Unauthorized

NOW = 1_800_000_000.0


def _claims(**changes: object) -> Claims:
    values: dict[str, object] = {
        "sub": "ops",
        "scope": TokenScope.ADMIN,
        "exp": int(NOW) + 3600,
        "iat": int(NOW),
        "jti": uuid.uuid4(),
        "name": "ops",
    }
    values.update(changes)
    return Claims(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def codec() -> TokenCodec:
    return TokenCodec(generate_key())


def test_seal_then_open_round_trips(codec: TokenCodec) -> None:
    claims = _claims(scope=TokenScope.AGENT, sub="worker-01")
    token = codec.seal(claims)
    assert token.count(".") == 4  # compact JWE: header.key.iv.ciphertext.tag
    assert codec.open(token, now=NOW) == claims


def test_header_is_ecdh_es_a256gcm_with_key_id(codec: TokenCodec) -> None:
    header = json.loads(urlsafe_b64decode(codec.seal(_claims()).split(".")[0] + "=="))
    assert header["alg"] == "ECDH-ES"
    assert header["enc"] == "A256GCM"
    assert header["kid"] == codec.key_id
    assert header["epk"]["crv"] == "P-256"


def test_claims_are_not_readable_without_the_key(codec: TokenCodec) -> None:
    token = codec.seal(_claims(name="very-secret-name"))
    for part in token.split("."):
        assert b"very-secret-name" not in urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_expired_token_refused(codec: TokenCodec) -> None:
    token = codec.seal(_claims(exp=int(NOW) - 1))
    with pytest.raises(Unauthorized, match="expired"):
        codec.open(token, now=NOW)


def test_token_from_the_future_refused(codec: TokenCodec) -> None:
    token = codec.seal(_claims(iat=int(NOW) + 3600, exp=int(NOW) + 7200))
    with pytest.raises(Unauthorized, match="future"):
        codec.open(token, now=NOW)


def test_token_of_another_key_refused(codec: TokenCodec) -> None:
    other = TokenCodec(generate_key())
    with pytest.raises(Unauthorized, match="another server"):
        codec.open(other.seal(_claims()), now=NOW)


def test_token_of_another_key_without_kid_refused(codec: TokenCodec) -> None:
    # Sealed by hand without a kid: the server cannot tell the key apart, decryption itself must fail.
    other_public = jwk.JWK(**generate_key().export_public(as_dict=True))
    envelope = jwe.JWE(b'{"sub":"x"}', protected=json.dumps({"alg": "ECDH-ES", "enc": "A256GCM"}))
    envelope.add_recipient(other_public)
    with pytest.raises(Unauthorized, match="cannot be decrypted"):
        codec.open(envelope.serialize(compact=True), now=NOW)


def test_tampered_ciphertext_refused(codec: TokenCodec) -> None:
    header, key, iv, ciphertext, tag = codec.seal(_claims()).split(".")
    raw = bytearray(urlsafe_b64decode(ciphertext + "=" * (-len(ciphertext) % 4)))
    raw[0] ^= 0x01
    forged = urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(Unauthorized, match="cannot be decrypted"):
        codec.open(".".join([header, key, iv, forged, tag]), now=NOW)


def test_other_algorithm_refused(codec: TokenCodec) -> None:
    # A token with a symmetric key-wrap algorithm must not be accepted even if it were well formed.
    secret = jwk.JWK.generate(kty="oct", size=256)
    envelope = jwe.JWE(b"{}", protected=json.dumps({"alg": "A256KW", "enc": "A256GCM", "kid": codec.key_id}))
    envelope.add_recipient(secret)
    with pytest.raises(Unauthorized):
        codec.open(envelope.serialize(compact=True), now=NOW)


def test_claims_of_wrong_shape_refused(codec: TokenCodec) -> None:
    public = jwk.JWK(**codec._key.export_public(as_dict=True))
    header = json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "kid": codec.key_id})
    for payload in (b'{"sub": "x", "scope": "root"}', b"not json", b"[]"):
        envelope = jwe.JWE(payload, protected=header)
        envelope.add_recipient(public)
        with pytest.raises(Unauthorized, match="claims"):
            codec.open(envelope.serialize(compact=True), now=NOW)


def _sealed_to(codec: TokenCodec, payload: bytes) -> str:
    """``payload`` encrypted to ``codec``'s public key, as anyone who knows that key can do."""
    public = jwk.JWK(**codec._key.export_public(as_dict=True))
    header = json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "cty": "JWT", "kid": codec.key_id})
    envelope = jwe.JWE(payload, protected=header)
    envelope.add_recipient(public)
    return str(envelope.serialize(compact=True))


def _b64(data: bytes) -> bytes:
    return urlsafe_b64encode(data).rstrip(b"=")


def test_payload_is_a_signed_jwt(codec: TokenCodec) -> None:
    header = json.loads(urlsafe_b64decode(codec.seal(_claims()).split(".")[0] + "=="))
    assert header["cty"] == "JWT"  # the encrypted payload is itself a (signed) JWT


def test_unsigned_claims_refused(codec: TokenCodec) -> None:
    unsigned = _sealed_to(codec, msgspec.json.encode(_claims()))
    with pytest.raises(Unauthorized, match="not signed"):
        codec.open(unsigned, now=NOW)


def test_unsecured_jws_refused(codec: TokenCodec) -> None:
    # "alg": "none" carries no signature at all.
    claims = msgspec.json.encode(_claims())
    unsecured = _b64(b'{"alg":"none"}') + b"." + _b64(claims) + b"."
    with pytest.raises(Unauthorized, match="not signed"):
        codec.open(_sealed_to(codec, unsecured), now=NOW)


@pytest.mark.parametrize("signer", ["another key", "the public key"])
def test_claims_signed_with_another_key_refused(codec: TokenCodec, signer: str) -> None:
    if signer == "another key":
        key = jwk.JWK.generate(kty="oct", size=256)
    else:  # HMAC keyed with what every client may know
        public = json.dumps(codec._key.export_public(as_dict=True)).encode()
        key = jwk.JWK(kty="oct", k=_b64(public).decode())
    signed = jws.JWS(msgspec.json.encode(_claims()))
    signed.add_signature(key, alg="HS256", protected=json.dumps({"alg": "HS256"}))
    with pytest.raises(Unauthorized, match="signature is not valid"):
        codec.open(_sealed_to(codec, signed.serialize(compact=True).encode()), now=NOW)


def test_each_key_signs_differently() -> None:
    # Two servers with their own keys: a token of one, re-encrypted to the other, does not verify there.
    first, second = TokenCodec(generate_key()), TokenCodec(generate_key())
    envelope = jwe.JWE()
    envelope.deserialize(first.seal(_claims()), key=first._key)
    with pytest.raises(Unauthorized, match="signature is not valid"):
        second.open(_sealed_to(second, envelope.payload), now=NOW)


@pytest.mark.parametrize(
    "garbled",
    [
        "",
        "x",
        "a.b.c.d.e",
        "....",
        "é.é.é.é.é",
        "eyJhbGciOiJub25lIn0.e30.",
        "Bearer x",
        "A" * (MAX_TOKEN_CHARS + 1),
    ],
)
def test_garbled_token_refused(codec: TokenCodec, garbled: str) -> None:
    with pytest.raises(Unauthorized):
        codec.open(garbled, now=NOW)


def test_truncated_token_refused(codec: TokenCodec) -> None:
    token = codec.seal(_claims())
    for cut in (1, 10, len(token) // 2):
        with pytest.raises(Unauthorized):
            codec.open(token[:-cut], now=NOW)


def test_scope_lattice() -> None:
    assert scope_satisfies(TokenScope.ADMIN, TokenScope.READ)
    assert scope_satisfies(TokenScope.ADMIN, TokenScope.ADMIN)
    assert scope_satisfies(TokenScope.READ, TokenScope.READ)
    assert not scope_satisfies(TokenScope.READ, TokenScope.ADMIN)
    assert scope_satisfies(TokenScope.AGENT, TokenScope.AGENT)
    assert not scope_satisfies(TokenScope.AGENT, TokenScope.READ)
    assert not scope_satisfies(TokenScope.ADMIN, TokenScope.AGENT)


# -- key files --------------------------------------------------------------------------------------------


def test_write_key_mode_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server.jwk"
    key = generate_key()
    write_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_key(path)
    assert loaded.thumbprint() == key.thumbprint()
    assert loaded.get("kid") == key.thumbprint()
    assert [p.name for p in path.parent.iterdir()] == ["server.jwk"]  # no temporary file left


def test_write_key_mode_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_key(tmp_path / "k.jwk", generate_key())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.jwk").stat().st_mode) == 0o600


def test_write_key_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "server.jwk"
    first = generate_key()
    write_key(path, first)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key(path, generate_key())
    assert load_key(path).thumbprint() == first.thumbprint()
    second = generate_key()
    write_key(path, second, force=True)
    assert load_key(path).thumbprint() == second.thumbprint()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_or_create_key_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "server.jwk"
    key, created = load_or_create_key(path)
    assert created
    again, created_again = load_or_create_key(path)
    assert not created_again
    assert again.thumbprint() == key.thumbprint()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "does not hold a JWK"),
        ('{"kty": "oct", "k": "AAAA"}', "does not hold a private P-256 EC key"),
        (None, "public"),  # a public key only
        ("", "does not hold a JWK"),
    ],
)
def test_load_key_refuses_bad_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "server.jwk"
    if content is None:
        path.write_text(generate_key().export_public())
        message = "does not hold a private P-256 EC key"
    else:
        path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        load_key(path)


def test_load_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "server.jwk")


def test_load_key_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_key(tmp_path)


def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "server.jwk"
    key, _ = load_or_create_key(path)
    token = TokenCodec(key).seal(_claims())
    reloaded = TokenCodec(load_key(path))
    assert reloaded.open(token, now=NOW).name == "ops"
