"""The command line without a database: bad input exits 2 with one line, keygen, help texts.

Most cases run ``main`` in-process (the ``cli`` fixture puts the logging configuration it installs back
afterwards); a few run the real ``python -m hetuflow_server`` to prove the entry point end to end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hetuflow_server.cli import main
from hetuflow_server.config import env_var, iter_keys

# A port nothing listens on: connecting fails at once, so "database unreachable" needs no real database.
_CLOSED_PORT_URL = "postgresql://hetuflow@127.0.0.1:{port}/hetuflow?connect_timeout=2"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hetuflow_server`` with a clean configuration environment."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HETUFLOW_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hetuflow_server", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=timeout,
        check=False,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {text!r}"
    return lines[0]


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Outcome]]:
    """Run ``main`` in-process with a clean configuration environment; restores logging afterwards."""
    for key in [k for k in os.environ if k.startswith("HETUFLOW_")]:
        monkeypatch.delenv(key)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]

    def run(*argv: str, env: dict[str, str] | None = None) -> Outcome:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        code = main(list(argv))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    try:
        yield run
    finally:
        for logger, level, handlers in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return _CLOSED_PORT_URL.format(port=port)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--bogus"], "hetuflow-server: unrecognized arguments: --bogus"),
        ([], "hetuflow-server: the following arguments are required: COMMAND"),
        (["launch"], "hetuflow-server: argument COMMAND: invalid choice: 'launch'"),
        (["token"], "hetuflow-server token: the following arguments are required: ACTION"),
        (["token", "create", "--name", "x"], "one of the arguments --scope --agent is required"),
        (["token", "create", "--scope", "root", "--name", "x"], "argument --scope: invalid choice: 'root'"),
        (["token", "create", "--scope", "read", "--agent", "a", "--name", "x"], "not allowed with argument"),
        (
            ["serve", "--port", "abc"],
            'hetuflow-server: config error: server.port: expected int in 1..65535, got "abc" (from --port)',
        ),
        (
            ["serve", "--port", "0"],
            'hetuflow-server: config error: server.port: expected int in 1..65535, got "0" (from --port)',
        ),
        (["migrate", "--log-level", "loud"], "config error: log.level: expected one of"),
        (["check", "--config", "/nonexistent/hetuflow.toml"], "config error: cannot read config file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], expected: str, cli: Callable[..., Outcome]
) -> None:
    result = cli(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in one_line(result.stderr)


def test_bad_environment_value_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HETUFLOW_SERVER__PORT", "http")
    assert main(["serve"]) == 2
    assert one_line(capsys.readouterr().err) == (
        'hetuflow-server: config error: server.port: expected int in 1..65535, got "http" '
        "(from HETUFLOW_SERVER__PORT)"
    )


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[server]\nport = 8900\ncolour = "blue"\n')
    assert main(["check", "--config", str(config)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"hetuflow-server: config error: server.colour: unknown key (from {config})")


def test_help_names_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for variable in (
        "HETUFLOW_SERVER__DATA_DIR",
        "HETUFLOW_SERVER__HOST",
        "HETUFLOW_SERVER__PORT",
        "HETUFLOW_SERVER__TLS_CERT",
        "HETUFLOW_SERVER__TLS_KEY",
        "HETUFLOW_DATABASE__URL",
        "HETUFLOW_AUTH__KEY_FILE",
        "HETUFLOW_LOG__LEVEL",
        "HETUFLOW_LOG__FORMAT",
    ):
        assert variable in text
    assert "HETUFLOW_<SECTION>__<KEY>" in text


def test_configuration_reference_documents_every_key() -> None:
    reference = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
    text = reference.read_text(encoding="utf-8")
    missing = [
        key for key, _, _ in iter_keys() if env_var(key) not in text or f"`{key.split('.')[1]}`" not in text
    ]
    assert missing == []


def test_json_log_lines(cli: Callable[..., Outcome], tmp_path: Path, closed_port_url: str) -> None:
    result = cli(
        "migrate",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        closed_port_url,
        "--log-format",
        "json",
        "--log-level",
        "debug",
    )
    assert result.returncode == 1
    *log_lines, final = result.stderr.strip().splitlines()
    records = [json.loads(line) for line in log_lines]
    assert records
    assert all({"ts", "level", "logger", "message"} <= record.keys() for record in records)
    assert final.startswith("hetuflow-server: database unavailable")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hetuflow-server ")


def test_token_create_bad_values_exit_2_before_touching_the_database(
    cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    cases = [
        (["--scope", "admin", "--name", "bad name!"], "token create: --name: Expected `str` matching regex"),
        (
            ["--scope", "admin", "--name", "ops", "--ttl", "soon"],
            "token create: --ttl: expected whole seconds",
        ),
        (["--scope", "admin", "--name", "ops", "--ttl", "5"], "token create: --ttl: Expected `int` >= 60"),
        (["--agent", "bad agent", "--name", "w1"], "token create: --agent: Expected `str` matching regex"),
    ]
    for extra, expected in cases:
        result = cli("token", "create", "--data-dir", data, *extra)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert expected in one_line(result.stderr)
    assert not (tmp_path / "data").exists()  # nothing was started or written


def test_token_create_refuses_a_data_dir_without_a_key(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    # A mistyped --data-dir must not make a new key (and embedded database) whose tokens no server accepts.
    data = tmp_path / "elsewhere"
    result = cli("token", "create", "--data-dir", str(data), "--scope", "admin", "--name", "me")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    message = one_line(result.stderr)
    assert f"token create: no server key at {data / 'server.jwk'}" in message
    assert "--data-dir" in message
    assert not data.exists()


def test_token_revoke_bad_jti_exits_2(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    result = cli("token", "revoke", "not-a-uuid", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert one_line(result.stderr) == "token revoke: JTI must be a token id (UUID), got 'not-a-uuid'"


def test_keygen_writes_0600_and_refuses_to_overwrite(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = cli("keygen", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    key_file = data / "server.jwk"
    assert first.stdout.startswith(f"wrote server key {key_file} (kid ")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()

    again = cli("keygen", "--data-dir", str(data))
    assert again.returncode == 2
    assert one_line(again.stderr) == (
        f"hetuflow-server: key file {key_file} already exists (use --force to replace it)"
    )
    assert key_file.read_text() == content

    forced = cli("keygen", "--data-dir", str(data), "--force")
    assert forced.returncode == 0, forced.stderr
    assert key_file.read_text() != content
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "no longer accepted" in forced.stderr


def test_keygen_honours_key_file_from_environment(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "main.jwk"
    result = cli("keygen", "--data-dir", str(tmp_path), env={"HETUFLOW_AUTH__KEY_FILE": str(key_file)})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("content", ["{not a key", '{"kty": "oct", "k": "c2VjcmV0"}'])
def test_unusable_key_file_exits_2_before_touching_the_database(
    cli: Callable[..., Outcome], tmp_path: Path, content: str, closed_port_url: str
) -> None:
    key_file = tmp_path / "server.jwk"
    key_file.write_text(content)
    # A free port: serve checks that it can listen before it reads the key, and 8900 may be taken.
    port = str(free_port())
    result = cli("serve", "--data-dir", str(tmp_path), "--database-url", closed_port_url, "--port", port)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"hetuflow-server: key file {key_file} does not hold")


def test_key_file_that_is_a_directory_exits_2(
    cli: Callable[..., Outcome], tmp_path: Path, closed_port_url: str
) -> None:
    result = cli(
        "token",
        "list",
        "--data-dir",
        str(tmp_path),
        "--key-file",
        str(tmp_path),
        "--database-url",
        closed_port_url,
    )
    assert result.returncode == 2
    assert one_line(result.stderr) == f"hetuflow-server: cannot read key file {tmp_path}: Is a directory"


def test_tls_files_checked_before_start(
    cli: Callable[..., Outcome], tmp_path: Path, closed_port_url: str
) -> None:
    half = cli("serve", "--data-dir", str(tmp_path), "--tls-cert", str(tmp_path / "c.pem"))
    assert half.returncode == 2
    assert "config error: server.tls_key: required when" in one_line(half.stderr)

    missing = cli(
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(free_port()),
        "--database-url",
        closed_port_url,
        "--tls-cert",
        str(tmp_path / "c.pem"),
        "--tls-key",
        str(tmp_path / "k.pem"),
    )
    assert missing.returncode == 2
    assert "config error: server.tls_cert/server.tls_key: file not found" in one_line(missing.stderr)


def test_unreachable_database_exits_1_with_one_line(tmp_path: Path, closed_port_url: str) -> None:
    result = run_cli(
        "migrate", "--data-dir", str(tmp_path), "--database-url", closed_port_url, "--log-level", "error"
    )
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("hetuflow-server: database unavailable")


def test_check_reports_unreachable_database(
    cli: Callable[..., Outcome], tmp_path: Path, closed_port_url: str
) -> None:
    # The pool retries until connect_timeout_secs (a database may be starting); keep the wait short here.
    result = cli(
        "check",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        closed_port_url,
        "--log-level",
        "error",
        env={"HETUFLOW_DATABASE__CONNECT_TIMEOUT_SECS": "1"},
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["config", "ok"]
    assert lines[1].split()[:2] == ["key", "ok"]  # absent is fine: serve generates it
    assert lines[2].split()[:2] == ["database", "FAIL"]
    assert "127.0.0.1" in lines[2]
    assert lines[-1] == "failed: database, migrations"
