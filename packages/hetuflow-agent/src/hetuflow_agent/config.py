"""The agent's configuration: one typed msgspec Struct, read once at startup and passed down.

Layers, lowest first: the defaults below < a TOML file (``--config``, flat keys named as the fields) <
environment variables ``HETUFLOW_AGENT__<KEY>`` < command-line flags. In the environment and on the
command line every value is text: lists are comma-separated (``HETUFLOW_AGENT__SERVERS="ws://a,ws://b"``)
and mappings are ``k=v`` pairs (``HETUFLOW_AGENT__LABELS="gpu=yes,zone=a"``). An unknown key or a bad
value fails with a ``ConfigError`` naming the key and where it came from; nothing is read from the
environment after ``load_config`` returns.

``token`` and ``token_file`` are two spellings of one credential: a layer that sets either replaces
what lower layers set for both, and ``token_file`` is read here, so ``AgentConfig.token`` always holds
the token itself.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from hetuflow_agent.connection.url import parse_server_url
from hetuflow_agent.errors import ConfigError
from hetuflow_core.enums import CommandKind
from hetuflow_core.protocol import MAX_FRAME_BYTES
from hetuflow_core.types import AgentId, Labels

__all__ = [
    "ENV_PREFIX",
    "SETTINGS_HELP",
    "AgentConfig",
    "default_agent_id",
    "env_var",
    "load_config",
    "parse_pairs",
]

ENV_PREFIX: Final = "HETUFLOW_AGENT__"

PositiveSecs = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


def default_agent_id() -> str:
    """A stable id from the host name (same host, same id across restarts), valid as an ``AgentId``."""
    name = re.sub(r"[^A-Za-z0-9_.\-:]", "-", socket.gethostname()).lstrip("-_.:")[:128]
    return name or "agent"


def _default_capacity() -> int:
    return os.cpu_count() or 1


def _default_workdir() -> str:
    return str(Path(tempfile.gettempdir()) / "hetuflow-agent")


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Every setting of one agent process; see ``SETTINGS_HELP`` for what each one means."""

    id: AgentId = msgspec.field(default_factory=default_agent_id)
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    servers: list[str] = []
    token: str | None = None
    token_file: str | None = None
    labels: Labels = {}
    capacity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = msgspec.field(default_factory=_default_capacity)
    workdir: Annotated[str, msgspec.Meta(min_length=1)] = msgspec.field(default_factory=_default_workdir)
    connect_timeout_secs: PositiveSecs = 10.0
    heartbeat_interval_secs: PositiveSecs | None = None
    backoff_initial_secs: PositiveSecs = 0.5
    backoff_max_secs: PositiveSecs = 30.0
    backoff_reset_secs: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 10.0
    drain_timeout_secs: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 60.0
    flush_timeout_secs: Annotated[float, msgspec.Meta(ge=0, le=3_600)] = 5.0
    kill_grace_secs: Annotated[float, msgspec.Meta(ge=0, le=3_600)] = 5.0
    max_output_bytes: Annotated[int, msgspec.Meta(ge=0, le=1_073_741_824)] = 16 * 1_048_576
    executables: dict[CommandKind, Annotated[str, msgspec.Meta(min_length=1)]] = {}
    tls_ca_file: str | None = None
    tls_insecure: bool = False
    outbox_max_bytes: Annotated[int, msgspec.Meta(ge=4 * 1_048_576)] = 64 * 1_048_576
    max_message_bytes: Annotated[int, msgspec.Meta(ge=65_536, le=MAX_FRAME_BYTES)] = MAX_FRAME_BYTES
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @property
    def display_name(self) -> str:
        """``name``, or the id when no name was given."""
        return self.name or self.id


SETTINGS_HELP: Final[dict[str, str]] = {
    "id": "agent id, stable across restarts; must equal the token's subject (default: host name)",
    "name": "display name (default: the id)",
    "servers": "server URLs ws://host:port or wss://…, tried in turn (comma-separated in the environment)",
    "token": "agent token (JWE) sent as 'Authorization: Bearer'",
    "token_file": "file holding the agent token (read at startup)",
    "labels": "routing labels k=v,k=v",
    "capacity": "how many tasks run at once (default: CPU count)",
    "workdir": "directory under which each task gets its working directory",
    "connect_timeout_secs": "seconds to connect, upgrade and register",
    "heartbeat_interval_secs": "heartbeat at least this often (the server's interval applies if shorter)",
    "backoff_initial_secs": "first reconnect delay ceiling (full jitter, doubling)",
    "backoff_max_secs": "largest reconnect delay ceiling",
    "backoff_reset_secs": "a connection up this long resets the reconnect backoff",
    "drain_timeout_secs": "on SIGTERM, how long running tasks may finish before they are killed",
    "flush_timeout_secs": "on shutdown, how long to wait for the server to ack the last reports",
    "kill_grace_secs": "seconds between SIGTERM and SIGKILL when a task is stopped",
    "max_output_bytes": "default cap of the output kept per task",
    "executables": "program per command kind, e.g. python=/usr/bin/python3,node=/opt/node/bin/node",
    "tls_ca_file": "CA bundle to verify wss:// servers",
    "tls_insecure": "do not verify the server certificate (test rigs only)",
    "outbox_max_bytes": "memory for unacked reports; oldest log chunks are dropped beyond it",
    "max_message_bytes": "largest message accepted from a server",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "text or json (one JSON object per line)",
}

