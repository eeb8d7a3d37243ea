"""The agent's exceptions: one vocabulary for configuration, connection and registration problems.

Foreign exceptions (``OSError``, ``ssl.SSLError``, ``socket.gaierror``, wsproto's protocol errors,
``TimeoutError``) are translated into these at exactly one boundary, ``connection.websocket``; the
session, the application and the CLI only ever see the classes below. Each connection error says
*which* URL failed and *why*, in words an operator can act on (``hetuflow-agent check`` prints
``str(exc)`` as is).
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "ConfigError",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionLost",
    "HandshakeRejected",
    "MessageTooLarge",
    "RegistrationRejected",
    "WebSocketError",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """A configuration value is missing, unknown or invalid; ``key`` names it (``servers``, ``capacity``…),
    or is None when the config file as a whole cannot be read."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class WebSocketError(AgentError):
    """Base of the errors of one connection to one server URL."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url
        self.message = message


class ConnectFailed(WebSocketError):
    """The connection could not be opened before the upgrade: DNS, refused, TLS, timeout, unreachable.

    ``kind`` is one of ``dns``, ``refused``, ``tls``, ``timeout``, ``network`` so callers can tell
    them apart without parsing the message.
    """

    def __init__(self, url: str, kind: str, message: str) -> None:
        super().__init__(url, message)
        self.kind = kind


class HandshakeRejected(WebSocketError):
    """The server answered the upgrade request with an HTTP status instead of ``101``.

    401 means no token or a bad/expired/revoked one; 403 means the token's subject is not this agent's
    id (or its scope is not ``agent``); 503 means the server is busy registering others, and
    ``retry_after_secs`` (its ``Retry-After``) says when to come back. ``body`` holds the start of the
    server's explanation, if any.
    """

    def __init__(self, url: str, status: int, body: str = "", *, retry_after_secs: float = 0.0) -> None:
        hint = _STATUS_HINTS.get(status, "the server refused the WebSocket upgrade")
        detail = f": {body}" if body else ""
        super().__init__(url, f"{url} answered HTTP {status} ({hint}){detail}")
        self.status = status
        self.body = body
        self.retry_after_secs = retry_after_secs


_STATUS_HINTS = {
    401: "token missing, invalid, expired or revoked",
    403: "token not valid for this agent id",
    404: "no agent endpoint at this URL",
    503: "the server is busy, try again later",
}


class ConnectionLost(WebSocketError):
    """An established connection broke without a close handshake (reset, EOF, protocol violation)."""


class ConnectionClosed(WebSocketError):
    """The server closed an established connection with a close frame; ``code`` and ``reason`` say why."""

    def __init__(self, url: str, code: int, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(url, f"{url} closed the connection with code {code}{detail}")
        self.code = code
        self.reason = reason


class MessageTooLarge(WebSocketError):
    """The server sent a message larger than the agent accepts; it was discarded, the connection stays."""

    def __init__(self, url: str, size: int, limit: int) -> None:
        super().__init__(url, f"{url} sent a message of {size} bytes, more than the {limit} accepted")
        self.size = size
        self.limit = limit


class RegistrationRejected(AgentError):
    """The server refused this agent's registration (protocol version, disabled agent, …)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} refused registration: {reason}")
        self.url = url
        self.reason = reason
