"""``python -m hetuflow_agent``: the same command as the ``hetuflow-agent`` console script."""

from __future__ import annotations

from hetuflow_agent.cli import main

raise SystemExit(main())
