"""``hetuflow-server standalone`` refuses to start, with exit status 2 and one line, when it cannot run its
local agent: the agent package is missing, or a setting of the agent is bad. Nothing is started or written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A None entry in sys.modules makes `import hetuflow_agent` fail as it does when the package is not installed.
_HIDE_AGENT = (
    "import sys; sys.modules['hetuflow_agent'] = None; "
    "from hetuflow_server.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HETUFLOW_")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_without_the_agent_package_exit_2_and_say_which_extra(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = _run([sys.executable, "-c", _HIDE_AGENT, "standalone", "--data-dir", str(data_dir)])
    assert result.returncode == 2
    assert result.stderr == (
        "hetuflow-server standalone: needs the hetuflow-agent package; "
        "install it with: pip install 'hetuflow-server[standalone]'\n"
    )
    assert result.stdout == ""
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--capacity", "lots"], "hetuflow-server standalone: agent capacity: Expected `int`, got `str`"),
        (["--capacity", "0"], "hetuflow-server standalone: agent capacity: Expected `int` >= 1"),
        (["--labels", "gpu"], "hetuflow-server standalone: agent labels: expected k=v pairs"),
        (["--agent-id", "no spaces"], "hetuflow-server standalone: agent id: Expected `str` matching"),
    ],
)
def test_bad_agent_settings_exit_2_before_anything_starts(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    pytest.importorskip("hetuflow_agent", reason="the standalone extra is not installed")
    data_dir = tmp_path / "data"
    result = _run(
        [sys.executable, "-m", "hetuflow_server", "standalone", "--data-dir", str(data_dir), *flags]
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not data_dir.exists()  # no key, no embedded PostgreSQL, no token files
