"""``python -m hetuflow_core.cli``: the same command line as ``hetuflow``."""

from __future__ import annotations

import sys

from hetuflow_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
