"""Developer and CI tasks of the hetuflow monorepo: lint, tests, build, bench, docs, demo.

Each package is tested alone in its own virtualenv, installed from its directory as a normal (non-editable)
install, so a missing dependency or an import of a sibling it must not know about fails here and not on a
user's machine. Virtualenvs are made with uv when nox finds it, with virtualenv otherwise.

    nox -s lint     # ruff check, ruff format --check, mypy --strict on each package's src/
    nox -s tests    # tests-core, tests-agent, tests-server, then tests-integration
    nox -s build    # three wheels into dist/, each installed alone in a fresh venv and imported
    nox -s bench    # every bench/*_bench.py, peers_bench.py (hetuflow against Celery, Procrastinate) last
    nox -s soak     # the chaos soak: minutes of work while servers, agents and PostgreSQL are killed
    nox -s docs     # relative links of README.md and docs/ point to existing files

Arguments after ``--`` go to pytest (tests sessions) or to each benchmark (bench).
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from urllib.parse import unquote

import nox
from packaging.version import Version

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
PYTHON = "3.11"
PACKAGES = ("hetuflow-core", "hetuflow-agent", "hetuflow-server")
CLIS = {"hetuflow-server": "hetuflow-server", "hetuflow-agent": "hetuflow-agent"}
# The environment the Postgres test plugin reads (tests-integration/pgfixture.py).
PG_ENV = ("HETUFLOW_REQUIRE_PG", "HETUFLOW_TEST_DATABASE_URL")
# uv is a test dependency too: the agent runs `uv` command kinds for real, so it must be on the venv PATH.
TEST_DEPS = ("pytest", "pytest-asyncio", "hypothesis", "httpx", "jsonschema-rs", "uv")
# aiosmtpd: the local SMTP sink that email notifications are delivered to.
INTEGRATION_DEPS = ("testcontainers[postgres]", "schemathesis", "websockets", "pytest-timeout", "aiosmtpd")
# A hung integration test fails on its own after this long, instead of holding CI until it is killed.
INTEGRATION_TEST_TIMEOUT_SECS = 600
LINT_DEPS = ("ruff", "mypy", "types-psutil", "types-PyYAML")


def _pkg(name: str, extras: str = "") -> str:
    """An installable requirement for a package of this repository: its directory, with extras."""
    return f"{ROOT / 'packages' / name}{f'[{extras}]' if extras else ''}"


CORE = _pkg("hetuflow-core")
CORE_CLIENT = _pkg("hetuflow-core", "client")
# The `hetuflow` command line: its tests (core and integration) and mypy need the extra installed. That plain
# hetuflow-core never imports it is proven by a core test (a subprocess checks sys.modules) and by `build`,
# which installs the core wheel without extras.
CORE_CLI = _pkg("hetuflow-core", "client,cli")
AGENT = _pkg("hetuflow-agent")
SERVER_EMBEDDED = _pkg("hetuflow-server", "embedded")
ALL_PACKAGES = (CORE_CLI, AGENT, SERVER_EMBEDDED)
# What each package's own test venv holds: the package with its extras, and only the siblings it depends on.
PACKAGE_TEST_INSTALLS = {
    "core": (CORE_CLI,),
    "agent": (CORE, AGENT),
    "server": (CORE, SERVER_EMBEDDED),
}


def _pg_env() -> dict[str, str]:
    """Hand the Postgres settings of the caller to the tests explicitly."""
    return {name: os.environ[name] for name in PG_ENV if name in os.environ}


def _pytest(session: nox.Session, path: str, *options: str, allow_no_tests: bool) -> None:
    """Run pytest on ``path`` with the root configuration (strict markers, warnings as errors)."""
    # Exit code 5 means "no tests collected": fine for a package whose tests are not written yet, or when
    # posargs select nothing in this directory; anywhere else an empty run is a broken configuration.
    success_codes = [0, 5] if allow_no_tests or session.posargs else [0]
    session.run(
        "pytest",
        "-c",
        "pyproject.toml",
        path,
        *options,
        *session.posargs,
        env=_pg_env(),
        success_codes=success_codes,
    )


def _has_tests(directory: Path) -> bool:
    return any(directory.rglob("test_*.py")) or any(directory.rglob("*_test.py"))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check on the repository, mypy --strict on each package's src/."""
    editable = [arg for requirement in ALL_PACKAGES for arg in ("-e", requirement)]
    session.install(*LINT_DEPS, *editable)
    # Run every check even when one fails, so that one run reports all of them.
    checks = [("ruff", "check", "."), ("ruff", "format", "--check", ".")]
    mypy = ("mypy", "--config-file", "pyproject.toml", "--strict")
    checks += [(*mypy, f"packages/{name}/src") for name in PACKAGES]
    failed = []
    for check in checks:
        try:
            session.run(*check)
        except nox.command.CommandFailed:
            failed.append(" ".join(check))
    if failed:
        session.error("failed: " + "; ".join(failed))


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run all tests: each package alone in its own venv, then tests-integration against real PostgreSQL."""
    for name in ("tests-core", "tests-agent", "tests-server", "tests-integration"):
        session.notify(name, session.posargs)


def _package_tests(session: nox.Session, short: str) -> None:
    directory = ROOT / "packages" / f"hetuflow-{short}" / "tests"
    if not directory.is_dir():
        session.skip(f"{directory.relative_to(ROOT)} does not exist")
    session.install(*PACKAGE_TEST_INSTALLS[short], *TEST_DEPS)
    has_tests = _has_tests(directory)
    if not has_tests:
        session.log(f"{directory.relative_to(ROOT)} has no tests yet")
    _pytest(session, str(directory.relative_to(ROOT)), allow_no_tests=not has_tests)


@nox.session(name="tests-core", python=PYTHON)
def tests_core(session: nox.Session) -> None:
    """Tests of hetuflow-core[client,cli], installed alone."""
    _package_tests(session, "core")


@nox.session(name="tests-agent", python=PYTHON)
def tests_agent(session: nox.Session) -> None:
    """Tests of hetuflow-agent, installed with hetuflow-core only."""
    _package_tests(session, "agent")


@nox.session(name="tests-server", python=PYTHON)
def tests_server(session: nox.Session) -> None:
    """Tests of hetuflow-server[embedded], installed with hetuflow-core only."""
    _package_tests(session, "server")


@nox.session(name="tests-integration", python=PYTHON)
def tests_integration(session: nox.Session) -> None:
    """Integration tests on real PostgreSQL (HETUFLOW_TEST_DATABASE_URL, testcontainers or embedded)."""
    session.install(*ALL_PACKAGES, *INTEGRATION_DEPS, *TEST_DEPS)
    _pytest(session, "tests-integration", f"--timeout={INTEGRATION_TEST_TIMEOUT_SECS}", allow_no_tests=False)


def _wheel(dist: Path, name: str) -> Path:
    wheels = sorted(dist.glob(f"{name.replace('-', '_')}-*.whl"))
    if len(wheels) != 1:
        raise ValueError(f"expected one {name} wheel in {dist}, found {len(wheels)}")
    return wheels[0]


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the three wheels into dist/, check versions, install and import each alone in a fresh venv."""
    session.install("uv")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for name in PACKAGES:
        session.run("uv", "build", "--wheel", "--out-dir", str(dist), str(ROOT / "packages" / name))
    session.run("python", "scripts/check_versions.py", "--dist", str(dist))

    core_wheel = _wheel(dist, "hetuflow-core")
    base_python = session.run("python", "-c", "import sys; print(sys.executable)", silent=True)
    assert isinstance(base_python, str)
    for name in PACKAGES:
        wheel = _wheel(dist, name)
        module = name.replace("-", "_")
        venv = Path(session.create_tmp()) / f"wheel-{name}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run("uv", "venv", "--quiet", "--python", base_python.strip(), str(venv))
        python = str(venv / "bin" / "python")
        # This wheel, its dependencies from the index, and the core wheel just built (never core from PyPI).
        wheels = [str(wheel)] if wheel == core_wheel else [str(core_wheel), str(wheel)]
        session.run("uv", "pip", "install", "--quiet", "--python", python, *wheels)
        printed = session.run(
            python, "-c", f"import {module}; print({module}.__version__)", silent=True, external=True
        )
        assert isinstance(printed, str)
        built_version = wheel.name.split("-")[1]
        if Version(printed.strip()) != Version(built_version):
            session.error(f"{name}: imports as {printed.strip()} but the wheel is {built_version}")
        session.log(f"{name} {printed.strip()}: wheel installs alone and imports")

        if wheel == core_wheel:
            # `hetuflow` is installed with the core; without the `cli` extra it says how to get it (exit 1).
            hetuflow = str(venv / "bin" / "hetuflow")
            session.run(hetuflow, "--help", external=True, success_codes=[1])
            session.run("uv", "pip", "install", "--quiet", "--python", python, f"{wheel}[cli]")
            session.run(hetuflow, "--help", external=True)

        if name in CLIS:
            with zipfile.ZipFile(wheel) as archive:
                has_cli = bool({f"{module}/cli.py", f"{module}/cli/__init__.py"} & set(archive.namelist()))
            if has_cli:
                session.run(str(venv / "bin" / CLIS[name]), "--help", external=True)
            else:
                session.log(f"{name}: no {module}.cli module yet, skipping `{CLIS[name]} --help`")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The chaos soak (not part of ``tests``): two servers, three agents and a steady mix of work while
    servers, agents and PostgreSQL are killed and restarted at random; an invariant check at the end.
    ``-- --minutes N`` (default 5), ``-- --seed S`` to replay a fault sequence."""
    session.install(*ALL_PACKAGES, *INTEGRATION_DEPS, *TEST_DEPS)
    session.run(
        "python",
        "tests-integration/soak.py",
        *session.posargs,
        env={**_pg_env(), "PYTHONPATH": "tests-integration"},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every bench/*_bench.py with all three packages and bench/requirements.txt installed.

    peers_bench.py runs last, so its ``SUMMARY …`` line is the last line of the session. Arguments after
    ``--`` go to every benchmark (each ignores the ones it does not know): ``--quick`` makes all of them
    short (under 4 minutes together), ``--profile DIR`` writes py-spy profiles of the server and the agent.
    """
    scripts = sorted(
        (ROOT / "bench").glob("*_bench.py"), key=lambda path: (path.name == "peers_bench.py", path.name)
    )
    if not scripts:
        session.skip("no bench/*_bench.py yet")
    session.install(*ALL_PACKAGES)
    requirements = ROOT / "bench" / "requirements.txt"
    if requirements.is_file():
        session.install("-r", str(requirements))
    for script in scripts:
        session.run("python", str(script.relative_to(ROOT)), *session.posargs, env=_pg_env())


_FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*)?\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def broken_relative_links(files: list[Path]) -> list[str]:
    """Return ``file: target`` for every relative link in ``files`` whose target does not exist.

    Absolute URLs (any scheme) and pure ``#anchors`` are not checked; code blocks and spans are ignored.
    """
    broken = []
    for path in files:
        text = _INLINE_CODE.sub("", _FENCED_CODE.sub("", path.read_text(encoding="utf-8")))
        targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)
        for target in targets:
            if _SCHEME.match(target) or target.startswith("#"):
                continue
            relative = unquote(target.split("#", 1)[0].split("?", 1)[0])
            resolved = ROOT / relative.lstrip("/") if relative.startswith("/") else path.parent / relative
            if not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    return broken


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Check that relative links in README.md and docs/**/*.md point to existing files.

    It will also build the documentation site once docs/ has content to build.
    """
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files = [path for path in files if path.is_file()]
    broken = broken_relative_links(files)
    for link in broken:
        session.warn(f"broken link: {link}")
    if broken:
        session.error(f"{len(broken)} broken relative link(s)")
    session.log(f"relative links of {len(files)} Markdown file(s) point to existing files")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """hetuflow on this machine in one go: ``hetuflow-server standalone`` (server, embedded PostgreSQL and a
    local agent), then through ``hetuflow_core.client`` a job on a cron schedule every 2 s; waits until three
    runs succeeded, prints them with a few metrics, and stops the server with SIGTERM (it must exit 0).

    The session's venv holds hetuflow-server[embedded,standalone], hetuflow-agent and hetuflow-core[client]
    installed from this repository. Arguments after ``--`` go to scripts/demo.py: ``--runs N``,
    ``--every SECS``, ``--timeout SECS``, ``--keep`` (keep the data directory).
    """
    session.install(CORE_CLIENT, AGENT, _pkg("hetuflow-server", "embedded,standalone"))
    session.run("python", "scripts/demo.py", *session.posargs)
