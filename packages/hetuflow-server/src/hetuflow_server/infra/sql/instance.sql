-- Task instances (sched_task_instance): one attempt of a task on one agent.

-- name: insert_instances
INSERT INTO sched_task_instance (id, task_id, job_id, agent_id, server_id, attempt, fire_at)
SELECT u.id, u.task_id, u.job_id, u.agent_id, u.server_id, u.attempt, u.fire_at
FROM unnest(%(ids)s::uuid[], %(task_ids)s::uuid[], %(job_ids)s::uuid[], %(agent_ids)s::text[],
            %(server_ids)s::uuid[], %(attempts)s::integer[], %(fire_ats)s::timestamptz[])
     AS u(id, task_id, job_id, agent_id, server_id, attempt, fire_at)
RETURNING *

-- name: get_instance
SELECT * FROM sched_task_instance WHERE id = %(id)s::uuid

-- name: list_task_instances
SELECT * FROM sched_task_instance WHERE task_id = %(task_id)s::uuid ORDER BY attempt

-- name: list_instances
SELECT * FROM sched_task_instance WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id

-- name: transition_instances
-- Many reported status changes in one statement, each checked against the allowed (from, to) pairs. Only the
-- agent that runs an instance can move it (`agent_id` NULL: the server itself, e.g. declaring it lost).
-- Each instance id may appear once. Returns the rows that changed.
UPDATE sched_task_instance i
SET status = u.status,
    started_at = CASE WHEN u.status = 'running' THEN coalesce(u.at, now()) ELSE i.started_at END,
    completed_at = CASE WHEN u.status IN ('dispatched', 'running') THEN NULL ELSE coalesce(u.at, now()) END,
    exit_code = coalesce(u.exit_code, i.exit_code),
    signal = coalesce(u.signal, i.signal),
    error = coalesce(u.error, i.error),
    output = CASE WHEN u.output = '' THEN i.output ELSE u.output END,
    output_truncated = i.output_truncated OR u.output_truncated,
    metrics = coalesce(u.metrics, i.metrics),
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(statuses)s::text[], %(ats)s::timestamptz[], %(exit_codes)s::integer[],
            %(signals)s::integer[], %(errors)s::text[], %(outputs)s::text[], %(truncated)s::boolean[],
            %(metrics)s::jsonb[]) AS u(id, status, at, exit_code, signal, error, output, output_truncated, metrics)
JOIN unnest(%(edge_from)s::text[], %(edge_to)s::text[]) AS e(from_status, to_status) ON e.to_status = u.status
WHERE i.id = u.id
  AND i.status = e.from_status
  AND (%(agent_id)s::text IS NULL OR i.agent_id = %(agent_id)s::text)
RETURNING i.*

-- name: record_late_reports
-- Reports for instances that are already final with another status (e.g. declared lost, then the agent says it
-- succeeded): the report is kept beside the row, the status and the task never change.
UPDATE sched_task_instance i
SET reported_status = u.status,
    exit_code = coalesce(i.exit_code, u.exit_code),
    signal = coalesce(i.signal, u.signal),
    error = coalesce(i.error, u.error),
    output = CASE WHEN i.output = '' THEN u.output ELSE i.output END,
    output_truncated = i.output_truncated OR u.output_truncated,
    metrics = coalesce(i.metrics, u.metrics),
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(statuses)s::text[], %(exit_codes)s::integer[], %(signals)s::integer[],
            %(errors)s::text[], %(outputs)s::text[], %(truncated)s::boolean[], %(metrics)s::jsonb[])
     AS u(id, status, exit_code, signal, error, output, output_truncated, metrics)
WHERE i.id = u.id
  AND i.status NOT IN ('dispatched', 'running')
  AND i.status <> u.status
  AND (%(agent_id)s::text IS NULL OR i.agent_id = %(agent_id)s::text)
RETURNING i.id

-- name: live_instances_of_agents
-- Attempts still dispatched or running on the given agents (liveness, state sync).
SELECT * FROM sched_task_instance
WHERE agent_id = ANY(%(agent_ids)s::text[]) AND status IN ('dispatched', 'running')
ORDER BY id

-- name: count_live_instances
-- Load per agent: attempts dispatched or running.
SELECT agent_id, count(*)::integer AS live
FROM sched_task_instance
WHERE agent_id = ANY(%(agent_ids)s::text[]) AND status IN ('dispatched', 'running')
GROUP BY agent_id

-- name: live_instances_of_silent_agents
-- Liveness: attempts still dispatched or running whose agent last beat before `before` (or no longer exists),
-- whatever the agent's status says: a closed connection already marked it offline, but its attempts are only
-- given up once it stayed silent for the whole agent timeout.
SELECT i.* FROM sched_task_instance i
LEFT JOIN sched_agent a ON a.id = i.agent_id
WHERE i.status IN ('dispatched', 'running')
  AND (a.id IS NULL OR a.last_heartbeat_at IS NULL OR a.last_heartbeat_at < %(before)s::timestamptz)
ORDER BY i.id

-- name: live_attempts_of_agent
-- State sync while connected: the agent's attempts still dispatched or running, with the status of their task (a
-- task that ended meanwhile, e.g. cancelled while the agent could not be told, must be stopped on the agent).
SELECT i.id, i.task_id, t.status AS task_status
FROM sched_task_instance i
JOIN sched_task t ON t.id = i.task_id
WHERE i.agent_id = %(agent_id)s::text AND i.status IN ('dispatched', 'running')
ORDER BY i.id
