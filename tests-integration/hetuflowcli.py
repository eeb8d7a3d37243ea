"""Running the installed ``hetuflow`` executable in tests: the console script of this virtualenv, with the
server and token given through ``HETUFLOW_SERVER``/``HETUFLOW_TOKEN`` and a configuration directory of the
test's own, so neither a developer's login file nor their environment changes what the tests see.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from serverfixtures import clean_env

HETUFLOW = Path(sys.executable).parent / "hetuflow"
RUN_TIMEOUT_SECS = 120.0


@dataclasses.dataclass
class Hetuflow:
    """``hetuflow`` against one server."""

    server: str
    token: str | None
    config_home: Path

    def __call__(
        self, *args: str, token: str | None = None, server: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hetuflow *args``; never raises on a non-zero exit."""
        env = clean_env({"XDG_CONFIG_HOME": str(self.config_home)})
        env.pop("HETUFLOW_SERVER", None)
        env.pop("HETUFLOW_TOKEN", None)
        env["HETUFLOW_SERVER"] = server or self.server
        if token or self.token:
            env["HETUFLOW_TOKEN"] = token or self.token or ""
        return subprocess.run(
            [str(HETUFLOW), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=RUN_TIMEOUT_SECS,
            check=False,
        )

    def ok(self, *args: str, **kwargs: object) -> str:
        """Run ``hetuflow *args``, assert it exited 0, and return its stdout."""
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, f"hetuflow {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result.stdout
