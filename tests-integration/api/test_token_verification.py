"""Authentication against a real server process: who gets in, who gets 401, who gets 403.

Tokens come from every legitimate source (the CLI beside the server, the API) and every illegitimate one
(none, garbled, expired, forged with the server's own public key, sealed to another server's key, revoked,
unsigned, or disagreeing with the token's record, which has the last word).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from jwcrypto import jwe, jwk
from serverfixtures import ServerProcess, run_cli

from hetuflow_core.enums import TokenScope
from hetuflow_server.auth.keys import load_key
from hetuflow_server.auth.tokens import Claims, TokenCodec

JOBS = "/api/v1/jobs"
TOKENS = "/api/v1/tokens"
NEW_JOB = {"name": "auth-probe", "config": {"command": "bash", "script": "true"}}


@pytest.fixture(scope="module")
def anon(server_process: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_process.url, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def issue(client: httpx.Client, scope: str, name: str, agent_id: str | None = None) -> tuple[str, str]:
    """Issue a token through the API; ``(token, jti)``."""
    body = {"name": name, "scope": scope, **({"agent_id": agent_id} if agent_id else {})}
    response = client.post(TOKENS, json=body)
    assert response.status_code == 201, response.text
    issued = response.json()
    return issued["token"], issued["info"]["jti"]


def assert_unauthorized(response: httpx.Response, detail: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/unauthorized")
    if detail is not None:
        assert detail in problem["detail"]


def test_no_token_is_401(anon: httpx.Client) -> None:
    assert_unauthorized(anon.get(JOBS), "missing Authorization header")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer  x y", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "Bearer a.b.c.d.e", "token abc"],
)
def test_garbled_authorization_is_401(anon: httpx.Client, header: str) -> None:
    assert_unauthorized(anon.get(JOBS, headers={"Authorization": header}))


def test_cli_admin_token_is_accepted(server_client: httpx.Client) -> None:
    assert server_client.get(JOBS).status_code == 200
    assert server_client.get(TOKENS).status_code == 200


def test_read_token_reads_but_may_not_change(server_client: httpx.Client, anon: httpx.Client) -> None:
    token, _ = issue(server_client, "read", "reader")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200
    refused = anon.post(JOBS, json=NEW_JOB, headers=bearer(token))
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"].endswith("/forbidden")
    assert anon.get(TOKENS, headers=bearer(token)).status_code == 403  # token records are admin only


def test_read_token_from_cli_on_admin_route_is_403(server_process: ServerProcess, anon: httpx.Client) -> None:
    token = server_process.create_token("--scope", "read", "--name", "ci-read")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200
    assert anon.post(JOBS, json=NEW_JOB, headers=bearer(token)).status_code == 403


def test_agent_token_is_only_for_the_agent_gateway(server_client: httpx.Client, anon: httpx.Client) -> None:
    token, _ = issue(server_client, "agent", "worker-7", agent_id="worker-7")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 403
    assert anon.post(JOBS, json=NEW_JOB, headers=bearer(token)).status_code == 403


def test_revoked_through_api_is_refused_at_once(server_client: httpx.Client, anon: httpx.Client) -> None:
    token, jti = issue(server_client, "read", "short-lived")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200  # now in the verification cache
    assert server_client.delete(f"{TOKENS}/{jti}").status_code == 204
    assert_unauthorized(anon.get(JOBS, headers=bearer(token)), "revoked")


def test_revoked_through_cli_is_refused(server_process: ServerProcess, anon: httpx.Client) -> None:
    token = server_process.create_token("--scope", "read", "--name", "to-revoke")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200
    listed = server_process.cli("token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    jti = next(line for line in listed.stdout.splitlines() if '"to-revoke"' in line).split('"jti":"')[1][:36]
    revoked = server_process.cli("token", "revoke", jti)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"revoked token {jti}")
    # Another process revoked it: this server sees it once its cache entry (2 s here) runs out.
    deadline = time.monotonic() + 10
    while anon.get(JOBS, headers=bearer(token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_unauthorized(anon.get(JOBS, headers=bearer(token)), "revoked")


def test_token_of_another_servers_key_is_401(
    server_process: ServerProcess, anon: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Another server with its own key on the same database: its token is on record here, but sealed to the
    # other key, so this server cannot open it.
    other_dir = tmp_path_factory.mktemp("other-server")
    assert run_cli("keygen", "--data-dir", str(other_dir)).returncode == 0
    created = run_cli(
        "token",
        "create",
        "--data-dir",
        str(other_dir),
        "--database-url",
        str(server_process.database_url),
        "--scope",
        "admin",
        "--name",
        "intruder",
    )
    assert created.returncode == 0, created.stderr
    assert (other_dir / "server.jwk").exists()
    assert_unauthorized(anon.get(JOBS, headers=bearer(created.stdout.strip())), "another server")


def _codec(server_process: ServerProcess) -> TokenCodec:
    return TokenCodec(load_key(server_process.data_dir / "server.jwk"))


def test_forged_token_with_the_right_key_but_no_record_is_401(
    server_process: ServerProcess, anon: httpx.Client
) -> None:
    # Whoever learns the public key can seal claims to it; the missing record is what refuses them.
    now = int(time.time())
    forged = _codec(server_process).seal(
        Claims(
            sub="mallory", scope=TokenScope.ADMIN, exp=now + 3600, iat=now, jti=uuid.uuid4(), name="mallory"
        )
    )
    assert_unauthorized(anon.get(JOBS, headers=bearer(forged)), "not known")


def test_expired_token_is_401(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    _, jti = issue(server_client, "admin", "expired")
    now = int(time.time())
    expired = _codec(server_process).seal(
        Claims(
            sub="expired",
            scope=TokenScope.ADMIN,
            exp=now - 1,
            iat=now - 3600,
            jti=uuid.UUID(jti),
            name="expired",
        )
    )
    assert_unauthorized(anon.get(JOBS, headers=bearer(expired)), "expired")


def test_token_whose_claims_disagree_with_its_record_is_401(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    # A recorded read token's jti re-sealed as admin (possible only with the private key) is still refused.
    _, jti = issue(server_client, "read", "escalate")
    now = int(time.time())
    escalated = _codec(server_process).seal(
        Claims(
            sub="escalate",
            scope=TokenScope.ADMIN,
            exp=now + 600,
            iat=now,
            jti=uuid.UUID(jti),
            name="escalate",
        )
    )
    assert_unauthorized(anon.get(JOBS, headers=bearer(escalated)), "does not match")


def test_token_accepted_once_is_refused_after_it_expires(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    # The server keeps the claims of tokens it opened; their expiry still counts on every request.
    _, jti = issue(server_client, "read", "expiring")
    now = int(time.time())
    short = _codec(server_process).seal(
        Claims(
            sub="expiring", scope=TokenScope.READ, exp=now + 3, iat=now, jti=uuid.UUID(jti), name="expiring"
        )
    )
    assert anon.get(JOBS, headers=bearer(short)).status_code == 200
    while time.time() <= now + 3:
        time.sleep(0.1)
    assert_unauthorized(anon.get(JOBS, headers=bearer(short)), "expired")


def _expire_record(server_process: ServerProcess, jti: str) -> None:
    """Let the record of ``jti`` run out, as time would."""
    assert server_process.database_url is not None
    with psycopg.connect(server_process.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sched_token SET created_at = now() - interval '2 hours',"
            " expires_at = now() - interval '1 hour' WHERE jti = %s::uuid",
            (jti,),
        )


def _read_claims(jti: str, name: str, *, exp: int, iat: int | None = None) -> Claims:
    """Claims of a read token named ``name`` (its subject too) with the jti of a record."""
    iat = int(time.time()) if iat is None else iat
    return Claims(sub=name, scope=TokenScope.READ, exp=exp, iat=iat, jti=uuid.UUID(jti), name=name)


def _issued_record(client: httpx.Client, name: str) -> dict[str, Any]:
    """Issue a read token through the API; its record."""
    response = client.post(TOKENS, json={"name": name, "scope": "read"})
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()["info"]
    return record


def _sealed_unsigned(server_process: ServerProcess, claims: Claims) -> str:
    """Claims encrypted to the server's *public* key and not signed: what anyone who learnt it can make."""
    public = jwk.JWK(**load_key(server_process.data_dir / "server.jwk").export_public(as_dict=True))
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "typ": "JWT", "kid": public.thumbprint()}
    envelope = jwe.JWE(msgspec.json.encode(claims), protected=json.dumps(header))
    envelope.add_recipient(public)
    return str(envelope.serialize(compact=True))


