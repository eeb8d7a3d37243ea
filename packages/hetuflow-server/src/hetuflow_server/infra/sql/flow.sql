-- Flows (sched_flow) and their runs (sched_flow_run). Deleted flows (deleted_at set) are history: only the
-- statements that say so see them.
--
-- A run's "current" tasks: a retried step gets new tasks in the run, all created in one transaction, so the
-- current tasks of a step are those no later task of the same step and run replaces (created_at is the
-- transaction's start time). Older ones stay as history.

-- name: insert_flow
INSERT INTO sched_flow (id, name, description, status, concurrency, steps)
VALUES (%(id)s::uuid, %(name)s::text, %(description)s::text, %(status)s::text, %(concurrency)s::text,
        %(steps)s::jsonb)
RETURNING id, name, description, status, concurrency, steps, created_at, updated_at

-- name: get_flow
SELECT id, name, description, status, concurrency, steps, created_at, updated_at
FROM sched_flow WHERE id = %(id)s::uuid AND deleted_at IS NULL

-- name: lock_flow
-- NO KEY UPDATE: runs and schedules inserted meanwhile (their foreign keys take KEY SHARE) need not wait.
SELECT id, name, description, status, concurrency, steps, created_at, updated_at
FROM sched_flow WHERE id = %(id)s::uuid AND deleted_at IS NULL
FOR NO KEY UPDATE

-- name: list_flows
SELECT id, name, description, status, concurrency, steps, created_at, updated_at
FROM sched_flow
WHERE deleted_at IS NULL AND (%(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid)
ORDER BY id
LIMIT %(limit)s::integer

-- name: update_flow
-- Overwrite every user-settable field of a live flow.
UPDATE sched_flow
SET name = %(name)s::text, description = %(description)s::text, status = %(status)s::text,
    concurrency = %(concurrency)s::text, steps = %(steps)s::jsonb, updated_at = now()
WHERE id = %(id)s::uuid AND deleted_at IS NULL
RETURNING id, name, description, status, concurrency, steps, created_at, updated_at

-- name: soft_delete_flow
-- A deleted flow keeps its row (its runs are history), disabled, with its name freed.
UPDATE sched_flow
SET status = 'disabled', deleted_at = now(), updated_at = now()
WHERE id = %(id)s::uuid AND deleted_at IS NULL
RETURNING id

-- name: insert_flow_run
INSERT INTO sched_flow_run (id, flow_id, parameters, steps, schedule_id, scheduled_at, created_by)
VALUES (%(id)s::uuid, %(flow_id)s::uuid, %(parameters)s::jsonb, %(steps)s::jsonb, %(schedule_id)s::uuid,
        %(scheduled_at)s::timestamptz, %(by)s::text)
RETURNING id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at

-- name: get_flow_run
SELECT id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at
FROM sched_flow_run WHERE id = %(id)s::uuid

-- name: lock_flow_run
-- The run and the steps it started with, locked for a cancel or a retry.
SELECT id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at,
       steps AS step_specs
FROM sched_flow_run WHERE id = %(id)s::uuid
FOR NO KEY UPDATE

-- name: list_flow_runs
SELECT id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at
FROM sched_flow_run
WHERE flow_id = %(flow_id)s::uuid AND (%(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid)
ORDER BY id
LIMIT %(limit)s::integer

-- name: list_flow_runs_newest_first
-- The same runs the other way, for a history that opens on the latest (the same index, read backwards).
SELECT id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at
FROM sched_flow_run
WHERE flow_id = %(flow_id)s::uuid AND (%(before_id)s::uuid IS NULL OR id < %(before_id)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s::integer

-- name: live_flow_runs
-- The runs of a flow, or of a schedule, that have not ended (pending or running), oldest first.
SELECT id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at
FROM sched_flow_run
WHERE status IN ('pending', 'running')
  AND (flow_id = %(flow_id)s::uuid OR schedule_id = %(schedule_id)s::uuid)
ORDER BY scheduled_at NULLS FIRST, id

-- name: flow_run_steps
-- The current tasks of some runs, with what they depend on (the caller orders them by it).
SELECT t.flow_run_id, t.flow_step AS name, t.id AS task_id, t.status, t.agent_id, t.error, t.depends_on
FROM sched_task t
WHERE t.flow_run_id = ANY(%(run_ids)s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM sched_task n
                  WHERE n.flow_run_id = t.flow_run_id AND n.flow_step = t.flow_step AND n.created_at > t.created_at)
ORDER BY t.flow_run_id, t.id

-- name: lock_flow_run_tasks
-- The current tasks of a run, locked in id order.
SELECT t.*
FROM sched_task t
WHERE t.flow_run_id = %(run_id)s::uuid
  AND NOT EXISTS (SELECT 1 FROM sched_task n
                  WHERE n.flow_run_id = t.flow_run_id AND n.flow_step = t.flow_step AND n.created_at > t.created_at)
ORDER BY t.id
FOR UPDATE OF t

-- name: end_flow_run
-- A run that has not ended yet ends in `status` now (a cancel).
UPDATE sched_flow_run
SET status = %(status)s::text, completed_at = now()
WHERE id = %(id)s::uuid AND status IN ('pending', 'running')
RETURNING id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at

-- name: reopen_flow_run
-- An ended run goes on (a retry): its new tasks decide how it ends.
UPDATE sched_flow_run
SET status = 'running', started_at = coalesce(started_at, now()), completed_at = NULL
WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled')
RETURNING id, flow_id, status, parameters, schedule_id, scheduled_at, created_at, started_at, completed_at

-- name: refresh_flow_runs
-- Derive each unfinished run's state from its current tasks: once all ended, failed if one failed, else
-- cancelled if one was cancelled, else succeeded (a step skipped by its trigger rule is no failure); before
-- that, running once anything left pending.
UPDATE sched_flow_run r
SET status = s.new_status,
    started_at = CASE WHEN s.new_status <> 'pending' THEN coalesce(r.started_at, now()) ELSE r.started_at END,
    completed_at = CASE WHEN s.new_status IN ('succeeded', 'failed', 'cancelled') THEN now() END
FROM (
    SELECT flow_run_id,
           CASE
               WHEN bool_and(status IN ('succeeded', 'failed', 'cancelled', 'skipped')) THEN
                   CASE WHEN bool_or(status = 'failed') THEN 'failed'
                        WHEN bool_or(status = 'cancelled') THEN 'cancelled'
                        ELSE 'succeeded' END
               WHEN bool_or(status <> 'pending') THEN 'running'
               ELSE 'pending'
           END AS new_status
    FROM sched_task t
    WHERE flow_run_id = ANY(%(run_ids)s::uuid[])
      AND NOT EXISTS (SELECT 1 FROM sched_task n
                      WHERE n.flow_run_id = t.flow_run_id AND n.flow_step = t.flow_step
                        AND n.created_at > t.created_at)
    GROUP BY flow_run_id
) s
WHERE r.id = s.flow_run_id
  AND r.status NOT IN ('succeeded', 'failed', 'cancelled')
  AND r.status <> s.new_status
RETURNING r.id, r.flow_id, r.status, r.parameters, r.schedule_id, r.scheduled_at, r.created_at, r.started_at,
          r.completed_at
