"""The server's configuration: one typed msgspec Struct, read once at startup and passed down.

The layers are those of `hetuflow_core.settings` (defaults < TOML file < ``HETUFLOW_<SECTION>__<KEY>`` <
flags), one table per section in the file. Every value is validated on its own, so a bad one is reported
with its key and where it came from, e.g. ``server.port: expected int in 1..65535, got "abc" (from
HETUFLOW_SERVER__PORT)``. This is the only module that reads the environment.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import msgspec

from hetuflow_core import settings
from hetuflow_core.logfmt import LogFormat, LogLevel
from hetuflow_core.settings import Setting, SettingsError
from hetuflow_server.errors import HetuflowError
from hetuflow_server.triggers.misfire import MISFIRE_SLACK_SECS

__all__ = [
    "AuthSection",
    "ConfigError",
    "DatabaseSection",
    "LogSection",
    "MetricsSection",
    "NotificationTarget",
    "NotificationsSection",
    "RetentionSection",
    "SchedulerSection",
    "ServerConfig",
    "ServerSection",
    "Setting",
    "env_var",
    "iter_keys",
    "load_config",
    "redact_url",
]

DEFAULT_PORT = 8900
KEY_FILE_NAME = "server.jwk"
EMBEDDED_PG_DIR_NAME = "pg"

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Secs = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
PoolSize = Annotated[int, msgspec.Meta(ge=1, le=1000)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
TokenTtlSecs = Annotated[int, msgspec.Meta(ge=60, le=10 * 365 * 86_400)]
CacheSecs = Annotated[float, msgspec.Meta(ge=0, le=60)]
LogDays = Annotated[int, msgspec.Meta(ge=0, le=36_500)]
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
SlackSecs = Annotated[float, msgspec.Meta(ge=0, le=3600)]
LogBytes = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
GraceSecs = Annotated[float, msgspec.Meta(ge=0, le=86_400)]


class ConfigError(HetuflowError):
    """A configuration value is unknown, malformed or inconsistent; ``key`` names it (None: the file)."""

    code = "config"
    title = "Configuration error"

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class ServerSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """This server process: identity, listening address, data directory, TLS, shutdown."""

    name: NonEmpty = msgspec.field(default_factory=socket.gethostname)
    host: NonEmpty = "127.0.0.1"
    port: Port = DEFAULT_PORT
    data_dir: Path = Path("data")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    graceful_timeout_secs: Secs = 10.0
    keep_alive_timeout_secs: Secs = 75.0
    """How long an idle HTTP keep-alive connection stays open. Longer than the idle expiry of common client
    pools (httpx 5 s, aiohttp 15 s, a load balancer's 60 s): a server that closes first races a client
    sending its next request on the connection, which then fails with no response."""


class DatabaseSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """PostgreSQL: a conninfo string or URL; none means the embedded server in ``<data_dir>/pg``."""

    url: str | None = None
    pool_min: PoolSize = 1
    pool_max: PoolSize = 10
    connect_timeout_secs: Secs = 10.0


class AuthSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The server's private key and token defaults."""

    key_file: Path | None = None
    token_ttl_secs: TokenTtlSecs = 365 * 86_400
    revocation_cache_secs: CacheSecs = 5.0


class SchedulerSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Timings of generation, dispatch and liveness, and the scheduler's own lateness allowance."""

    generation_horizon_secs: Secs = 600.0
    generation_interval_secs: Secs | None = None
    """Longest pause between two generation cycles; None: 5 s, or a quarter of the horizon when shorter."""
    misfire_slack_secs: SlackSecs = MISFIRE_SLACK_SECS
    """Lateness forgiven on top of every schedule's misfire grace and start deadline (dispatch latency)."""
    dispatch_lookahead_secs: Secs = 5.0
    heartbeat_interval_secs: Secs = 5.0
    agent_timeout_secs: Secs = 15.0
    safety_poll_secs: Secs = 30.0
    lease_secs: Secs = 15.0


class RetentionSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How much of an attempt's log is kept, what the leader deletes as it ages, and how often it looks."""

    log_days: LogDays = 14
    """Task log chunks older than this many days are deleted; 0 keeps them forever."""
    attempt_log_max_bytes: LogBytes = 64 * 1024 * 1024
    """Log content stored per attempt; the chunk crossing it is stored as a truncation marker."""
    late_log_grace_secs: GraceSecs = 300.0
    """How long after an attempt ended its agent may still deliver log chunks (a resend after a reconnect)."""
    audit_days: LogDays = 365
    """Audit entries older than this many days are deleted; 0 keeps them forever."""
    notification_days: LogDays = 14
    """Notifications delivered or failed this many days ago are deleted; 0 keeps them forever."""
    interval_secs: Secs = 60.0
    batch_size: BatchSize = 5000


TargetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]


