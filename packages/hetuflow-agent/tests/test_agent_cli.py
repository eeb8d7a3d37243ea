"""The ``hetuflow-agent`` command: usage errors, ``--help``, ``check`` against a real server."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from protocol_server import AGENT_ID, TOKEN, ProtocolServer, free_port, running_server

from hetuflow_agent.cli import main

SUBPROCESS_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HETUFLOW_AGENT__")}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HETUFLOW_AGENT__"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main`` configures the root logger (its job in a real process); undo it for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def server() -> AsyncIterator[ProtocolServer]:
    async with running_server() as srv:
        yield srv


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: {run,check}"),
        (["serve"], "invalid choice: 'serve'"),
        (["run", "--capacity", "x"], "argument --capacity: invalid int value: 'x'"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--server", "ws://a", "--token", "t", "--capacity", "0"], "capacity: Expected `int` >= 1"),
        (["run", "--token", "t"], "servers: at least one server URL is required"),
        (["run", "--server", "ws://a"], "token: an agent token is required"),
        (["run", "--server", "mailto:x", "--token", "t"], "servers: 'mailto:x' is not a ws://"),
        (
            ["check", "--server", "ws://a", "--token", "t", "--labels", "gpu"],
            "argument --labels: expected k=v",
        ),
        (
            ["run", "--server", "ws://a", "--token", "t", "--log-level", "loud"],
            "argument --log-level: invalid",
        ),
        (
            ["run", "--server", "ws://a", "--token", "t", "--config", "/no/such.toml"],
            "cannot read config file",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("hetuflow-agent: error: ")
    assert message in err


def test_bad_env_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HETUFLOW_AGENT__CAPACITY", "lots")
    with pytest.raises(SystemExit) as info:
        main(["check", "--server", "ws://a", "--token", "t"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "hetuflow-agent: error: capacity: Expected `int`, got `str` (from HETUFLOW_AGENT__CAPACITY)\n"
    )


def test_help_names_every_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "SERVERS",
        "TOKEN",
        "TOKEN_FILE",
        "ID",
        "LABELS",
        "CAPACITY",
        "WORKDIR",
        "DRAIN_TIMEOUT_SECS",
    ):
        assert f"HETUFLOW_AGENT__{name} " in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "[env HETUFLOW_AGENT__CAPACITY]" in out
    assert "HETUFLOW_AGENT__KILL_GRACE_SECS" in out  # settings without a flag are listed too


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hetuflow_agent",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=SUBPROCESS_ENV | (env or {}),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_succeeds_without_registering(server: ProtocolServer) -> None:
    code, out, _ = await _cli("check", "--server", server.url, "--token", TOKEN, "--id", AGENT_ID)
    assert code == 0
    assert out == f"ok   {server.url}/api/v1/agents/ws: reachable, token accepted for agent '{AGENT_ID}'\n"
    conn = await server.connection(0)
    await asyncio.wait_for(conn.closed.wait(), 10)
    assert conn.frames == []  # a probe: nothing sent, a running agent with this id is undisturbed
    assert conn.close_code == 1000


async def test_check_reports_each_failure_and_exits_1(server: ProtocolServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    dead = f"ws://127.0.0.1:{free_port()}"
    code, out, _ = await _cli(
        "check", "--server", server.url, "--server", dead, "--token-file", str(token_file), "--id", AGENT_ID
    )
    assert code == 1
    first, second = out.splitlines()
    assert first.startswith(f"FAIL {server.url}/api/v1/agents/ws answered HTTP 401 (token missing, invalid")
    assert second == f"FAIL {dead}/api/v1/agents/ws: connection refused by 127.0.0.1:{dead.rsplit(':', 1)[1]}"


async def test_check_reports_a_token_for_another_agent_as_403(server: ProtocolServer) -> None:
    code, out, _ = await _cli(
        "check", "--server", server.url, "--id", "other", env={"HETUFLOW_AGENT__TOKEN": TOKEN}
    )
    assert code == 1
    assert "answered HTTP 403 (token not valid for this agent id)" in out


async def test_a_token_on_the_command_line_is_warned_about(server: ProtocolServer) -> None:
    _, _, err = await _cli("check", "--server", server.url, "--token", TOKEN, "--id", AGENT_ID)
    assert "--token-file or HETUFLOW_AGENT__TOKEN" in err
    _, _, err = await _cli(
        "check", "--server", server.url, "--id", AGENT_ID, env={"HETUFLOW_AGENT__TOKEN": TOKEN}
    )
    assert "--token-file" not in err


async def test_check_reports_dns_failures() -> None:
    code, out, _ = await _cli("check", "--server", "ws://no-such-host.invalid", "--token", TOKEN)
    assert code == 1
    assert "cannot resolve host 'no-such-host.invalid'" in out


def test_an_unusable_workdir_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["run", "--server", "ws://127.0.0.1:1", "--token", "t", "--workdir", str(blocker / "work")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"hetuflow-agent: error: workdir: cannot prepare {blocker / 'work'}: Not a directory"
    )
