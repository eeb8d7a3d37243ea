"""The ``hetuflow`` command line: daily operations on a hetuflow server and jobs kept as code.

Installed by ``pip install 'hetuflow-core[cli]'``. This module only holds the entry point, and imports the
command-line toolkit when it runs, so that ``hetuflow_core`` and its client never need the extra; without it,
``hetuflow`` says how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

# What the ``cli`` extra brings; looked up, not imported, so a missing one is named before any traceback.
_EXTRA_MODULES = ("click", "rich", "yaml", "tomli_w", "httpx")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hetuflow`` with ``argv`` (default: the process's arguments); the exit status."""
    missing = [name for name in _EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"hetuflow: {', '.join(missing)} missing; install the command line with: "
            "pip install 'hetuflow-core[cli]'",
            file=sys.stderr,
        )
        return 1
    from hetuflow_core.cli import _app

    return _app.run(argv)
