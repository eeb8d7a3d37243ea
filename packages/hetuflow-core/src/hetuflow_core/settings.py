"""The layered settings both hetuflow programs share: defaults < TOML file < environment < command-line flags.

The server and the agent each declare their configuration as one msgspec Struct and fill it from these pieces,
so both name environment variables by one rule (``HETUFLOW_<SECTION>__<KEY>``), resolve relative paths the
same way and report a bad value as a `SettingsError` naming the key and where the value came from. Each
program's ``load_config(*, config_file, environ, overrides, cwd)`` turns that error into its own
``ConfigError``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = ["ENV_PREFIX", "Setting", "SettingsError", "env_settings", "env_var", "read_toml", "resolve_path"]

ENV_PREFIX: Final = "HETUFLOW_"


class SettingsError(ValueError):
    """A setting is unknown, malformed or inconsistent.

    ``key`` names it as the program does (``server.port``, ``capacity``), or is None when the trouble is the
    config file as a whole; ``message`` says why and, for a bad value, where it came from.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class Setting(NamedTuple):
    """One value of one layer: key, value, and its source (file, variable or flag) for error messages."""

    key: str
    value: object
    source: str
    file: Path | None = None
    """The config file the value was read from, None for the environment and flags. Values from a file are
    typed by TOML and their relative paths are relative to the file; other values are usually text."""

    def base(self, cwd: Path) -> Path:
        """The directory a relative path in this value is relative to: the file's, else ``cwd``."""
        return self.file.absolute().parent if self.file is not None else cwd


def env_var(section: str, name: str) -> str:
    """The variable of ``name`` in ``section``: ``("server", "port")`` → ``HETUFLOW_SERVER__PORT``."""
    return f"{ENV_PREFIX}{section.upper()}__{name.upper()}"


def env_settings(environ: Mapping[str, str], section: str) -> Iterator[Setting]:
    """The variables ``HETUFLOW_<SECTION>__<NAME>`` of ``section`` as settings keyed by ``name`` (lower case).

    Other variables are left alone: the same prefix names other sections, the other program's settings, the
    test suite's variables and the variables handed to task processes.
    """
    prefix = env_var(section, "")
    for variable in sorted(environ):
        if variable.startswith(prefix):
            yield Setting(variable[len(prefix) :].lower(), environ[variable], variable)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document at ``path``; a `SettingsError` saying why when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(None, f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(None, f"cannot read config file {path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(None, f"{path}: invalid TOML: {exc}") from None


def resolve_path(value: str | Path, base: Path) -> Path:
    """``value`` as an absolute path: ``~`` expanded, a relative path taken relative to ``base``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
