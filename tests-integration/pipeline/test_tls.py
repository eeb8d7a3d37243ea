"""TLS end to end: a server started with ``server.tls_cert``/``server.tls_key`` answers the API over HTTPS
only, an agent given the CA with ``--tls-ca-file`` registers over ``wss://`` and runs a task, and a client or
agent that trusts another CA is refused during the handshake.

The certificates are made here with ``cryptography``: a CA, a server certificate it signs for ``127.0.0.1``
and ``localhost``, and a second, unrelated CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pipelinefixtures import AGENT_ENV, SERVER_ENV, WAIT_SECS, wait_for
from serverfixtures import clean_env, free_port, run_cli, stop_process

READY_SECS = 30.0


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its certificate (PEM file) and key."""

    cert_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))


def make_authority(directory: Path, common_name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _validity(builder).sign(key, hashes.SHA256())
    path = directory / f"{common_name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(path, cert, key)


def make_server_cert(directory: Path, authority: Authority) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ``authority``; its PEM file and key file."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("hetuflow test server"))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False
        )
    )
    cert = _validity(builder).sign(authority.key, hashes.SHA256())
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class TlsServer:
    url: str
    port: int
    location: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_token: str = ""

    def cli(self, *args: str) -> str:
        result = run_cli(*args[:2], *self.location, *args[2:], env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority, Path, Path]:
    directory = tmp_path_factory.mktemp("pki")
    trusted = make_authority(directory, "hetuflow-test-ca")
    stranger = make_authority(directory, "another-ca")
    cert_path, key_path = make_server_cert(directory, trusted)
    return trusted, stranger, cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(
    migrated_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    pki: tuple[Authority, Authority, Path, Path],
) -> Iterator[TlsServer]:
    trusted, _, cert_path, key_path = pki
    data_dir = tmp_path_factory.mktemp("tls") / "data"
    data_dir.mkdir()
    port = free_port()
    env = {
        **SERVER_ENV,
        "HETUFLOW_SERVER__TLS_CERT": str(cert_path),
        "HETUFLOW_SERVER__TLS_KEY": str(key_path),
    }
    location = ["--data-dir", str(data_dir), "--database-url", migrated_database_url]
    log_path = data_dir.parent / "serve.log"
    args = [
        sys.executable,
        "-m",
        "hetuflow_server",
        "serve",
        *location,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stderr=log, env=clean_env(env))
    server = TlsServer(f"https://127.0.0.1:{port}", port, location, env, process, log_path)
    try:
        deadline = time.monotonic() + READY_SECS
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                if (
                    httpx.get(
                        f"{server.url}/readyz", verify=_trusting(trusted.cert_path), timeout=2
                    ).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        server.admin_token = server.cli("token", "create", "--scope", "admin", "--name", "tls-admin")
        yield server
    finally:
        status = stop_process(process, 20)
    assert status == 0, log_path.read_text(errors="replace")


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _client(server: TlsServer, ca: Path) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        verify=_trusting(ca),
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=15,
    )


def _start_agent(
    server: TlsServer, agent_id: str, ca: Path, root: Path, *, ca_of_server: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    with _client(server, ca_of_server) as client:
        issued = client.post(
            "/api/v1/tokens", json={"name": agent_id, "scope": "agent", "agent_id": agent_id}
        )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    wss = f"wss://127.0.0.1:{server.port}"
    args = [
        sys.executable, "-m", "hetuflow_agent", "run", "--server", wss, "--token", token, "--id", agent_id,
        "--labels", f"suite={agent_id}", "--capacity", "1", "--workdir", str(root / agent_id),
        "--tls-ca-file", str(ca),
    ]  # fmt: skip
    env = clean_env(AGENT_ENV)
    env["PATH"] = f"{env.get('PATH', '')}{os.pathsep}{Path(sys.executable).parent}"
    log_path = root / f"{agent_id}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, log_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_the_api_answers_over_https_with_the_servers_certificate(
    tls_server: TlsServer, pki: tuple[Authority, Authority, Path, Path]
) -> None:
    trusted = pki[0]
    with _client(tls_server, trusted.cert_path) as client:
        response = client.get("/api/v1/jobs")
    assert response.status_code == 200
    assert response.json()["items"] == []
    assert response.http_version == "HTTP/1.1"


def test_plain_http_on_the_tls_port_gets_no_api_answer(tls_server: TlsServer) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/readyz", timeout=5)


def test_a_client_trusting_another_ca_is_refused_in_the_handshake(
    tls_server: TlsServer, pki: tuple[Authority, Authority, Path, Path]
) -> None:
    stranger = pki[1]
    with pytest.raises(httpx.ConnectError) as caught, _client(tls_server, stranger.cert_path) as client:
        client.get("/api/v1/jobs")
    assert isinstance(caught.value.__context__ or caught.value.__cause__, ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    )


def test_an_agent_with_the_ca_runs_a_task_over_wss(
    tls_server: TlsServer, pki: tuple[Authority, Authority, Path, Path], tmp_path: Path
) -> None:
    trusted = pki[0]
    agent, log_path = _start_agent(
        tls_server, "tls-agent", trusted.cert_path, tmp_path, ca_of_server=trusted.cert_path
    )
    try:
        wait_for(
            lambda: "registered with " in log_path.read_text(errors="replace") or None, what="registration"
        )
        with _client(tls_server, trusted.cert_path) as client:
            job = client.post(
                "/api/v1/jobs",
                json={
                    "name": "over-tls",
                    "config": {
                        "command": "bash",
                        "script": "echo secure hello\n",
                        "target": {"labels": {"suite": "tls-agent"}},
                    },
                },
            )
            assert job.status_code == 201, job.text
            triggered = client.post(f"/api/v1/jobs/{job.json()['id']}/trigger", json={})
            assert triggered.status_code in (200, 201), triggered.text
            task_id = triggered.json()["task_ids"][0]

            def finished() -> dict[str, object] | None:
                task = client.get(f"/api/v1/tasks/{task_id}").json()
                return task if task["status"] in ("succeeded", "failed", "cancelled") else None

            task = wait_for(finished, timeout=WAIT_SECS, what="the task over TLS")
            assert task["status"] == "succeeded"
            instances = client.get(f"/api/v1/tasks/{task_id}/instances").json()
        assert "secure hello" in instances["items"][-1]["output"]
    finally:
        _stop(agent)


def test_an_agent_trusting_another_ca_never_registers_and_says_why(
    tls_server: TlsServer, pki: tuple[Authority, Authority, Path, Path], tmp_path: Path
) -> None:
    trusted, stranger = pki[0], pki[1]
    agent, log_path = _start_agent(
        tls_server, "tls-stranger", stranger.cert_path, tmp_path, ca_of_server=trusted.cert_path
    )
    try:
        wait_for(
            lambda: "TLS certificate not trusted" in log_path.read_text(errors="replace") or None,
            what="the agent's TLS refusal",
        )
        assert "registered with " not in log_path.read_text(errors="replace")
        assert agent.poll() is None  # it keeps retrying with backoff, as with any unreachable server
    finally:
        _stop(agent)
