"""The server's layering, checked on its source: no package imports one it must stay below.

Every module of ``hetuflow_server`` is parsed (not imported) and each of its imports, including those under
``TYPE_CHECKING`` and inside functions, is an edge from its package to the imported one. The rules below name
the edges that must not exist and why; a failure lists each offending import with its file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import hetuflow_server

SOURCE = Path(hetuflow_server.__file__).parent

# (importing package, imported package, why the edge is forbidden). A package is the first name below
# hetuflow_server: "broker" for hetuflow_server.broker.session, "application" for hetuflow_server.application.
_UPPER = ("application", "cli")
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    *(
        ("broker", upper, "the broker is state and logic; transports and the container sit above it")
        for upper in ("endpoint", *_UPPER)
    ),
    ("broker", "scheduler", "the broker serves every server; the leader's loops are not its business"),
    *(
        ("service", upper, "services run inside transactions for every caller; callers sit above them")
        for upper in ("scheduler", "broker", "endpoint", "auth", "metrics", "retention", *_UPPER)
    ),
    *(
        ("infra", upper, "infra is the database layer: everything else is built on it")
        for upper in ("service", "broker", "scheduler", "endpoint", "auth", "triggers", "metrics", *_UPPER)
    ),
    *(
        ("triggers", other, "schedule math is pure: no database, no IO, no callers")
        for other in ("infra", "service", "broker", "scheduler", "endpoint", "auth", "metrics", *_UPPER)
    ),
    *(
        ("scheduler", upper, "the leader's loops use services and infra, not the transports or the agents")
        for upper in ("endpoint", "broker", *_UPPER)
    ),
    *(("endpoint", upper, "endpoints reach the container through app.state") for upper in _UPPER),
    ("endpoint", "scheduler", "endpoints act through services; the leader's loops run on their own"),
    *(
        ("auth", upper, "auth is used by the endpoints, not the other way round")
        for upper in ("endpoint", "broker", "scheduler", *_UPPER)
    ),
    *(
        (lower, "notifier", "the notifier delivers what the database queued; nothing calls into it")
        for lower in ("infra", "service", "endpoint", "broker", "scheduler")
    ),
    *(
        ("notifier", upper, "the notifier reads the outbox and the config, not the transports or the leader")
        for upper in ("endpoint", "broker", "scheduler", *_UPPER)
    ),
)

# Third-party modules only some packages may import: the exception boundary and the driver stay in one place.
ONLY_IN: dict[str, tuple[str, ...]] = {
    "psycopg": ("infra",),
    # Outgoing HTTP is the notifier's webhooks; nothing else of the server calls out.
    "httpx": ("notifier",),
    # The server never needs the agent, except ``standalone``, which runs one in the same process.
    "hetuflow_agent": ("cli",),
}


class Import(NamedTuple):
    """One import statement's target, where it is written."""

    module: str
    package: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = ["hetuflow_server", *path.relative_to(SOURCE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports() -> Iterator[Import]:
    """Every import of every module of the server, resolved to absolute module names."""
    for path in sorted(SOURCE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, path.name == "__init__.py", node)
                # "from pkg import mod" imports pkg.mod when mod is a module: count both names.
                targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                yield Import(module, _package(module), target, node.lineno)


def _where(item: Import) -> str:
    return f"{item.module} (line {item.line}) imports {item.target}"


def forbidden_edges(found: Iterable[Import]) -> list[str]:
    """One line per import that breaks a rule of `FORBIDDEN` or `ONLY_IN`, naming the edge and why."""
    # Keyed by statement and edge: "from a.b import c, d" is reported once, as its first name.
    problems: dict[tuple[str, int, str], str] = {}
    for item in found:
        if item.target.startswith("hetuflow_server."):
            imported = _package(item.target)
            for source, target, why in FORBIDDEN:
                if item.package == source and imported == target:
                    edge = f"{source} -> {target}"
                    problems.setdefault((item.module, item.line, edge), f"{edge}: {_where(item)} ({why})")
        top = item.target.split(".")[0]
        allowed = ONLY_IN.get(top)
        if allowed is not None and item.package not in allowed:
            edge = f"{item.package} -> {top}"
            who = ", ".join(allowed) or "nothing"
            problems.setdefault((item.module, item.line, edge), f"{edge}: {_where(item)} (only {who} may)")
    return sorted(problems.values())


def test_the_walk_sees_the_whole_package() -> None:
    found = list(imports())
    modules = {item.module for item in found}
    assert {"hetuflow_server.application", "hetuflow_server.broker", "hetuflow_server.infra.db"} <= modules
    # "from package import module" counts the module it names.
    assert any(item.target == "hetuflow_server.infra.bmc" for item in found)


def test_no_module_imports_across_a_forbidden_edge() -> None:
    problems = forbidden_edges(imports())
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def test_a_forbidden_edge_is_reported_with_the_import_and_the_reason() -> None:
    tree = ast.parse("from ..endpoint.api import problems\nimport psycopg\n")
    module = "hetuflow_server.broker.session"
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            found.append(Import(module, "broker", _resolve(module, False, node), node.lineno))
        elif isinstance(node, ast.Import):
            found.append(Import(module, "broker", node.names[0].name, node.lineno))
    problems = forbidden_edges(found)
    assert len(problems) == 2
    assert problems[0].startswith(
        "broker -> endpoint: hetuflow_server.broker.session (line 1) imports hetuflow_server.endpoint.api ("
    )
    assert problems[1] == (
        "broker -> psycopg: hetuflow_server.broker.session (line 2) imports psycopg (only infra may)"
    )
