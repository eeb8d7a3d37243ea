"""``python -m hetuflow_server``: the same command line as ``hetuflow-server``."""

from __future__ import annotations

import sys

from hetuflow_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