def test_public_key_alone_cannot_revive_an_expired_record(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    # The jti of a real record that has run out, a new exp and any name, sealed with the public key only.
    _, jti = issue(server_client, "admin", "ran-out")
    _expire_record(server_process, jti)
    now = int(time.time())
    revived = _sealed_unsigned(
        server_process,
        Claims(sub="ran-out", scope=TokenScope.ADMIN, exp=now + 3600, iat=now, jti=uuid.UUID(jti), name="x"),
    )
    assert_unauthorized(anon.get(JOBS, headers=bearer(revived)), "not signed")


def test_unsigned_token_matching_a_live_record_is_refused(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    # What tokens of the first, unsigned format look like: they must be issued again.
    record = _issued_record(server_client, "old-format")
    jti = record["jti"]
    created = int(datetime.fromisoformat(record["created_at"]).timestamp())
    expires = int(datetime.fromisoformat(record["expires_at"]).timestamp())
    unsigned = _sealed_unsigned(server_process, _read_claims(jti, "old-format", exp=expires, iat=created))
    assert_unauthorized(anon.get(JOBS, headers=bearer(unsigned)), "issue a new token")


def test_signed_token_is_refused_once_its_record_expired(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    # Even the private key cannot stretch a token past its record: the record's expiry decides.
    token, jti = issue(server_client, "read", "record-expiry")
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200
    _expire_record(server_process, jti)
    stretched = _codec(server_process).seal(_read_claims(jti, "record-expiry", exp=int(time.time()) + 3600))
    deadline = time.monotonic() + 10  # the record read before it ran out is cached for 2 s here
    while anon.get(JOBS, headers=bearer(stretched)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_unauthorized(anon.get(JOBS, headers=bearer(stretched)), "expired")
    assert_unauthorized(anon.get(JOBS, headers=bearer(token)), "expired")


def test_signed_token_whose_name_or_expiry_disagrees_with_its_record_is_refused(
    server_process: ServerProcess, server_client: httpx.Client, anon: httpx.Client
) -> None:
    record = _issued_record(server_client, "named")
    jti = record["jti"]
    codec = _codec(server_process)
    renamed = codec.seal(
        msgspec.structs.replace(_read_claims(jti, "named", exp=int(time.time()) + 600), name="other")
    )
    assert_unauthorized(anon.get(JOBS, headers=bearer(renamed)), "does not match")
    later = int(datetime.fromisoformat(record["expires_at"]).timestamp()) + 3600
    stretched = codec.seal(_read_claims(jti, "named", exp=later))
    assert_unauthorized(anon.get(JOBS, headers=bearer(stretched)), "does not match")
