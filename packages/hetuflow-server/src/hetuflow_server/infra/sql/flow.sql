-- Flows (sched_flow) and their runs (sched_flow_run).

-- name: insert_flow
INSERT INTO sched_flow (id, name, description, steps)
VALUES (%(id)s::uuid, %(name)s::text, %(description)s::text, %(steps)s::jsonb)
RETURNING id, name, description, status, steps, created_at, updated_at

-- name: get_flow
SELECT id, name, description, status, steps, created_at, updated_at FROM sched_flow WHERE id = %(id)s::uuid

-- name: list_flows
SELECT id, name, description, status, steps, created_at, updated_at
FROM sched_flow
WHERE %(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid
ORDER BY id
LIMIT %(limit)s::integer

-- name: insert_flow_run
INSERT INTO sched_flow_run (id, flow_id, parameters, created_by)
VALUES (%(id)s::uuid, %(flow_id)s::uuid, %(parameters)s::jsonb, %(by)s::text)
RETURNING id, flow_id, status, parameters, created_at, started_at, completed_at

-- name: get_flow_run
SELECT id, flow_id, status, parameters, created_at, started_at, completed_at
FROM sched_flow_run WHERE id = %(id)s::uuid

-- name: list_flow_runs
SELECT id, flow_id, status, parameters, created_at, started_at, completed_at
FROM sched_flow_run
WHERE flow_id = %(flow_id)s::uuid AND (%(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid)
ORDER BY id
LIMIT %(limit)s::integer

-- name: refresh_flow_runs
-- Derive each unfinished run's state from its tasks: all succeeded → succeeded; all final → failed (or
-- cancelled when nothing failed); anything past pending → running.
UPDATE sched_flow_run r
SET status = s.new_status,
    started_at = CASE WHEN s.new_status <> 'pending' THEN coalesce(r.started_at, now()) ELSE r.started_at END,
    completed_at = CASE WHEN s.new_status IN ('succeeded', 'failed', 'cancelled') THEN now() END
FROM (
    SELECT flow_run_id,
           CASE
               WHEN bool_and(status = 'succeeded') THEN 'succeeded'
               WHEN bool_and(status IN ('succeeded', 'failed', 'cancelled', 'skipped')) THEN
                   CASE WHEN bool_or(status = 'failed') OR NOT bool_or(status = 'cancelled') THEN 'failed'
                        ELSE 'cancelled' END
               WHEN bool_or(status <> 'pending') THEN 'running'
               ELSE 'pending'
           END AS new_status
    FROM sched_task
    WHERE flow_run_id = ANY(%(run_ids)s::uuid[])
    GROUP BY flow_run_id
) s
WHERE r.id = s.flow_run_id
  AND r.status NOT IN ('succeeded', 'failed', 'cancelled')
  AND r.status <> s.new_status
RETURNING r.id, r.flow_id, r.status, r.parameters, r.created_at, r.started_at, r.completed_at
