"""Reading apply files (TOML, or YAML by extension) into `ApplyFile`s, with every problem reported as
``FILE:LINE: FIELD: reason`` before anything is sent to a server.

Neither ``tomllib`` nor PyYAML's loader keeps positions in the data, so each file also gets a map from field
paths (``("jobs", 0, "config", "timeout_secs")``) to line numbers: for YAML from the composed node tree, for
TOML from a scan of its table headers and keys. A path with no line of its own (a value inside an inline
table) is reported at the nearest enclosing field that has one.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from hetuflow_core.cli._spec import ApplyFile, config_problems, flow_problems, schedule_problems

__all__ = ["FieldPath", "LoadedFile", "Source", "SpecError", "load_file", "toml_lines", "yaml_lines"]

FieldPath = tuple[str | int, ...]

TOML_SUFFIXES: Final = frozenset({".toml"})
YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})

# msgspec ends a validation message with "- at `$.a[0].b`" (or "- at `key` in `$.a`" for a mapping key).
_AT: Final = re.compile(r"\s*- at (?:`key` in )?`\$(?P<path>[^`]*)`$")
_UNKNOWN: Final = re.compile(r"unknown field `(?P<name>[^`]+)`")
_STEP: Final = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_KEY_PART: Final = r"(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')"
_TOML_HEADER: Final = re.compile(rf"^\s*(\[\[?)\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY: Final = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


class SpecError(Exception):
    """Apply files that cannot be applied; ``problems`` are the lines to show, one per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class Source:
    """A file and the line of each field path in it."""

    path: Path
    lines: dict[FieldPath, int]

    def line_of(self, field: FieldPath) -> int | None:
        """The line of ``field``, or of the closest enclosing field with one."""
        for end in range(len(field), 0, -1):
            line = self.lines.get(field[:end])
            if line is not None:
                return line
        return None

    def where(self, field: FieldPath, message: str) -> str:
        """``FILE:LINE: FIELD: message``."""
        line = self.line_of(field)
        at = f"{self.path}:{line}" if line is not None else str(self.path)
        return f"{at}: {dotted(field)}: {message}" if field else f"{at}: {message}"


@dataclasses.dataclass(frozen=True)
class LoadedFile:
    """A file that parsed and passed every check that needs no server."""

    source: Source
    spec: ApplyFile


def dotted(field: FieldPath) -> str:
    """``jobs[0].config.timeout_secs``."""
    text = ""
    for part in field:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_path(text: str) -> FieldPath:
    """``.jobs[0].config`` (a msgspec path without its ``$``) as a field path."""
    return tuple(name if name else int(index) for name, index in _STEP.findall(text))


def load_file(path: Path) -> LoadedFile:
    """Parse, validate and check one file; `SpecError` listing every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    data, lines = _parse(path, text)
    source = Source(path, lines)
    if not isinstance(data, dict):
        raise SpecError([source.where((), "expected a table of `namespace`, `jobs` and `flows`")])
    try:
        spec = msgspec.convert(data, ApplyFile)
    except msgspec.ValidationError as exc:
        raise SpecError([_validation_problem(source, str(exc))]) from None
    problems = list(_check(source, spec))
    if problems:
        raise SpecError(problems)
    return LoadedFile(source, spec)


def _parse(path: Path, text: str) -> tuple[Any, dict[FieldPath, int]]:
    suffix = path.suffix.lower()
    if suffix in TOML_SUFFIXES:
        try:
            return tomllib.loads(text), toml_lines(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError([f"{path}: not valid TOML: {exc}"]) from None
    if suffix in YAML_SUFFIXES:
        try:
            return yaml.safe_load(text) or {}, yaml_lines(text)
        except yaml.MarkedYAMLError as exc:
            line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise SpecError([f"{path}{line}: not valid YAML: {exc.problem or exc}"]) from None
        except yaml.YAMLError as exc:
            raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
    raise SpecError([f"{path}: unknown format; name the file *.toml, *.yaml or *.yml"])


def _validation_problem(source: Source, message: str) -> str:
    found = _AT.search(message)
    field = parse_path(found.group("path")) if found else ()
    reason = message[: found.start()] if found else message
    unknown = _UNKNOWN.search(reason)
    if unknown is not None:
        field = (*field, unknown.group("name"))
        reason = "unknown field"
    return source.where(field, reason)


def _check(source: Source, spec: ApplyFile) -> Iterable[str]:
    """Problems that the types cannot state: kinds' fields, commands, flows' DAGs, duplicate names."""
    first_job: dict[str, int] = {}
    for i, job in enumerate(spec.jobs):
        if job.name in first_job:
            yield source.where(
                ("jobs", i, "name"), f"job {job.name!r} is declared twice (also jobs[{first_job[job.name]}])"
            )
        first_job.setdefault(job.name, i)
        for field, reason in config_problems(job.config):
            yield source.where(("jobs", i, "config", *field.split(".")), reason)
        for j, schedule in enumerate(job.schedules or ()):
            for field, reason in schedule_problems(schedule):
                yield source.where(("jobs", i, "schedules", j, field), reason)
    first_flow: dict[str, int] = {}
    for i, flow in enumerate(spec.flows):
        if flow.name in first_flow:
            yield source.where(("flows", i, "name"), f"flow {flow.name!r} is declared twice")
        first_flow.setdefault(flow.name, i)
        for field, reason in flow_problems(flow):
            yield source.where(("flows", i, *parse_path("." + field)), reason)


def yaml_lines(text: str) -> dict[FieldPath, int]:
    """Line of every key and list item of a YAML document (1-based)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[FieldPath, int] = {}

    def walk(node: yaml.Node, field: FieldPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*field, str(key.value))
                lines.setdefault(child, key.start_mark.line + 1)
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*field, index)
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child)

    if root is not None:
        walk(root, ())
    return lines


def _key_parts(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(_KEY_PART, text)]


def toml_lines(text: str) -> dict[FieldPath, int]:
    """Line of every table header and key of a TOML document (1-based), arrays of tables indexed.

    A scan, not a parser: it only has to be right for documents ``tomllib`` accepted, and it skips the
    inside of multi-line strings.
    """
    lines: dict[FieldPath, int] = {}
    counts: dict[FieldPath, int] = {}  # array-of-tables path -> elements so far
    table: FieldPath = ()
    open_quote: str | None = None

    def resolve(keys: list[str]) -> FieldPath:
        """Keys of a header as a path, each array of tables standing for its latest element."""
        field: FieldPath = ()
        for key in keys:
            field = (*field, key)
            if field in counts:
                field = (*field, counts[field] - 1)
        return field

    for number, line in enumerate(text.splitlines(), 1):
        if open_quote is not None:
            if open_quote in line:
                open_quote = None
            continue
        header = _TOML_HEADER.match(line)
        if header is not None:
            keys = _key_parts(header.group(2))
            if header.group(1) == "[[":
                array = (*resolve(keys[:-1]), keys[-1])
                counts[array] = counts.get(array, 0) + 1
                table = (*array, counts[array] - 1)
            else:
                table = resolve(keys)
            lines.setdefault(table, number)
            continue
        key = _TOML_KEY.match(line)
        if key is None:
            continue
        field = table
        for part in _key_parts(key.group(1)):
            field = (*field, part)
            lines.setdefault(field, number)
        rest = line[key.end() :]
        for quote in ('"""', "'''"):
            if rest.count(quote) == 1:
                open_quote = quote
    return lines
