"""The server's private key: a P-256 EC JWK in a file of mode 0600 inside the data directory.

Every token is signed with a key derived from this one and encrypted to it, so whoever holds the file can
mint and read tokens, and nobody else can: it is created with owner-only permissions from the first byte
(never chmod-ed afterwards) and never overwritten unless asked (`keygen --force`). Loading checks that the
file really holds a private P-256 key and reports any problem as one `KeyFileError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from pathlib import Path

from jwcrypto import common, jwk

from hetuflow_server.errors import HetuflowError

__all__ = ["KEY_FILE_MODE", "KeyFileError", "generate_key", "load_key", "load_or_create_key", "write_key"]

logger = logging.getLogger(__name__)

KEY_FILE_MODE = 0o600
KEY_CURVE = "P-256"


class KeyFileError(HetuflowError):
    """The key file cannot be read, written, or does not hold a private P-256 EC key."""

    code = "key-file"
    title = "Key file error"


def generate_key() -> jwk.JWK:
    """A new private P-256 key whose ``kid`` is its RFC 7638 thumbprint."""
    key = jwk.JWK.generate(kty="EC", crv=KEY_CURVE)
    return _with_kid(key)


def write_key(path: Path, key: jwk.JWK, *, force: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600; refuse an existing file unless ``force``.

    The key is written to a temporary file beside ``path`` first and then linked (or, with ``force``,
    renamed) into place, so nobody ever sees a half-written key file, even two processes racing to
    create the first key of a data directory.
    """
    data = key.export_private().encode() + b"\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(temporary, data)
        if force:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails with FileExistsError instead of replacing
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists (use --force to replace it)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def load_key(path: Path) -> jwk.JWK:
    """Read the private key at ``path``; `KeyFileError` if it is missing, unreadable or not a P-256 key."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist (create it with 'hetuflow-server keygen')"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise KeyFileError(f"cannot read key file {path}: {reason or exc}") from None
    try:
        key = jwk.JWK.from_json(text)
    except (common.JWException, ValueError, TypeError, json.JSONDecodeError):
        raise KeyFileError(f"key file {path} does not hold a JWK") from None
    if key.get("kty") != "EC" or key.get("crv") != KEY_CURVE or not key.has_private:
        raise KeyFileError(f"key file {path} does not hold a private {KEY_CURVE} EC key")
    if stat.S_IMODE(mode) & 0o077:
        logger.warning(
            "key file %s is readable by others (mode %o); it should be 0600",
            path,
            stat.S_IMODE(mode),
            extra={"path": str(path)},
        )
    return _with_kid(key)


def load_or_create_key(path: Path) -> tuple[jwk.JWK, bool]:
    """Load the key at ``path``, generating and writing one first if there is none; ``(key, created)``."""
    if not path.exists():
        try:
            write_key(path, generate_key())
        except KeyFileError:
            # Another process (a second server or a CLI command on the same data dir) won the race.
            if not path.exists():
                raise
        else:
            logger.info("generated a new server key in %s", path, extra={"path": str(path)})
            return load_key(path), True
    return load_key(path), False


def _write_private(path: Path, data: bytes) -> None:
    # The mode applies from creation, so the key is never readable by others, not even for a moment.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover of a crashed run with our pid
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask may have removed bits we want (it never adds any)
        file.write(data)
        file.flush()
        os.fsync(fd)


def _with_kid(key: jwk.JWK) -> jwk.JWK:
    if key.get("kid") is None:
        key = jwk.JWK(**{**json.loads(key.export_private()), "kid": key.thumbprint()})
    return key
