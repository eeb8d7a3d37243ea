"""Configuration: layer precedence, every error path naming its key and source, derived paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from hetuflow_server.cli.serve import hypercorn_config
from hetuflow_server.config import (
    ConfigError,
    ServerConfig,
    Setting,
    env_var,
    iter_keys,
    load_config,
    redact_url,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8900
    assert config.server.data_dir == tmp_path / "data"
    assert config.database.url is None
    assert config.scheduler.generation_horizon_secs == 600
    assert config.scheduler.dispatch_lookahead_secs == 5
    assert config.scheduler.heartbeat_interval_secs == 5
    assert config.scheduler.agent_timeout_secs == 15
    assert config.scheduler.generation_interval_secs is None  # the generator picks 5 s or horizon / 4
    assert config.scheduler.misfire_slack_secs == 1
    assert config.log.level == "info"
    assert config.log.format == "text"
    assert config.key_path == tmp_path / "data" / "server.jwk"
    assert config.embedded_pg_dir == tmp_path / "data" / "pg"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "server.toml",
        '[server]\nport = 9001\nhost = "0.0.0.0"\nname = "from-file"\n[log]\nlevel = "debug"\n',
    )
    environ = {"HETUFLOW_SERVER__PORT": "9002", "HETUFLOW_SERVER__NAME": "from-env"}
    flags = [Setting("server.port", "9003", "--port")]
    config = load_config(config_file=file, environ=environ, overrides=flags, cwd=tmp_path)
    assert config.server.port == 9003  # flag beats env beats file
    assert config.server.name == "from-env"  # env beats file
    assert config.server.host == "0.0.0.0"  # file beats default
    assert config.log.level == "debug"
    assert config.server.graceful_timeout_secs == 10  # default kept


def test_idle_keep_alive_connections_outlive_common_client_pools(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    # httpx drops a pooled connection after 5 s idle, aiohttp after 15 s, many load balancers after 60 s:
    # the server must not close first, or a client reusing the connection gets no response.
    assert config.server.keep_alive_timeout_secs > 60
    assert hypercorn_config(config).keep_alive_timeout == config.server.keep_alive_timeout_secs
    environ = {"HETUFLOW_SERVER__KEEP_ALIVE_TIMEOUT_SECS": "120"}
    assert hypercorn_config(load_config(environ=environ, cwd=tmp_path)).keep_alive_timeout == 120


def test_env_converts_strings_and_ignores_foreign_variables(tmp_path: Path) -> None:
    environ = {
        "HETUFLOW_SCHEDULER__AGENT_TIMEOUT_SECS": "30.5",
        "HETUFLOW_DATABASE__POOL_MAX": "4",
        "HETUFLOW_AGENT__ID": "worker-1",  # the agent's section
        "HETUFLOW_TEST_DATABASE_URL": "postgresql://x",  # no double underscore: not configuration
        "HETUFLOW_TASK_ID": "abc",
        "PATH": "/bin",
    }
    config = load_config(environ=environ, cwd=tmp_path)
    assert config.scheduler.agent_timeout_secs == 30.5
    assert config.database.pool_max == 4


def test_generation_interval_and_misfire_slack_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "HETUFLOW_SCHEDULER__GENERATION_INTERVAL_SECS": "2.5",
        "HETUFLOW_SCHEDULER__MISFIRE_SLACK_SECS": "0",
    }
    scheduler = load_config(environ=environ, cwd=tmp_path).scheduler
    assert (scheduler.generation_interval_secs, scheduler.misfire_slack_secs) == (2.5, 0)


def test_empty_env_clears_optional_value(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.toml", '[database]\nurl = "postgresql://db/x"\n')
    config = load_config(config_file=file, environ={"HETUFLOW_DATABASE__URL": ""}, cwd=tmp_path)
    assert config.database.url is None


def test_relative_paths_resolve_against_file_dir_and_cwd(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    file = _write(conf_dir / "c.toml", '[server]\ndata_dir = "state"\n[auth]\nkey_file = "keys/k.jwk"\n')
    config = load_config(config_file=file, environ={}, cwd=tmp_path)
    assert config.server.data_dir == conf_dir / "state"
    assert config.key_path == conf_dir / "keys" / "k.jwk"
    flagged = load_config(
        config_file=file,
        environ={},
        overrides=[Setting("server.data_dir", "here", "--data-dir")],
        cwd=tmp_path,
    )
    assert flagged.server.data_dir == tmp_path / "here"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"HETUFLOW_SERVER__PORT": "abc"},
            'server.port: expected int in 1..65535, got "abc" (from HETUFLOW_SERVER__PORT)',
        ),
        (
            {"HETUFLOW_SERVER__PORT": "70000"},
            'server.port: expected int in 1..65535, got "70000" (from HETUFLOW_SERVER__PORT)',
        ),
        (
            {"HETUFLOW_LOG__FORMAT": "xml"},
            'log.format: expected one of json, text, got "xml" (from HETUFLOW_LOG__FORMAT)',
        ),
        (
            {"HETUFLOW_SCHEDULER__LEASE_SECS": "0"},
            'scheduler.lease_secs: expected number > 0 and <= 86400, got "0" '
            "(from HETUFLOW_SCHEDULER__LEASE_SECS)",
        ),
        (
            {"HETUFLOW_SCHEDULER__MISFIRE_SLACK_SECS": "-1"},
            'scheduler.misfire_slack_secs: expected number in 0..3600, got "-1" '
            "(from HETUFLOW_SCHEDULER__MISFIRE_SLACK_SECS)",
        ),
        (
            {"HETUFLOW_SERVER__PROT": "1"},
            "server.prot: unknown key (from HETUFLOW_SERVER__PROT)",
        ),
        (
            {"HETUFLOW_SERVER__NAME": ""},
            'server.name: expected a non-empty string, got "" (from HETUFLOW_SERVER__NAME)',
        ),
    ],
)
def test_bad_env_value_names_key_and_variable(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ, cwd=tmp_path)
    assert str(caught.value).startswith(message)


def test_bad_flag_value_names_flag(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r'^server\.port: expected int in 1\.\.65535, got "x" \(from --port\)$'
    ):
        load_config(environ={}, overrides=[Setting("server.port", "x", "--port")], cwd=tmp_path)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[server]\nport = "9000"\n', 'server.port: expected int in 1..65535, got "9000" (from {file})'),
        ("[server]\nport = 0\n", "server.port: expected int in 1..65535, got 0 (from {file})"),
        ("[server]\nhots = 1\n", "server.hots: unknown key (from {file})"),
        ("[sever]\nport = 1\n", "sever: unknown section (from {file})"),
        ("port = 1\n", "port: unknown section (from {file})"),
        ('server = "x"\n', 'server: expected a table [server], got "x" (from {file})'),
        ("[log]\nlevel = 3\n", "log.level: expected one of debug, error, info, warning, got 3 (from {file})"),
        ("[database]\npool_min = 5\npool_max = 2\n", "database.pool_min: must not exceed database.pool_max"),
        ('[server]\ntls_cert = "c.pem"\n', "server.tls_key: required when"),
        (
            "[scheduler]\nheartbeat_interval_secs = 20\n",
            "scheduler.agent_timeout_secs: must be longer than scheduler.heartbeat_interval_secs",
        ),
        (
            "[scheduler]\ngeneration_horizon_secs = 8\ngeneration_interval_secs = 4\n",
            "scheduler.generation_interval_secs: must be shorter than half of "
            "scheduler.generation_horizon_secs (4 >= 8 / 2)",
        ),
        ("[server\n", "{file}: invalid TOML"),
    ],
)
def test_bad_file_value_names_key_and_file(tmp_path: Path, toml: str, message: str) -> None:
    file = _write(tmp_path / "bad.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=file, environ={}, cwd=tmp_path)
    assert str(caught.value).startswith(message.format(file=file))


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^cannot read config file {missing}: No such file or directory$"):
        load_config(config_file=missing, environ={}, cwd=tmp_path)


def test_every_key_has_a_default_and_an_env_var() -> None:
    keys = list(iter_keys())
    assert len(keys) == len({key for key, _, _ in keys})
    for key, _, _ in keys:
        section, name = key.split(".")
        assert env_var(key) == f"HETUFLOW_{section.upper()}__{name.upper()}"
    # The defaults alone make a valid configuration.
    assert isinstance(load_config(environ={}), ServerConfig)


def test_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/hetuflow", "postgresql://app:***@db:5432/hetuflow"),
        ("postgresql://app@db/hetuflow", "postgresql://app@db/hetuflow"),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("postgresql://app@db/x?password=s3cret", "postgresql://app@db/x?password=***"),
        (
            "postgresql://app:s3cret@db/x?sslmode=require&password=s3cret&sslpassword=s3cret#f",
            "postgresql://app:***@db/x?sslmode=require&password=***&sslpassword=***#f",
        ),
        ("postgres://app@/x?host=/run/pg&pass%77ord=s3cret", "postgres://app@/x?host=/run/pg&pass%77ord=***"),
        ("postgresql://app:s3cret@h1:5432,h2:5433", "postgresql://app:***@h1:5432,h2:5433"),
        ("postgresql://[::1/x?password=s3cret", "postgresql://[::1/x?password=***"),
        ("host=db password = s3cret dbname=x", "host=db password = *** dbname=x"),
        ("host=db password='s3 cret' dbname=x", "host=db password=*** dbname=x"),
        (r"password='it\'s s3cret' host=db", "password=*** host=db"),
        ("host=db password='s3cret unterminated", "host=db password=***"),
        ("host=db sslpassword=s3cret", "host=db sslpassword=***"),
        ("host=db mypassword=x passfile=/p", "host=db mypassword=x passfile=/p"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
