"""Version of the hetuflow-agent wheel."""

__version__ = "0.1.0"
