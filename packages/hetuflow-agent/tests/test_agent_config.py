"""Configuration layers (defaults < TOML < env < flags), parsing of env text, and errors naming the key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hetuflow_agent.config import AgentConfig, Setting, default_agent_id, env_var, load_config, parse_pairs
from hetuflow_agent.errors import ConfigError
from hetuflow_core.enums import CommandKind

BASE_ENV = {"HETUFLOW_AGENT__SERVERS": "ws://env-server:1", "HETUFLOW_AGENT__TOKEN": "env-token"}


def _load(env: dict[str, str] | None = None, file: Path | None = None, **flags: Any) -> AgentConfig:
    return load_config(
        config_file=file,
        environ=BASE_ENV if env is None else env,
        overrides=[Setting(key, value, f"--{key}") for key, value in flags.items()],
    )


def test_defaults() -> None:
    config = _load()
    assert config.id == default_agent_id()
    assert config.display_name == config.id
    assert config.capacity == (os.cpu_count() or 1)
    assert config.servers == ["ws://env-server:1/api/v1/agents/ws"]
    assert config.token == "env-token"
    assert config.labels == {}
    assert config.log_format == "text"


def test_the_prefetch_window_defaults_to_the_capacity_and_can_be_turned_off() -> None:
    assert _load(capacity=3).window == 3
    assert _load(capacity=3, prefetch=1).window == 1
    assert _load(capacity=3, prefetch=0).window == 0
    env = {**BASE_ENV, "HETUFLOW_AGENT__PREFETCH": "2"}
    assert _load(env).prefetch == 2


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text(
        'capacity = 3\nname = "from-file"\nworkdir = "/from/file"\nservers = ["ws://file:1"]\n'
        'drain_timeout_secs = 7\n[labels]\nzone = "file"\n'
    )
    env = BASE_ENV | {"HETUFLOW_AGENT__CAPACITY": "5", "HETUFLOW_AGENT__NAME": "from-env"}
    config = _load(env, file, capacity=9)
    assert config.capacity == 9  # flag beats env beats file
    assert config.name == "from-env"  # env beats file
    assert config.workdir == "/from/file"  # file beats default
    assert config.drain_timeout_secs == 7.0
    assert config.labels == {"zone": "file"}
    assert config.servers == ["ws://env-server:1/api/v1/agents/ws"]  # env beats file


def test_env_lists_and_mappings_are_parsed() -> None:
    env = BASE_ENV | {
        "HETUFLOW_AGENT__SERVERS": "ws://a:1, wss://b/custom/path ,http://c:8080",
        "HETUFLOW_AGENT__LABELS": "gpu=yes, zone = a",
        "HETUFLOW_AGENT__EXECUTABLES": "python=/opt/py/bin/python3",
        "HETUFLOW_AGENT__TLS_INSECURE": "true",
        "HETUFLOW_AGENT__HEARTBEAT_INTERVAL_SECS": "",
    }
    config = _load(env)
    assert config.servers == [
        "ws://a:1/api/v1/agents/ws",
        "wss://b/custom/path",
        "ws://c:8080/api/v1/agents/ws",
    ]
    assert config.labels == {"gpu": "yes", "zone": "a"}
    assert config.executables == {CommandKind.PYTHON: "/opt/py/bin/python3"}
    assert config.tls_insecure is True
    assert config.heartbeat_interval_secs is None


def test_token_file_is_read_and_a_higher_layer_replaces_the_credential(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    assert _load(token_file=str(token_file)).token == "file-token"  # flag token_file beats env token
    env = {"HETUFLOW_AGENT__SERVERS": "ws://a", "HETUFLOW_AGENT__TOKEN_FILE": str(token_file)}
    assert _load(env, token="flag-token").token == "flag-token"


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"HETUFLOW_AGENT__CAPACITY": "many"}, "capacity", "from HETUFLOW_AGENT__CAPACITY"),
        ({"HETUFLOW_AGENT__CAPACITY": "0"}, "capacity", ">= 1"),
        ({"HETUFLOW_AGENT__LABELS": "novalue"}, "labels", "k=v"),
        ({"HETUFLOW_AGENT__LABELS": "bad key!=x"}, "labels", "regex"),
        ({"HETUFLOW_AGENT__LOG_FORMAT": "xml"}, "log_format", "xml"),
        ({"HETUFLOW_AGENT__TLS_INSECURE": "maybe"}, "tls_insecure", "bool"),
        ({"HETUFLOW_AGENT__EXECUTABLES": "perl=/usr/bin/perl"}, "executables", "perl"),
        ({"HETUFLOW_AGENT__SERVERS": "ftp://x"}, "servers", "ftp://x"),
        ({"HETUFLOW_AGENT__SERVERS": ""}, "servers", "at least one server URL"),
        ({"HETUFLOW_AGENT__TOKEN": ""}, "token", "token is required"),
        ({"HETUFLOW_AGENT__TOKEN": "a b"}, "token", "printable ASCII"),
        ({"HETUFLOW_AGENT__ID": "-starts-badly"}, "id", "regex"),
        ({"HETUFLOW_AGENT__TOKEN_FILE": "/no/such/file"}, "token_file", "No such file"),
        ({"HETUFLOW_AGENT__TLS_CA_FILE": "/no/such/ca.pem"}, "tls_ca_file", "not a file"),
        ({"HETUFLOW_AGENT__BACKOFF_MAX_SECS": "0.1"}, "backoff_max_secs", "backoff_initial_secs"),
        ({"HETUFLOW_AGENT__CAPACTIY": "3"}, "HETUFLOW_AGENT__CAPACTIY", "unknown setting"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(BASE_ENV | env)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert fragment in str(info.value)


def test_unknown_or_bad_file_keys_name_the_key(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text("capasity = 3\n")
    with pytest.raises(ConfigError, match=r"^capasity: unknown setting in .*agent\.toml$"):
        _load(file=file)
    file.write_text('capacity = "lots"\n')
    with pytest.raises(ConfigError, match=r"^capacity: Expected `int`, got `str` \(from .*agent\.toml\)$"):
        _load(file=file)
    file.write_text("capacity = \n")
    # A file that cannot be read or parsed is reported as the server reports it: the file, not a key.
    with pytest.raises(ConfigError, match=r"^.*agent\.toml: invalid TOML") as info:
        _load(file=file)
    assert info.value.key is None
    with pytest.raises(ConfigError, match=r"^cannot read config file .*missing\.toml"):
        _load(file=tmp_path / "missing.toml")


def test_relative_paths_follow_the_file_else_the_working_directory(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "token").write_text("file-dir-token\n")
    file = etc / "agent.toml"
    file.write_text('workdir = "work"\ntoken_file = "token"\n')
    config = load_config(config_file=file, environ={"HETUFLOW_AGENT__SERVERS": "ws://a"}, cwd=tmp_path)
    assert config.workdir == str(etc / "work")
    assert config.token == "file-dir-token"
    flagged = load_config(
        config_file=file,
        environ={"HETUFLOW_AGENT__SERVERS": "ws://a", "HETUFLOW_AGENT__WORKDIR": "here"},
        cwd=tmp_path,
    )
    assert flagged.workdir == str(tmp_path / "here")


def test_log_level_takes_either_case_and_is_kept_lower_case() -> None:
    assert _load(BASE_ENV | {"HETUFLOW_AGENT__LOG_LEVEL": "WARNING"}).log_level == "warning"
    assert _load(log_level="debug").log_level == "debug"
    assert _load().log_level == "info"


def test_an_unknown_override_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^capasity: unknown setting \(from --capasity\)$"):
        _load(capasity=3)


def test_env_var_names_and_pairs() -> None:
    assert env_var("drain_timeout_secs") == "HETUFLOW_AGENT__DRAIN_TIMEOUT_SECS"
    assert parse_pairs(" a=1 ,, b = two=2 ") == {"a": "1", "b": "two=2"}
    with pytest.raises(ValueError, match="got '=x'"):
        parse_pairs("=x")


def test_default_agent_id_is_valid_and_stable() -> None:
    assert default_agent_id() == default_agent_id()
    assert _load(BASE_ENV).id == default_agent_id()
