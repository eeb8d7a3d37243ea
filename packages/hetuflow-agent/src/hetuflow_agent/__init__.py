"""hetuflow-agent: the worker of the hetuflow distributed task scheduler.

An agent keeps a WebSocket session with one of the configured servers, registers with its labels,
capacity and what it is still running, and runs the tasks the servers dispatch (bash, python, uv, node,
npx, cargo, java) as process groups under limits, reporting status, logs and metrics back. Start it with
the ``hetuflow-agent`` command, or embed it::

    config = load_config(flags={"servers": ("--server", "ws://server:8080"), "token": ("--token", tok)})
    await AgentApplication(config).run()
"""

from hetuflow_agent.__about__ import __version__
from hetuflow_agent.application import AgentApplication
from hetuflow_agent.config import AgentConfig, load_config
from hetuflow_agent.errors import (
    AgentError,
    ConfigError,
    ConnectFailed,
    ConnectionClosed,
    ConnectionLost,
    HandshakeRejected,
    MessageTooLarge,
    RegistrationRejected,
    WebSocketError,
)

__all__ = [
    "AgentApplication",
    "AgentConfig",
    "AgentError",
    "ConfigError",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionLost",
    "HandshakeRejected",
    "MessageTooLarge",
    "RegistrationRejected",
    "WebSocketError",
    "__version__",
    "load_config",
]
