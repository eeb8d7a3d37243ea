"""The login file of ``hetuflow login``: where it is, that only its owner can read it, and that a broken one
is reported rather than half-read."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from hetuflow_core.cli._credentials import Credentials, credentials_path, forget, load, save


def test_path_follows_the_environment(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("POSIX locations")
    assert credentials_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/hetuflow/credentials.toml")
    assert credentials_path({"HOME": "/home/u"}) == Path("/home/u/.config/hetuflow/credentials.toml")


def test_saved_owner_only_and_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "config" / "hetuflow" / "credentials.toml"
    assert load(path) == Credentials()
    old_umask = os.umask(0)
    try:
        save(path, Credentials(server="http://h:8900", token="t0k"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load(path) == Credentials(server="http://h:8900", token="t0k")
    assert forget(path)
    assert not forget(path)


def test_a_broken_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text("server = [\n")
    with pytest.raises(ValueError, match="run `hetuflow login` again"):
        load(path)
