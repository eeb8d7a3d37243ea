"""Version of the hetuflow-server wheel."""

__version__ = "0.1.0"
