"""The package's public surface: what ``__all__`` promises exists, and the core never pulls in httpx."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import resources

import pytest

import hetuflow_core

MODULES = [
    "hetuflow_core",
    "hetuflow_core.protocol",
    "hetuflow_core.schema",
    "hetuflow_core.client",
    "hetuflow_core.settings",
    "hetuflow_core.logfmt",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert module.__doc__


def test_importing_the_core_does_not_import_httpx() -> None:
    code = (
        "import sys, hetuflow_core, hetuflow_core.protocol, hetuflow_core.schema\n"
        "hetuflow_core.schema.json_schema_document()\n"
        "assert 'httpx' not in sys.modules, 'httpx imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_version_and_typing_marker() -> None:
    assert hetuflow_core.__version__.count(".") == 2
    assert resources.files("hetuflow_core").joinpath("py.typed").is_file()
