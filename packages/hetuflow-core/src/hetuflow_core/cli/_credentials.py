"""The login file: the server URL and token ``hetuflow login`` stores for later commands.

It lives in the user's configuration directory (``$XDG_CONFIG_HOME/hetuflow/credentials.toml``, else
``~/.config/hetuflow/``; ``%APPDATA%\\hetuflow\\`` on Windows), readable by its owner only (0600, in a 0700
directory), as ``gh`` and ``kubectl`` keep theirs. ``--server``/``--token`` and ``HETUFLOW_SERVER``/
``HETUFLOW_TOKEN`` override what it holds.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec
import tomli_w

__all__ = ["Credentials", "credentials_path", "forget", "load", "save"]

_FILE_MODE = 0o600
_DIR_MODE = 0o700


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the login file holds."""

    server: str | None = None
    token: str | None = None


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the login file is, from the environment (``XDG_CONFIG_HOME``, ``APPDATA``, ``HOME``)."""
    env = os.environ if environ is None else environ
    if sys.platform == "win32" and env.get("APPDATA"):
        base = Path(env["APPDATA"])
    elif env.get("XDG_CONFIG_HOME"):
        base = Path(env["XDG_CONFIG_HOME"])
    else:
        base = Path(env.get("HOME") or Path.home()) / ".config"
    return base / "hetuflow" / "credentials.toml"


def load(path: Path) -> Credentials:
    """The stored credentials; empty ones when there is no file. ``ValueError`` for a broken file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Credentials()
    try:
        return msgspec.convert(tomllib.loads(text), Credentials)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"{path}: {exc}; run `hetuflow login` again") from None


def save(path: Path, credentials: Credentials) -> None:
    """Write ``credentials`` readable by the owner only, replacing the file in one step."""
    path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    data = {key: value for key, value in msgspec.structs.asdict(credentials).items() if value is not None}
    temporary = path.with_name(path.name + ".tmp")
    # Created with 0600 from the start, so the token is never readable by others, not even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        if hasattr(os, "fchmod"):  # the umask may have narrowed the mode os.open was given
            os.fchmod(file.fileno(), _FILE_MODE)
        file.write(tomli_w.dumps(data))
    os.replace(temporary, path)


def forget(path: Path) -> bool:
    """Remove the login file; whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
