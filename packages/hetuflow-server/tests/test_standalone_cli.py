"""``hetuflow-server standalone`` refuses to start, with exit status 2 and one line, when the agent package is
missing (installed without the ``standalone`` extra). Nothing is started or written. Bad agent settings, which
need the agent package, are tested in tests-integration/cli/test_standalone.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
