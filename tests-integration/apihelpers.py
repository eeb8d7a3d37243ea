"""Assertions shared by the REST API tests."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_BASE = "https://hetuflow.dev/problems/"


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """Check that ``response`` is an RFC 9457 problem of ``status`` and type ``type_``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"] == (type_ if type_ == "about:blank" else PROBLEM_BASE + type_)
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == response.request.url.path
    return problem
