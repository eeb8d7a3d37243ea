"""JobBmc: statements on ``sched_job`` (soft-deleted rows are never returned)."""

from __future__ import annotations

from uuid import UUID

from hetuflow_core.enums import JobStatus
from hetuflow_core.job import Job, JobConfig
from hetuflow_server.errors import NotFound
from hetuflow_server.infra import db
from hetuflow_server.infra.bmc._rows import jsonb, many, required
from hetuflow_server.infra.sql import query

__all__ = ["JobBmc"]

_INSERT = query("insert_job")
_GET = query("get_job")
_LOCK = query("lock_job")
_LIST = query("list_jobs")
_UPDATE = query("update_job")
_SOFT_DELETE = query("soft_delete_job")


class JobBmc:
    """Jobs: what to run."""

    @staticmethod
    async def insert(
        conn: db.Connection,
        *,
        job_id: UUID,
        namespace: str,
        name: str,
        description: str,
        status: JobStatus,
        config: JobConfig,
        by: str | None,
    ) -> Job:
        """Store a new job; a live job with the same namespace and name is a Conflict."""
        row = await db.fetch_one(
            conn,
            _INSERT,
            {
                "id": job_id,
                "namespace": namespace,
                "name": name,
                "description": description,
                "status": status.value,
                "config": jsonb(config),
                "by": by,
            },
        )
        return required(row, Job, "job", job_id)

    @staticmethod
    async def get(conn: db.Connection, job_id: UUID, *, lock: bool = False) -> Job:
        """The live job ``job_id`` (locked FOR UPDATE when ``lock``), or NotFound."""
        row = await db.fetch_one(conn, _LOCK if lock else _GET, {"id": job_id})
        return required(row, Job, "job", job_id)

    @staticmethod
    async def select_page(
        conn: db.Connection, *, namespace: str | None, after_id: UUID | None, limit: int
    ) -> list[Job]:
        """Up to ``limit`` live jobs after ``after_id`` in id order."""
        rows = await db.fetch_all(conn, _LIST, {"namespace": namespace, "after_id": after_id, "limit": limit})
        return many(rows, Job)

    @staticmethod
    async def update(
        conn: db.Connection,
        job_id: UUID,
        *,
        name: str,
        description: str,
        status: JobStatus,
        config: JobConfig,
        by: str | None,
    ) -> Job:
        """Overwrite the mutable fields of a live job."""
        row = await db.fetch_one(
            conn,
            _UPDATE,
            {
                "id": job_id,
                "name": name,
                "description": description,
                "status": status.value,
                "config": jsonb(config),
                "by": by,
            },
        )
        return required(row, Job, "job", job_id)

    @staticmethod
    async def soft_delete(conn: db.Connection, job_id: UUID, *, by: str | None) -> None:
        """Mark the job deleted (and disabled); NotFound if it is not live."""
        if await db.fetch_one(conn, _SOFT_DELETE, {"id": job_id, "by": by}) is None:
            raise NotFound("job", job_id)