class NotificationTarget(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where notifications named by jobs go: a webhook (``url``, signed with ``secret``) or ``email``."""

    kind: Literal["webhook", "email"]
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)] | None = None
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    """Key of the HMAC-SHA256 signature of webhook bodies (no signature without one)."""
    to: Annotated[list[NonEmpty], msgspec.Meta(max_length=100)] = []
    """Recipients of an email target."""
    timeout_secs: Secs = 10.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    retry_backoff_secs: Secs = 10.0
    """Wait before the second attempt; it doubles with each further attempt, up to an hour."""


class NotificationsSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Notification targets jobs may name, the SMTP server for email targets, and the notifier's limits."""

    targets: dict[TargetName, NotificationTarget] = {}
    """By name, e.g. ``[notifications.targets.ops]`` with ``kind``, ``url``, ``secret``, ``to`` ..."""
    smtp_host: NonEmpty | None = None
    smtp_port: Port = 25
    smtp_username: NonEmpty | None = None
    smtp_password: NonEmpty | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_from: NonEmpty = "hetuflow@localhost"
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    """Deliveries in flight at once on this server; a slow target holds only its own."""


class MetricsSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The Prometheus endpoint ``/metrics``."""

    require_token: bool = False


class LogSection(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Log level and line format (``text`` for people, ``json`` for collectors)."""

    level: LogLevel = "info"
    format: LogFormat = "text"


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The whole configuration of one server process."""

    server: ServerSection = msgspec.field(default_factory=ServerSection)
    database: DatabaseSection = msgspec.field(default_factory=DatabaseSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    scheduler: SchedulerSection = msgspec.field(default_factory=SchedulerSection)
    retention: RetentionSection = msgspec.field(default_factory=RetentionSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    notifications: NotificationsSection = msgspec.field(default_factory=NotificationsSection)
    log: LogSection = msgspec.field(default_factory=LogSection)

    @property
    def key_path(self) -> Path:
        """Where the server's private key lives: ``auth.key_file`` or ``<data_dir>/server.jwk``."""
        return self.auth.key_file or self.server.data_dir / KEY_FILE_NAME

    @property
    def embedded_pg_dir(self) -> Path:
        """The data directory of the embedded PostgreSQL (used when ``database.url`` is not set)."""
        return self.server.data_dir / EMBEDDED_PG_DIR_NAME


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    field.name: field.type for field in msgspec.structs.fields(ServerConfig)
}


def env_var(key: str) -> str:
    """The environment variable of dotted ``key``: ``server.port`` → ``HETUFLOW_SERVER__PORT``."""
    section, _, name = key.partition(".")
    return settings.env_var(section, name)


def iter_keys() -> Iterator[tuple[str, Any, object]]:
    """Every key as ``(dotted key, type, default)``, in declaration order (for docs and ``--help``)."""
    for section, section_type in _SECTIONS.items():
        defaults = section_type()
        for field in msgspec.structs.fields(section_type):
            yield f"{section}.{field.name}", field.type, getattr(defaults, field.name)


def load_config(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[Setting] = (),
    cwd: Path | None = None,
) -> ServerConfig:
    """Build the configuration from defaults, ``config_file``, ``environ`` and ``overrides`` (flags, keyed
    ``section.key``).

    Relative paths are resolved against the config file's directory for values from the file and against
    ``cwd`` (default: the working directory) for everything else. Raises `ConfigError` naming the key.
    """
    try:
        return _load(config_file, os.environ if environ is None else environ, overrides, cwd or Path.cwd())
    except SettingsError as exc:
        raise ConfigError(exc.key, exc.message) from None