_FIELDS: Final = {f.name: f for f in msgspec.structs.fields(AgentConfig)}
_CREDENTIAL_KEYS: Final = ("token", "token_file")


def env_var(key: str) -> str:
    """The environment variable of a setting, e.g. ``capacity`` → ``HETUFLOW_AGENT__CAPACITY``."""
    return ENV_PREFIX + key.upper()


def load_config(
    *,
    file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, tuple[str, Any]] | None = None,
) -> AgentConfig:
    """Merge defaults < TOML ``file`` < ``env`` < ``flags`` into a checked ``AgentConfig``.

    ``env`` defaults to ``os.environ``. ``flags`` maps a key to ``(flag name, value)``; a value is text
    (parsed like the environment) or already typed. Raises ``ConfigError`` naming the offending key.
    """
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def assign(key: str, value: Any, source: str) -> None:
        if key in _CREDENTIAL_KEYS:  # one credential per layer: the higher layer replaces both spellings
            for other in _CREDENTIAL_KEYS:
                raw.pop(other, None)
        raw[key] = value
        sources[key] = source

    if file is not None:
        for key, value in _read_toml(Path(file)).items():
            if key not in _FIELDS:
                raise ConfigError(key, f"unknown setting in {file}")
            assign(key, value, f"{file}")
    for name, text in sorted((os.environ if env is None else env).items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            raise ConfigError(name, "unknown setting")
        assign(key, _from_text(key, text, name), name)
    for key, (flag, value) in (flags or {}).items():
        if value is not None:
            assign(key, _from_text(key, value, flag) if isinstance(value, str) else value, flag)

    try:
        config = msgspec.convert(raw, AgentConfig, strict=False)
    except msgspec.ValidationError as exc:
        key = _error_key(str(exc))
        where = f" (from {sources[key]})" if key in sources else ""
        raise ConfigError(key, f"{_error_text(str(exc))}{where}") from None
    return _finish(config, sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None


def _from_text(key: str, text: str, source: str) -> Any:
    """Turn the text of an env var or flag into the shape of field ``key`` (list, mapping, scalar)."""
    kind = msgspec.inspect.type_info(_FIELDS[key].type)
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.ListType):
        return [item.strip() for item in text.split(",") if item.strip()]
    if isinstance(kind, msgspec.inspect.DictType):
        try:
            return parse_pairs(text)
        except ValueError as exc:
            raise ConfigError(key, f"{exc} (from {source})") from None
    if isinstance(kind, msgspec.inspect.UnionType) and kind.includes_none and not text.strip():
        return None
    return text.strip()


def parse_pairs(text: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (blanks around items ignored); ``ValueError`` for an item without ``=``."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected k=v pairs separated by commas, got {item.strip()!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def _error_key(message: str) -> str:
    """The top-level key of a msgspec error path such as ``$.labels[...]``."""
    found = re.search(r"`\$\.([A-Za-z_]+)", message) or re.search(r"unknown field `([^`]+)`", message)
    return found.group(1) if found else "config"


def _error_text(message: str) -> str:
    return re.sub(r"\s*-\s*at `\$[^`]*`$", "", message)


def _finish(config: AgentConfig, sources: Mapping[str, str]) -> AgentConfig:
    """Cross-field checks and derived values: normalised URLs, the token read from its file."""
    if not config.servers:
        raise ConfigError(
            "servers",
            f"at least one server URL is required (--server, {env_var('servers')} or the config file)",
        )
    servers = []
    for text in config.servers:
        try:
            servers.append(parse_server_url(text).url)
        except ValueError as exc:
            raise ConfigError("servers", f"{exc} (from {sources.get('servers', 'defaults')})") from None
    token = config.token
    if config.token_file is not None:
        try:
            token = Path(config.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError("token_file", f"cannot read {config.token_file}: {reason}") from None
    if not token:
        raise ConfigError(
            "token", f"an agent token is required (--token, --token-file or {env_var('token')})"
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError("token", "the token must be printable ASCII without spaces")
    if config.tls_ca_file is not None and not Path(config.tls_ca_file).is_file():
        raise ConfigError("tls_ca_file", f"{config.tls_ca_file} is not a file")
    if config.backoff_max_secs < config.backoff_initial_secs:
        raise ConfigError("backoff_max_secs", "must be at least backoff_initial_secs")
    return msgspec.structs.replace(config, servers=servers, token=token)
