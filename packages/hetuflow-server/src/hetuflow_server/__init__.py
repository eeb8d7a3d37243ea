"""hetuflow-server: the coordinator of hetuflow — REST API, agent gateway, scheduler and dispatcher.

Run it with the ``hetuflow-server`` command (``serve``, ``migrate``, ``keygen``, ``token``, ``check``). To
embed it in another ASGI setup, build the configuration with `load_config` and the app with `create_app`; the
`ServerApplication` container on ``app.state.hetuflow`` owns the database, services, tokens and loops.
"""

from hetuflow_server.__about__ import __version__
from hetuflow_server.application import ServerApplication, build_app, create_app
from hetuflow_server.config import ConfigError, ServerConfig, load_config
from hetuflow_server.errors import HetuflowError

__all__ = [
    "ConfigError",
    "HetuflowError",
    "ServerApplication",
    "ServerConfig",
    "__version__",
    "build_app",
    "create_app",
    "load_config",
]
