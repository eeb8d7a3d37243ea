"""Check that the versions of the three hetuflow wheels agree with each other and with what was built.

Each package's version lives in its ``__about__.py``. hetuflow-server and hetuflow-agent pin
``hetuflow-core==X``, and X must be core's version, since the three wheels are released together. The same
holds for a sibling named in an extra (the server's ``standalone`` extra pins ``hetuflow-agent==Y``). With
``--dist DIR`` the wheels in DIR are checked too: exactly one per package, named with the version of its
``__about__.py``.

Usage: ``python scripts/check_versions.py [--dist dist]``; exits 1 and lists every mismatch when one is found.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = "hetuflow-core"
PACKAGES = ("hetuflow-core", "hetuflow-server", "hetuflow-agent")
# "hetuflow-core[extra] ==1.2 ; marker": sibling, optional extras, optional version spec, optional marker.
_SIBLING_REQUIREMENT = re.compile(
    r"\s*hetuflow[-_.](?P<name>core|server|agent)\s*(\[[^\]]*\])?\s*(?P<spec>[=<>!~][^;]*?)?\s*(;.*)?"
)


def import_name(package: str) -> str:
    """``hetuflow-core`` → ``hetuflow_core``."""
    return package.replace("-", "_")


def about_version(root: Path, package: str) -> str:
    """Read ``__version__`` from the package's ``__about__.py`` without importing it."""
    path = root / "packages" / package / "src" / import_name(package) / "__about__.py"
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise SystemExit(f'{path}: no `__version__ = "..."` assignment')


def core_requirements(root: Path, package: str) -> list[tuple[str, str]]:
    """``(requirement, version spec)`` for each dependency of ``package`` on hetuflow-core."""
    pyproject = tomllib.loads((root / "packages" / package / "pyproject.toml").read_text(encoding="utf-8"))
    found = []
    for requirement in pyproject["project"].get("dependencies", []):
        match = _SIBLING_REQUIREMENT.fullmatch(requirement)
        if match is not None and match.group("name") == "core":
            found.append((requirement, (match.group("spec") or "").replace(" ", "")))
    return found


def extra_pins(root: Path, package: str) -> list[tuple[str, str, str]]:
    """``(requirement, sibling package, version spec)`` for each sibling named in an extra of ``package``."""
    pyproject = tomllib.loads((root / "packages" / package / "pyproject.toml").read_text(encoding="utf-8"))
    found = []
    for requirements in pyproject["project"].get("optional-dependencies", {}).values():
        for requirement in requirements:
            match = _SIBLING_REQUIREMENT.fullmatch(requirement)
            if match is not None:
                sibling = f"hetuflow-{match.group('name')}"
                found.append((requirement, sibling, (match.group("spec") or "").replace(" ", "")))
    return found


def _pin_problem(package: str, requirement: str, sibling: str, spec: str, version: str) -> str | None:
    if not spec.startswith("==") or spec.startswith("===") or "," in spec or "*" in spec:
        return f"{package}: {requirement!r} is not an exact pin ({sibling}=={version})"
    if not same_version(spec[2:], version):
        return f"{package}: pins {sibling}{spec} but {sibling} is {version}"
    return None


def same_version(a: str, b: str) -> bool:
    """Compare versions as PEP 440 does when `packaging` is importable (wheel names hold the normal form)."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return a == b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def wheel_versions(dist: Path, package: str) -> list[str]:
    """Versions of the wheels of ``package`` found in ``dist`` (wheel names use the underscore form)."""
    return [path.name.split("-")[1] for path in sorted(dist.glob(f"{import_name(package)}-*.whl"))]


def check(root: Path, dist: Path | None = None) -> list[str]:
    """Return the list of problems (empty when every version agrees)."""
    problems = []
    versions = {package: about_version(root, package) for package in PACKAGES}
    for package in PACKAGES:
        if package == CORE:
            continue
        requirements = core_requirements(root, package)
        if not requirements:
            problems.append(f"{package}: does not depend on {CORE}")
        pins = [(requirement, CORE, spec) for requirement, spec in requirements] + extra_pins(root, package)
        for requirement, sibling, spec in pins:
            problem = _pin_problem(package, requirement, sibling, spec, versions[sibling])
            if problem is not None:
                problems.append(problem)
    if dist is not None:
        for package in PACKAGES:
            built = wheel_versions(dist, package)
            if len(built) != 1:
                problems.append(f"{package}: expected one wheel in {dist}, found {len(built)}")
            elif not same_version(built[0], versions[package]):
                problems.append(f"{package}: wheel is {built[0]} but __about__.py says {versions[package]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dist", type=Path, help="also check the wheels built into this directory")
    args = parser.parse_args(argv)
    problems = check(ROOT, args.dist)
    for problem in problems:
        print(f"version mismatch: {problem}", file=sys.stderr)
    if not problems:
        listed = ", ".join(f"{package} {about_version(ROOT, package)}" for package in PACKAGES)
        print(f"versions agree: {listed}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
