"""The web UI: the single-page app's static files and the client-side routes that load it.

The app is hand-written HTML, CSS and native ES modules under ``static/`` (shipped in the wheel; no build
step, no CDN). `route()` is the last route of the application and answers only the UI's own paths:
``/static/<file>`` and the app's client routes (``/``, ``/login``, ``/<section>/...``, answered with
``index.html``), so it never shadows an API or probe path. Files are read into memory once; a request path
only selects a key of that table, so no request can reach another file. Every answer carries a strict
same-origin Content-Security-Policy, ``nosniff`` and frame refusal; files are served with an ETag and
``no-cache`` so that browsers never mix modules of two versions after an upgrade.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import re
from collections.abc import Iterator, Mapping
from importlib.resources.abc import Traversable
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

__all__ = [
    "CLIENT_SECTIONS",
    "CONTENT_SECURITY_POLICY",
    "STATIC_PREFIX",
    "Asset",
    "WebRoute",
    "load_assets",
    "route",
]

STATIC_PREFIX: Final = "/static/"
INDEX: Final = "index.html"
CLIENT_SECTIONS: Final = (
    "login",
    "jobs",
    "schedules",
    "tasks",
    "instances",
    "agents",
    "flows",
    "flow-runs",
    "events",
    "notifications",
    "tokens",
    "audit",
)
"""First path segments of the app's own routes (``static/app.js`` routes the same names)."""

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_CACHE_CONTROL: Final = "no-cache"
_READ_METHODS: Final = ("GET", "HEAD")

# Explicit, not `mimetypes`: its answers depend on the host's /etc/mime.types, and Chromium refuses to run a
# module script served under a non-JavaScript type.
_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

# A client route: a section and up to three segments (``/jobs/<id>/edit``, ``/flows/<id>/runs/<run>``). A
# segment starts with a letter or digit, so ``.`` and ``..`` are never client routes.
_CLIENT_PATH: Final = re.compile(
    r"^/(?:(?:" + "|".join(CLIENT_SECTIONS) + r")(?:/[A-Za-z0-9][A-Za-z0-9_.:-]*){0,3}/?)?$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Asset:
    """One shipped file, held in memory."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        """The asset for file ``name`` with content ``body``."""
        suffix = name[name.rfind(".") :] if "." in name else ""
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(body, _CONTENT_TYPES.get(suffix.lower(), _DEFAULT_CONTENT_TYPE), f'"{digest}"')


def load_assets(root: Traversable | None = None) -> dict[str, Asset]:
    """Every file under ``root`` (default: this package's ``static/``) by its ``/``-separated relative name.

    Hidden files (a leading ``.``) are left out.
    """
    folder = root if root is not None else importlib.resources.files(__name__) / "static"
    return {name: Asset.of(name, entry.read_bytes()) for name, entry in _walk(folder, "")}


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


class WebRoute(BaseRoute):
    """The UI's route: shipped files under `STATIC_PREFIX` and ``index.html`` for client routes."""

    path_format: Final = "/{path}"
    """The template the HTTP metrics label every UI request with: one label, however many paths."""

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        if INDEX not in assets:
            raise ValueError(f"the web UI assets have no {INDEX}")
        self.assets = dict(assets)

    def asset_for(self, path: str) -> Asset | None:
        """The asset that answers ``path``, or None when the path is not the UI's."""
        if path.startswith(STATIC_PREFIX):
            return self.assets.get(path.removeprefix(STATIC_PREFIX))
        if _CLIENT_PATH.match(path):
            return self.assets[INDEX]
        return None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or self.asset_for(_route_path(scope)) is None:
            return Match.NONE, {}
        # PARTIAL for other methods: the router answers 405 only if no other route takes the request.
        return (Match.FULL if scope["method"] in _READ_METHODS else Match.PARTIAL), {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in _READ_METHODS:
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(_READ_METHODS)})
        asset = self.asset_for(_route_path(scope))
        if asset is None:  # only reachable when called without matches(), as a mounted app would be
            raise HTTPException(status_code=404)
        response = _response(asset, Headers(scope=scope), head=scope["method"] == "HEAD")
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(files={len(self.assets)})"


def route() -> WebRoute:
    """The UI route over the shipped files; add it after every other route of the application."""
    return WebRoute(load_assets())


def _route_path(scope: Scope) -> str:
    # The path below the ASGI root_path, as Starlette's own routes match it.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _response(asset: Asset, request_headers: Headers, *, head: bool) -> Response:
    headers = {**_SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": _CACHE_CONTROL}
    if _etag_matches(request_headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    if head:
        # The headers of the GET answer, without its body (a plain Response would send the body anyway).
        headers["Content-Length"] = str(len(asset.body))
        return Response(b"", headers=headers, media_type=asset.content_type)
    return Response(asset.body, headers=headers, media_type=asset.content_type)


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    # RFC 9110 §13.1.2: weak comparison, and "*" matches any current representation.
    if not if_none_match:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
