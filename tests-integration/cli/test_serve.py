"""``hetuflow-server serve`` as a real process: probes, registration, graceful stop, port clash, readiness."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from pgfixture import fresh_database
from serverfixtures import AppClient, ServerProcess, run_cli, start_server

from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.cli.serve import GC_THRESHOLDS
from hetuflow_server.config import Setting, load_config


def test_healthz_and_readyz(server_process: ServerProcess) -> None:
    health = httpx.get(f"{server_process.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = httpx.get(f"{server_process.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_openapi_document_is_public(server_process: ServerProcess) -> None:
    response = httpx.get(f"{server_process.url}/api/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


def test_serving_tunes_the_garbage_collector(server_process: ServerProcess) -> None:
    # What start-up created is frozen out of every later collection, and the thresholds are the server's.
    tuned = re.search(
        r"garbage collector tuned for serving: (\d+) start-up objects frozen, thresholds (.*)",
        server_process.log(),
    )
    assert tuned is not None, server_process.log()
    assert int(tuned.group(1)) > 0
    assert tuned.group(2) == str(GC_THRESHOLDS)


def test_server_registers_itself(server_client: httpx.Client, server_process: ServerProcess) -> None:
    servers = server_client.get("/api/v1/servers").json()
    items = servers["items"] if isinstance(servers, dict) else servers
    ours = [server for server in items if server["address"] == server_process.url]
    assert len(ours) == 1
    assert ours[0]["status"] == "active"


def test_sigterm_stops_cleanly_and_marks_server_inactive(
    server_process: ServerProcess, server_client: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = start_server(
        tmp_path_factory.mktemp("second") / "data",
        database_url=server_process.database_url,
        env={"HETUFLOW_SERVER__NAME": "second"},
    )
    assert other.terminate() == 0, other.log()
    log = other.log()
    assert "received SIGTERM, shutting down" in log
    assert "Traceback" not in log
    servers = server_client.get("/api/v1/servers").json()
    items = servers["items"] if isinstance(servers, dict) else servers
    assert [s["status"] for s in items if s["address"] == other.url] == ["inactive"]


def test_port_in_use_exits_1_with_one_line(
    server_process: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("clash")
    result = run_cli(
        "serve",
        "--data-dir",
        str(data_dir),
        "--database-url",
        str(server_process.database_url),
        "--port",
        str(server_process.port),
        "--log-level",
        "error",
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"hetuflow-server: cannot listen on 127.0.0.1:{server_process.port}: Address already in use"
    )


async def test_readyz_is_503_problem_while_shutting_down(app_client: AppClient) -> None:
    assert (await app_client.client.get("/readyz")).status_code == 200
    app_client.application.draining.set()
    response = await app_client.client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/not-ready")
    assert problem["detail"] == "server is shutting down"
    # Liveness is unaffected: the process still serves.
    assert (await app_client.client.get("/healthz")).status_code == 200


async def test_readyz_is_503_when_migrations_are_pending(pg_admin_url: str, tmp_path: Path) -> None:
    # A database that lost track of one applied migration looks exactly like one behind the wheel.
    with fresh_database(pg_admin_url, "readyz_pending") as url:
        config = load_config(
            environ={},
            overrides=[
                Setting("server.data_dir", str(tmp_path), "test"),
                Setting("database.url", url, "test"),
            ],
        )
        application = ServerApplication(config)
        await application.start()
        try:
            transport = httpx.ASGITransport(app=build_app(application))
            async with httpx.AsyncClient(transport=transport, base_url="http://hetuflow.test") as client:
                assert (await client.get("/readyz")).status_code == 200
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DELETE FROM schema_migrations WHERE name = '0001_initial'")
                response = await client.get("/readyz")
        finally:
            await application.stop()
    assert response.status_code == 503
    assert response.json()["detail"] == "database migrations pending: 0001_initial"


def test_keep_alive_survives_answers_given_before_the_body_is_read(server_process: ServerProcess) -> None:
    # 401 (guard), 405 (routing) answer without reading the body; the connection must stay usable.
    unauthorized = {"Authorization": "Bearer not-a-token"}
    body = {"name": "x", "config": {"command": "bash", "script": "true"}}
    with httpx.Client(base_url=server_process.url, timeout=10) as client:
        for i in range(200):
            if i % 3 == 0:
                assert client.post("/api/v1/jobs", json=body, headers=unauthorized).status_code == 401
            elif i % 3 == 1:
                assert client.post("/healthz", json=body).status_code == 405
            else:
                assert client.get("/healthz").status_code == 200


def test_an_idle_keep_alive_connection_outlives_a_client_pools_expiry(server_process: ServerProcess) -> None:
    # A client pool reuses a connection idle for up to its expiry (httpx: 5 s). The server must still hold it
    # then; closing it first races the client's next request, which gets no response at all.
    idle_secs = httpx.Limits().keepalive_expiry
    assert idle_secs is not None
    connection = http.client.HTTPConnection("127.0.0.1", server_process.port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        assert first.getheader("connection") != "close"
        sock = connection.sock
        time.sleep(idle_secs + 1)
        connection.request("GET", "/healthz")  # on the same socket: http.client reopens only a closed one
        assert connection.sock is sock
        second = connection.getresponse()
        second.read()
        assert second.status == 200
    finally:
        connection.close()


def test_large_unread_body_closes_the_connection_cleanly(server_process: ServerProcess) -> None:
    with httpx.Client(base_url=server_process.url, timeout=10) as client:
        response = client.post(
            "/api/v1/jobs", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401
        assert response.headers["connection"] == "close"
        assert client.get("/healthz").status_code == 200  # on a new connection
