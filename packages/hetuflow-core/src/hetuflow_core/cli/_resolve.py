"""Objects and values named on the command line: a job or flow by id or by name, ``key=value`` parameters.

A job is ``ID``, ``NAME`` (in ``--namespace``, default ``default``) or ``NAMESPACE/NAME``; a flow is ``ID`` or
``NAME``. Names are looked up through the listing endpoints, so no endpoint is needed beyond the API's.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from hetuflow_core.cli._errors import Failure, Usage
from hetuflow_core.cli._output import PAGE_LIMIT, all_pages
from hetuflow_core.client import Client
from hetuflow_core.flow import Flow
from hetuflow_core.job import Job

__all__ = ["as_uuid", "find_flow", "find_job", "parse_parameters", "split_job_name"]

DEFAULT_NAMESPACE = "default"


def as_uuid(text: str) -> UUID | None:
    """``text`` as a UUID, or None when it is not one."""
    try:
        return UUID(text)
    except ValueError:
        return None


def split_job_name(reference: str, namespace: str | None) -> tuple[str, str]:
    """``(namespace, name)`` of ``NAME`` or ``NAMESPACE/NAME``."""
    if "/" in reference:
        space, _, name = reference.partition("/")
        return space, name
    return namespace or DEFAULT_NAMESPACE, reference


def find_job(client: Client, reference: str, namespace: str | None = None) -> Job:
    """The job ``reference`` names (an id, a name or ``namespace/name``); Failure when there is none."""
    job_id = as_uuid(reference)
    if job_id is not None:
        return client.get_job(job_id)
    space, name = split_job_name(reference, namespace)
    pages = all_pages(lambda cursor: client.list_jobs(namespace=space, cursor=cursor, limit=PAGE_LIMIT))
    for job in pages:
        if job.name == name:
            return job
    raise Failure(f"no job named {name!r} in namespace {space!r}")


def find_flow(client: Client, reference: str) -> Flow:
    """The flow ``reference`` names (an id or a name); Failure when there is none."""
    flow_id = as_uuid(reference)
    if flow_id is not None:
        return client.get_flow(flow_id)
    for flow in all_pages(lambda cursor: client.list_flows(cursor=cursor, limit=PAGE_LIMIT)):
        if flow.name == reference:
            return flow
    raise Failure(f"no flow named {reference!r}")


def parse_parameters(pairs: tuple[str, ...], what: str = "-p") -> dict[str, object]:
    """``key=value`` pairs as a parameters object; a value that reads as JSON (``3``, ``true``,
    ``["a"]``) is that JSON value, any other is the text itself."""
    parameters: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise Usage(f"{what} {pair!r}: expected key=value")
        try:
            parameters[key] = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            parameters[key] = raw
    return parameters