def _load(
    config_file: Path | None, environ: Mapping[str, str], overrides: Sequence[Setting], cwd: Path
) -> ServerConfig:
    base = cwd.absolute()
    values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    if config_file is not None:
        for setting in _file_settings(config_file):
            _apply(values, setting, base=base)
    for section in _SECTIONS:
        for setting in settings.env_settings(environ, section):
            _apply(values, setting._replace(key=f"{section}.{setting.key}"), base=base)
    for setting in overrides:
        _apply(values, setting, base=base)

    sections = {name: section_type(**values[name]) for name, section_type in _SECTIONS.items()}
    server = sections["server"]
    assert isinstance(server, ServerSection)
    if not server.data_dir.is_absolute():
        sections["server"] = msgspec.structs.replace(server, data_dir=base / server.data_dir)
    config = ServerConfig(**sections)  # type: ignore[arg-type]
    _check_consistency(config)
    return config


def redact_url(url: str) -> str:
    """``url`` (a PostgreSQL URL or key=value conninfo string) with every password shown as ``***``.

    For logs and reports. A URL may carry the password in its user info (``user:secret@host``) and in its
    query (``?password=secret``); a conninfo string as ``password=secret`` or ``password = 'quoted value'``.
    The parsing is deliberately forgiving: it never raises, whatever the string holds.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _CONNINFO_PAIR.sub(_redact_pair, url)
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    path, question, query = tail.partition("?")
    if question:
        query, hash_mark, fragment = query.partition("#")
        query = "&".join(_redact_query_pair(pair) for pair in query.split("&")) + hash_mark + fragment
    return f"{scheme}://{authority}{path}{question}{query}"


_SECRET_KEYS = frozenset({"password", "sslpassword"})
"""libpq connection parameters whose values are secrets."""
# A conninfo pair: a keyword, "=" with optional blanks around it, and a value that is either single-quoted
# (backslash escapes a quote; an unterminated quote runs to the end) or runs to the next blank.
_CONNINFO_PAIR = re.compile(r"(?P<key>\w+)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*(?:'|\\?$)|\S*)")


def _redact_pair(match: re.Match[str]) -> str:
    if match.group("key") not in _SECRET_KEYS:
        return match.group(0)
    return f"{match.group('key')}{match.group('eq')}***"


def _redact_query_pair(pair: str) -> str:
    key, equals, _ = pair.partition("=")
    return f"{key}=***" if equals and unquote(key) in _SECRET_KEYS else pair


# -- reading the layers ---------------------------------------------------------------------------------


def _file_settings(path: Path) -> Iterator[Setting]:
    source = str(path)
    for section, table in settings.read_toml(path).items():
        if section not in _SECTIONS:
            raise SettingsError(section, f"unknown section (from {source}); known: {', '.join(_SECTIONS)}")
        if not isinstance(table, dict):
            raise SettingsError(section, f"expected a table [{section}], got {_show(table)} (from {source})")
        for name, value in table.items():
            yield Setting(f"{section}.{name}", value, source, path)


def _apply(values: dict[str, dict[str, Any]], setting: Setting, *, base: Path) -> None:
    section, _, name = setting.key.partition(".")
    section_type = _SECTIONS.get(section)
    if section_type is None:
        raise SettingsError(setting.key, f"unknown section {section!r} (from {setting.source})")
    fields = {field.name: field for field in msgspec.structs.fields(section_type)}
    field = fields.get(name)
    if field is None:
        known = ", ".join(fields)
        raise SettingsError(setting.key, f"unknown key (from {setting.source}); {section} keys: {known}")
    values[section][name] = _convert(setting, field.type, base=setting.base(base))


def _convert(setting: Setting, field_type: Any, *, base: Path) -> Any:
    raw = setting.value
    strict = setting.file is not None  # TOML values are typed: port = "9000" is refused, not converted
    info = msgspec.inspect.type_info(field_type)
    if raw == "" and not strict and _allows_none(info):
        # An empty environment variable or flag clears an optional value (e.g. falls back to embedded PG).
        return None
    if not strict and isinstance(raw, str) and isinstance(info, msgspec.inspect.DictType):
        # A table given in an environment variable or a flag: as JSON (e.g. the notification targets).
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SettingsError(setting.key, f"expected a JSON object (from {setting.source})") from None
    try:
        value = msgspec.convert(raw, field_type, strict=strict, dec_hook=_dec_hook)
    except msgspec.ValidationError:
        raise SettingsError(
            setting.key, f"expected {_describe(info)}, got {_show(raw)} (from {setting.source})"
        ) from None
    return settings.resolve_path(value, base) if isinstance(value, Path) else value


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is Path and isinstance(obj, str) and obj:
        return Path(obj)
    raise TypeError(f"cannot convert {obj!r} to {type_.__name__}")


def _check_consistency(config: ServerConfig) -> None:
    server, database, scheduler = config.server, config.database, config.scheduler
    if (server.tls_cert is None) != (server.tls_key is None):
        missing = "server.tls_key" if server.tls_key is None else "server.tls_cert"
        raise SettingsError(missing, "required when the other of server.tls_cert/server.tls_key is set")
    if database.pool_min > database.pool_max:
        raise SettingsError(
            "database.pool_min",
            f"must not exceed database.pool_max ({database.pool_min} > {database.pool_max})",
        )
    interval = scheduler.generation_interval_secs
    if interval is not None and interval >= scheduler.generation_horizon_secs / 2:
        # A schedule is refilled once less than half a horizon is planned: a longer pause lets the cursor fall
        # behind the clock, and its slots would be planned late (misfires).
        raise SettingsError(
            "scheduler.generation_interval_secs",
            "must be shorter than half of scheduler.generation_horizon_secs "
            f"({interval:g} >= {scheduler.generation_horizon_secs:g} / 2)",
        )
    _check_targets(config.notifications)
    if scheduler.agent_timeout_secs <= scheduler.heartbeat_interval_secs:
        raise SettingsError(
            "scheduler.agent_timeout_secs",
            "must be longer than scheduler.heartbeat_interval_secs "
            f"({scheduler.agent_timeout_secs:g} <= {scheduler.heartbeat_interval_secs:g})",
        )


def _check_targets(section: NotificationsSection) -> None:
    for name, target in section.targets.items():
        key = f"notifications.targets.{name}"
        if target.kind == "webhook" and target.url is None:
            raise SettingsError(f"{key}.url", "required for a webhook target")
        if target.kind == "email" and not target.to:
            raise SettingsError(f"{key}.to", "required for an email target")
        if target.kind == "email" and section.smtp_host is None:
            raise SettingsError("notifications.smtp_host", f"required by the email target {name!r}")


# -- messages -------------------------------------------------------------------------------------------


def _allows_none(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.UnionType) and any(
        isinstance(member, msgspec.inspect.NoneType) for member in info.types
    )


def _describe(info: msgspec.inspect.Type) -> str:
    """A short human description of what a field accepts, e.g. ``int in 1..65535``."""
    if isinstance(info, msgspec.inspect.UnionType):
        members = [m for m in info.types if not isinstance(m, msgspec.inspect.NoneType)]
        described = " or ".join(_describe(m) for m in members)
        return f"{described} (or empty)" if len(members) < len(info.types) else described
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        kind = "int" if isinstance(info, msgspec.inspect.IntType) else "number"
        return kind + _bounds(info.gt, info.ge, info.lt, info.le)
    if isinstance(info, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(info, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(str(v) for v in info.values)
    if isinstance(info, msgspec.inspect.StrType):
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, msgspec.inspect.CustomType) and info.cls is Path:
        return "a path"
    if isinstance(info, msgspec.inspect.DictType):
        return "a table of valid entries"
    return type(info).__name__


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    if ge is not None and le is not None:
        return f" in {_number(ge)}..{_number(le)}"
    parts = []
    if gt is not None:
        parts.append(f"> {_number(gt)}")
    if ge is not None:
        parts.append(f">= {_number(ge)}")
    if lt is not None:
        parts.append(f"< {_number(lt)}")
    if le is not None:
        parts.append(f"<= {_number(le)}")
    return " " + " and ".join(parts) if parts else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _show(value: object) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)
