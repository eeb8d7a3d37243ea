"""The package's public surface: what ``__all__`` promises exists, and the core never pulls in httpx or the
command line's toolkit (Click, Rich, PyYAML, tomli-w)."""

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
    "hetuflow_core.cli",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert module.__doc__


def test_importing_the_core_does_not_import_httpx_or_the_cli_toolkit() -> None:
    # hetuflow_core.cli itself holds only the entry point, so importing it is cheap too.
    code = (
        "import sys, hetuflow_core, hetuflow_core.protocol, hetuflow_core.schema, hetuflow_core.cli\n"
        "hetuflow_core.schema.json_schema_document()\n"
        "loaded = {'httpx', 'click', 'rich', 'yaml', 'tomli_w'} & set(sys.modules)\n"
        "assert not loaded, f'imported: {loaded}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_command_line_without_its_extra_says_how_to_install_it() -> None:
    # Click and Rich made unfindable, as in a venv with plain hetuflow-core (nox -s build runs the real one).
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name in ('click', 'rich') else real(name, *a)\n"
        "from hetuflow_core.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        "hetuflow: click, rich missing; install the command line with: pip install 'hetuflow-core[cli]'\n"
    )


def test_version_and_typing_marker() -> None:
    assert hetuflow_core.__version__.count(".") == 2
    assert resources.files("hetuflow_core").joinpath("py.typed").is_file()
