"""Version of the hetuflow-core wheel."""

__version__ = "0.1.0"
