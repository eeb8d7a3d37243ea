"""Server addresses and TLS settings: from what an operator types to what a socket needs.

Operators may write ``ws://host:8080``, ``wss://host`` or even ``http(s)://host``; every form is
normalised to a WebSocket URL whose path defaults to the agent endpoint ``/api/v1/agents/ws``, so the
common case needs no path at all. Parsing happens once, when the configuration is loaded, and reports
a bad URL with the reason.
"""

from __future__ import annotations

import ssl
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["AGENT_ENDPOINT_PATH", "ServerUrl", "make_ssl_context", "parse_server_url"]

AGENT_ENDPOINT_PATH: Final = "/api/v1/agents/ws"
"""Path of the server's agent WebSocket endpoint, used when a URL has none."""

_SCHEMES: Final = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}


class ServerUrl:
    """A parsed server URL: where to connect and what to put in the upgrade request."""

    __slots__ = ("host", "port", "secure", "target", "url")

    def __init__(self, url: str, host: str, port: int, secure: bool, target: str) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.secure = secure
        self.target = target

    @property
    def host_header(self) -> str:
        """Value of the ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS["wss" if self.secure else "ws"]
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ServerUrl({self.url!r})"


def parse_server_url(text: str) -> ServerUrl:
    """Parse and normalise one server URL; raises ``ValueError`` saying what is wrong with it."""
    parts = urlsplit(text.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"{text!r} is not a ws://, wss://, http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{text!r} has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:  # urlsplit raises on a port out of range or not a number
        raise ValueError(f"{text!r} has an invalid port") from None
    if parts.username or parts.password:
        raise ValueError(f"{text!r} carries credentials; pass the token with --token instead")
    path = parts.path if parts.path not in ("", "/") else AGENT_ENDPOINT_PATH
    target = f"{path}?{parts.query}" if parts.query else path
    netloc = parts.netloc
    url = urlunsplit((scheme, netloc, path, parts.query, ""))
    return ServerUrl(url, parts.hostname, port, scheme == "wss", target)


def make_ssl_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """Client TLS context for ``wss://``: system CAs, or ``ca_file``; ``insecure`` skips verification.

    ``insecure`` exists for test rigs with self-signed certificates; it disables both the chain and
    the host name check, so a token sent over it is only as safe as the network.
    """
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
