"""Database passwords never reach what ``serve`` logs or ``check`` prints, whatever form the URL takes.

The module's PostgreSQL trusts local connections, so a password given in the URL is sent and ignored: the
server and the CLI really run with it, and their output is searched for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from serverfixtures import run_cli, start_server

SECRET = "SECRETX"


def _with_password(url: str, form: str) -> str:
    if form == "query":
        return f"{url}{'&' if '?' in url else '?'}password={SECRET}"
    if form == "userinfo":
        scheme, _, rest = url.partition("://")
        userinfo, at, hosts = rest.partition("@")
        assert at, url
        return f"{scheme}://{userinfo.partition(':')[0]}:{SECRET}@{hosts}"
    params = conninfo_to_dict(url)
    params.pop("password", None)
    conninfo = make_conninfo(**params)
    if form == "conninfo":
        return f"{conninfo} password={SECRET}"
    return f"{conninfo} password = '{SECRET} with blanks'"  # form == "quoted"


FORMS = ["query", "userinfo", "conninfo", "quoted"]


@pytest.mark.parametrize("form", FORMS)
def test_check_never_prints_the_password(migrated_database_url: str, tmp_path: Path, form: str) -> None:
    url = _with_password(migrated_database_url, form)
    result = run_cli("check", "--data-dir", str(tmp_path / "data"), "--database-url", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "***" in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("form", ["query", "quoted"])
def test_serve_never_logs_the_password(migrated_database_url: str, tmp_path: Path, form: str) -> None:
    url = _with_password(migrated_database_url, form)
    server = start_server(tmp_path / "data", database_url=url, env={"HETUFLOW_LOG__LEVEL": "debug"})
    try:
        log = server.log()
    finally:
        status = server.terminate()
    assert status == 0, server.log()
    assert "using database" in log
    assert SECRET not in server.log()
