"""The shared settings pieces: variable names, which variables count, file errors, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from hetuflow_core.settings import Setting, SettingsError, env_settings, env_var, read_toml, resolve_path


def test_env_var_names_section_and_key() -> None:
    assert env_var("server", "port") == "HETUFLOW_SERVER__PORT"
    assert env_var("agent", "drain_timeout_secs") == "HETUFLOW_AGENT__DRAIN_TIMEOUT_SECS"


def test_env_settings_take_only_the_section_asked_for() -> None:
    environ = {
        "HETUFLOW_AGENT__CAPACITY": "4",
        "HETUFLOW_AGENT__LABELS": "gpu=yes",
        "HETUFLOW_SERVER__PORT": "9000",  # another section
        "HETUFLOW_AGENT_ID": "x",  # one underscore: not a setting
        "HETUFLOW_TASK_ID": "abc",  # handed to task processes
        "PATH": "/bin",
    }
    assert list(env_settings(environ, "agent")) == [
        Setting("capacity", "4", "HETUFLOW_AGENT__CAPACITY"),
        Setting("labels", "gpu=yes", "HETUFLOW_AGENT__LABELS"),
    ]
    assert list(env_settings(environ, "server")) == [Setting("port", "9000", "HETUFLOW_SERVER__PORT")]
    assert list(env_settings(environ, "log")) == []


def test_read_toml_parses_and_reports_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[server]\nport = 9000\nname = "a"\n', encoding="utf-8")
    assert read_toml(good) == {"server": {"port": 9000, "name": "a"}}

    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=rf"^{bad}: invalid TOML: ") as info:
        read_toml(bad)
    assert info.value.key is None

    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SettingsError, match=rf"^cannot read config file {latin}: not UTF-8 text$"):
        read_toml(latin)

    missing = tmp_path / "missing.toml"
    with pytest.raises(
        SettingsError, match=rf"^cannot read config file {missing}: No such file or directory$"
    ):
        read_toml(missing)


def test_settings_error_names_the_key() -> None:
    error = SettingsError("server.port", 'expected int, got "x" (from --port)')
    assert str(error) == 'server.port: expected int, got "x" (from --port)'
    assert (error.key, error.message) == ("server.port", 'expected int, got "x" (from --port)')
    assert str(SettingsError(None, "cannot read config file c.toml")) == "cannot read config file c.toml"


def test_relative_paths_follow_the_file_else_the_working_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    file = tmp_path / "etc" / "c.toml"
    from_file = Setting("workdir", "work", str(file), file)
    from_flag = Setting("workdir", "work", "--workdir")
    assert resolve_path("work", from_file.base(cwd)) == tmp_path / "etc" / "work"
    assert resolve_path("work", from_flag.base(cwd)) == cwd / "work"
    assert resolve_path("/abs/work", from_file.base(cwd)) == Path("/abs/work")
    assert resolve_path("~/work", cwd) == Path.home() / "work"
