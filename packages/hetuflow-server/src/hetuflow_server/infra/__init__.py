"""Infrastructure of the server: the database pool and executor, SQL, migrations, BMCs and LISTEN/NOTIFY.

Import the pieces as modules (``from hetuflow_server.infra import bmc, db, notify``; ``notify.notify`` sends);
the names below are the ones the application container needs.
"""

from __future__ import annotations

from hetuflow_server.infra.db import ModelManager
from hetuflow_server.infra.migrator import migrate, pending_migrations
from hetuflow_server.infra.notify import (
    AGENT_CMD_CHANNEL,
    SCHEDULE_CHANNEL,
    WORK_CHANNEL,
    AgentCommandNotice,
    Listener,
)

__all__ = [
    "AGENT_CMD_CHANNEL",
    "SCHEDULE_CHANNEL",
    "WORK_CHANNEL",
    "AgentCommandNotice",
    "Listener",
    "ModelManager",
    "migrate",
    "pending_migrations",
]
