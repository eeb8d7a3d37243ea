"""Unit tests of the web UI route: content types, security and cache headers, SPA fallback, refused paths.

The route is exercised inside the real application (``build_app`` of a container that is never started: no
lifespan runs over ASGI here, so nothing touches a database), which also proves it shadows no API, probe
or method-not-allowed answer of the routes before it.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Message, Scope

from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.config import Setting, load_config
from hetuflow_server.endpoint import web

STATIC = Path(web.__file__).parent / "static"
ASSETS = web.load_assets()


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    config = load_config(environ={}, overrides=[Setting("server.data_dir", str(tmp_path), "test")])
    return build_app(ServerApplication(config))


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui.test") as http:
        yield http


async def raw_get(app: Starlette, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as given (an HTTP client would remove dot segments before sending)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": urllib.parse.unquote(path),
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"ui.test")],
        "server": ("ui.test", 80),
        "client": ("127.0.0.1", 12345),
    }
    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    headers = {key.decode().lower(): value.decode() for key, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], headers, body


def assert_security_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    for allowance in ("unsafe", "http", "*"):
        assert allowance not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/views/jobs.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/index.html", "text/html; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files_with_content_type_and_headers(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC / path.removeprefix("/static/")).read_bytes()
    assert response.headers["cache-control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{20}"', response.headers["etag"])
    assert_security_headers(response)


@pytest.mark.parametrize(
    "path",
    ["/", "/login", "/jobs", "/jobs/", "/jobs/new", "/jobs/0190aaaa-0000-7000-8000-000000000000/edit",
     "/tasks/abc", "/instances/x", "/agents", "/schedules/new", "/flows/f/runs/r"],
)  # fmt: skip
async def test_client_routes_answer_the_app(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (STATIC / "index.html").read_bytes()
    assert_security_headers(response)


async def test_conditional_get_and_head(client: httpx.AsyncClient) -> None:
    first = await client.get("/static/app.js")
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get("/static/app.js", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag
    changed = await client.get("/static/app.js", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
    head = await client.head("/static/app.js")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(first.content))
    assert head.headers["content-type"] == first.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/..%2f__init__.py",
        "/static/views/../../__init__.py",
        "/static//etc/passwd",
        "/static/",
        "/static/missing.js",
        "/jobs/../static/app.js",
        "/jobs/a/b/c/d",
        "/nowhere",
        "/index.html",
        "/api",
        "/favicon.ico",
    ],
)
async def test_other_paths_are_not_found(app: Starlette, path: str) -> None:
    status, headers, body = await raw_get(app, path)
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert b"from __future__" not in body


async def test_other_methods_are_not_allowed_on_ui_paths(client: httpx.AsyncClient) -> None:
    for path in ("/jobs", "/static/app.js", "/"):
        response = await client.post(path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.headers["content-type"] == "application/problem+json"


async def test_ui_shadows_no_other_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    allow = (await client.post("/healthz")).headers["allow"]  # Starlette lists a set: any order
    assert set(allow.split(", ")) == {"GET", "HEAD"}
    assert (await client.post("/nowhere")).status_code == 404
    jobs = await client.get("/api/v1/jobs")
    assert jobs.status_code == 401
    assert (await client.get("/api/v1/nowhere")).status_code in (401, 404)
    assert (await client.get("/api/openapi.json")).headers["content-type"].startswith("application/json")
    assert not (await client.get("/metrics")).headers["content-type"].startswith("text/html")


async def test_ui_requests_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    for path in ("/jobs/a", "/jobs/b", "/static/app.js", "/static/style.css"):
        assert (await client.get(path)).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'hetuflow_http_requests_total{method="GET",route="/{path}",status="200"} 4.0' in metrics
    assert "/jobs/a" not in metrics


def test_every_shipped_file_has_a_known_type_and_no_inline_code() -> None:
    assert set(ASSETS) >= {"index.html", "app.js", "style.css", "favicon.svg"}
    for name, asset in ASSETS.items():
        assert asset.content_type != "application/octet-stream", name
    index = ASSETS["index.html"].body.decode()
    # The CSP refuses inline script and style: the page must not need any.
    assert not re.search(r"<script(?![^>]*\bsrc=)", index)
    assert "<style" not in index
    assert " style=" not in index
    assert not re.search(r"\son[a-z]+=", index)
    for reference in re.findall(r'(?:src|href)="(/static/[^"]+)"', index):
        assert reference.removeprefix("/static/") in ASSETS, reference


def test_module_imports_resolve_to_shipped_files() -> None:
    # No bundler checks them: every relative import of every module must name a shipped module.
    for name, asset in ASSETS.items():
        if not name.endswith(".js"):
            continue
        source = asset.body.decode()
        # Values reach the DOM as text only: nothing parses a string as HTML.
        assert not re.search(r"\.(?:inner|outer)HTML|insertAdjacentHTML|document\.write", source), name
        for target in re.findall(r'^import [^;]*? from "([^"]+)";', source, flags=re.MULTILINE | re.DOTALL):
            assert target.startswith("."), f"{name} imports {target}: only relative imports ship"
            resolved = (Path("/", name).parent / target).resolve().as_posix().lstrip("/")
            assert resolved in ASSETS, f"{name} imports {target}, not shipped"


def test_client_sections_match_the_app_routes() -> None:
    app = ASSETS["app.js"].body.decode()
    sections = {path.split("/")[1] for path in re.findall(r'route\("(/[^"]*)"', app)} - {""}
    assert sections == set(web.CLIENT_SECTIONS)


def test_route_needs_an_index(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("")
    (tmp_path / ".hidden").write_text("")
    assets = web.load_assets(tmp_path)
    assert list(assets) == ["app.js"]
    with pytest.raises(ValueError, match=r"index\.html"):
        web.WebRoute(assets)
