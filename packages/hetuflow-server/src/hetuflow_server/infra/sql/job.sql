-- Jobs (sched_job). Deleted jobs (deleted_at set) are invisible to every query here.

-- name: insert_job
INSERT INTO sched_job (id, namespace, name, description, status, config, created_by, updated_by)
VALUES (%(id)s::uuid, %(namespace)s::text, %(name)s::text, %(description)s::text, %(status)s::text,
        %(config)s::jsonb, %(by)s::text, %(by)s::text)
RETURNING id, namespace, name, description, status, config, created_by, created_at, updated_by, updated_at

-- name: get_job
SELECT id, namespace, name, description, status, config, created_by, created_at, updated_by, updated_at
FROM sched_job
WHERE id = %(id)s::uuid AND deleted_at IS NULL

-- name: lock_job
-- The job row, locked until the end of the transaction (read-modify-write of PATCH, trigger vs delete). NO KEY
-- UPDATE: tasks and attempts inserted meanwhile (their foreign keys take a KEY SHARE lock on this row) must not
-- wait for, or deadlock with, it — e.g. a dispatch holding claimed tasks while a disable deletes them.
SELECT id, namespace, name, description, status, config, created_by, created_at, updated_by, updated_at
FROM sched_job
WHERE id = %(id)s::uuid AND deleted_at IS NULL
FOR NO KEY UPDATE

-- name: list_jobs
-- One page in id (creation) order after the cursor id, optionally in one namespace.
SELECT id, namespace, name, description, status, config, created_by, created_at, updated_by, updated_at
FROM sched_job
WHERE deleted_at IS NULL
  AND (%(namespace)s::text IS NULL OR namespace = %(namespace)s::text)
  AND (%(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid)
ORDER BY id
LIMIT %(limit)s::integer

-- name: update_job
UPDATE sched_job
SET name = %(name)s::text,
    description = %(description)s::text,
    status = %(status)s::text,
    config = %(config)s::jsonb,
    updated_by = %(by)s::text,
    updated_at = now()
WHERE id = %(id)s::uuid AND deleted_at IS NULL
RETURNING id, namespace, name, description, status, config, created_by, created_at, updated_by, updated_at

-- name: soft_delete_job
UPDATE sched_job
SET deleted_at = now(), deleted_by = %(by)s::text, status = 'disabled', updated_by = %(by)s::text, updated_at = now()
WHERE id = %(id)s::uuid AND deleted_at IS NULL
RETURNING id
