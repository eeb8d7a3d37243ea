"""The agent's configuration: one typed msgspec Struct, read once at startup and passed down.

The layers are those of `hetuflow_core.settings` (defaults < TOML file < ``HETUFLOW_AGENT__<KEY>`` < flags);
the agent's settings form the one section ``agent``, so the file holds them as flat keys. In the environment
lists are comma-separated and mappings are ``k=v`` pairs. ``token`` and ``token_file`` are two spellings of
one credential: a layer that sets either replaces both, and ``AgentConfig.token`` always holds the token.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from hetuflow_agent.connection.url import parse_server_url
from hetuflow_agent.errors import ConfigError
from hetuflow_core import settings
from hetuflow_core.enums import CommandKind
from hetuflow_core.logfmt import LogFormat, LogLevel
from hetuflow_core.protocol import MAX_FRAME_BYTES
from hetuflow_core.settings import Setting, SettingsError
from hetuflow_core.types import AgentId, Labels

__all__ = [
    "SECTION",
    "SETTINGS_HELP",
    "AgentConfig",
    "Setting",
    "default_agent_id",
    "env_var",
    "load_config",
    "parse_pairs",
]

SECTION: Final = "agent"
"""The section of the agent's settings: ``HETUFLOW_AGENT__<KEY>`` in the environment."""

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
    prefetch: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
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
    task_env_exclude: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]], msgspec.Meta(max_length=256)
    ] = []
    executables: dict[CommandKind, Annotated[str, msgspec.Meta(min_length=1)]] = {}
    tls_ca_file: str | None = None
    tls_insecure: bool = False
    outbox_max_bytes: Annotated[int, msgspec.Meta(ge=4 * 1_048_576)] = 64 * 1_048_576
    max_message_bytes: Annotated[int, msgspec.Meta(ge=65_536, le=MAX_FRAME_BYTES)] = MAX_FRAME_BYTES
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"

    @property
    def window(self) -> int:
        """Attempts held ahead of the running ones: ``prefetch``, or as many as ``capacity`` when unset."""
        return self.capacity if self.prefetch is None else self.prefetch

    @property
    def display_name(self) -> str:
        """``name``, or the id when no name was given."""
        return self.name or self.id


SETTINGS_HELP: Final[dict[str, str]] = {
    "id": "agent id, stable across restarts; must equal the token's subject (default: host name)",
    "name": "display name (default: the id)",
    "servers": "server URLs ws://host:port or wss://…, tried in turn (comma-separated in the environment)",
    "token": "agent token (JWE) sent as 'Authorization: Bearer'; as a flag it shows in ps: prefer token_file",
    "token_file": "file holding the agent token (read at startup)",
    "labels": "routing labels k=v,k=v",
    "capacity": "how many tasks run at once (default: CPU count)",
    "prefetch": "tasks held ahead beyond capacity, started as slots free (default: capacity; 0: none)",
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
    "task_env_exclude": "variables (names or patterns like AWS_*) of the agent's environment kept from tasks;"
    " HETUFLOW_AGENT__* never reach a task",
    "executables": "program per command kind, e.g. python=/usr/bin/python3,node=/opt/node/bin/node",
    "tls_ca_file": "CA bundle to verify wss:// servers",
    "tls_insecure": "do not verify the server certificate (test rigs only)",
    "outbox_max_bytes": "memory for unacked reports; oldest log chunks are dropped beyond it",
    "max_message_bytes": "largest message accepted from a server",
    "log_level": "debug, info, warning or error",
    "log_format": "text or json (one JSON object per line)",
}

_FIELDS: Final = {f.name: f for f in msgspec.structs.fields(AgentConfig)}
_CREDENTIAL_KEYS: Final = ("token", "token_file")
_PATH_KEYS: Final = frozenset({"workdir", "token_file", "tls_ca_file"})


def env_var(key: str) -> str:
    """The environment variable of a setting, e.g. ``capacity`` → ``HETUFLOW_AGENT__CAPACITY``."""
    return settings.env_var(SECTION, key)


def load_config(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[Setting] = (),
    cwd: Path | None = None,
) -> AgentConfig:
    """Build the configuration from defaults, ``config_file``, ``environ`` and ``overrides`` (flags).

    ``environ`` defaults to ``os.environ``. An override's value is text (parsed like the environment) or
    already typed; None leaves the setting to the lower layers. Relative paths are resolved against the
    config file's directory for values from the file and against ``cwd`` (default: the working directory)
    for everything else. Raises `ConfigError` naming the key.
    """
    try:
        return _load(config_file, os.environ if environ is None else environ, overrides, cwd or Path.cwd())
    except SettingsError as exc:
        raise ConfigError(exc.key, exc.message) from None


def _load(
    config_file: Path | None, environ: Mapping[str, str], overrides: Sequence[Setting], cwd: Path
) -> AgentConfig:
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def assign(setting: Setting, value: Any) -> None:
        key = setting.key
        if key in _CREDENTIAL_KEYS:  # one credential per layer: the higher layer replaces both spellings
            for other in _CREDENTIAL_KEYS:
                raw.pop(other, None)
        if key in _PATH_KEYS and isinstance(value, str) and value:
            value = str(settings.resolve_path(value, setting.base(cwd.absolute())))
        elif key == "log_level" and isinstance(value, str):
            value = value.lower()  # the agent once spelt levels in capitals; both spellings keep working
        raw[key] = value
        sources[key] = setting.source

    if config_file is not None:
        for key, value in settings.read_toml(config_file).items():
            if key not in _FIELDS:
                raise SettingsError(key, f"unknown setting in {config_file}")
            assign(Setting(key, value, str(config_file), config_file), value)
    for setting in settings.env_settings(environ, SECTION):
        if setting.key not in _FIELDS:
            raise SettingsError(setting.source, "unknown setting")
        assign(setting, _from_text(setting.key, str(setting.value), setting.source))
    for setting in overrides:
        if setting.key not in _FIELDS:
            raise SettingsError(setting.key, f"unknown setting (from {setting.source})")
        value = setting.value
        if value is not None:
            assign(
                setting, _from_text(setting.key, value, setting.source) if isinstance(value, str) else value
            )

    try:
        config = msgspec.convert(raw, AgentConfig, strict=False)
    except msgspec.ValidationError as exc:
        key = _error_key(str(exc))
        where = f" (from {sources[key]})" if key in sources else ""
        raise SettingsError(key, f"{_error_text(str(exc))}{where}") from None
    return _finish(config, sources)


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
            raise SettingsError(key, f"{exc} (from {source})") from None
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
        raise SettingsError(
            "servers",
            f"at least one server URL is required (--server, {env_var('servers')} or the config file)",
        )
    servers = []
    for text in config.servers:
        try:
            servers.append(parse_server_url(text).url)
        except ValueError as exc:
            raise SettingsError("servers", f"{exc} (from {sources.get('servers', 'defaults')})") from None
    token = config.token
    if config.token_file is not None:
        try:
            token = Path(config.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SettingsError("token_file", f"cannot read {config.token_file}: {reason}") from None
    if not token:
        raise SettingsError(
            "token", f"an agent token is required (--token, --token-file or {env_var('token')})"
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise SettingsError("token", "the token must be printable ASCII without spaces")
    if config.tls_ca_file is not None and not Path(config.tls_ca_file).is_file():
        raise SettingsError("tls_ca_file", f"{config.tls_ca_file} is not a file")
    if config.backoff_max_secs < config.backoff_initial_secs:
        raise SettingsError("backoff_max_secs", "must be at least backoff_initial_secs")
    return msgspec.structs.replace(config, servers=servers, token=token)
