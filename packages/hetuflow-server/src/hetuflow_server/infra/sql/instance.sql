-- Task instances (sched_task_instance): one attempt of a task on one agent.

-- name: dispatch_attempts
-- New attempts of claimed tasks (`attempts`: a JSON array, status `dispatched`), and each task marked dispatched
-- to its attempt and agent, in one statement. Returns the attempts (one JSON array) and whether all their tasks
-- moved (tasks locked by the claim always do). A second attempt with the same (task, attempt) violates a unique
-- key.
WITH a AS (
    SELECT *
    FROM jsonb_to_recordset(%(attempts)s::jsonb)
         AS a(id uuid, task_id uuid, job_id uuid, agent_id text, server_id uuid, attempt integer, fire_at timestamptz)
), made AS (
    INSERT INTO sched_task_instance (id, task_id, job_id, agent_id, server_id, attempt, fire_at)
    SELECT id, task_id, job_id, agent_id, server_id, attempt, fire_at FROM a
    RETURNING *
), marked AS (
    UPDATE sched_task t
    SET status = 'dispatched',
        instance_id = a.id,
        agent_id = a.agent_id,
        attempt = a.attempt,
        next_attempt_at = NULL,
        updated_at = now()
    FROM a
    WHERE t.id = a.task_id AND t.status = ANY(%(allowed)s::text[])
    RETURNING t.id
)
SELECT coalesce(json_agg(made), '[]')::text AS rows,
       coalesce(bool_and(made.task_id IN (SELECT id FROM marked)), true) AS all_marked
FROM made

-- name: get_instance
SELECT * FROM sched_task_instance WHERE id = %(id)s::uuid

-- name: list_task_instances
SELECT * FROM sched_task_instance WHERE task_id = %(task_id)s::uuid ORDER BY attempt

-- name: list_instances
SELECT * FROM sched_task_instance WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id

-- name: apply_instance_reports
-- Many reported status changes in one statement (`reports`: a JSON array, each instance at most once), each
-- checked against the allowed (from, to) pairs (`edges`, a JSON array) and made only by the agent that runs the
-- instance (a report's `agent_id` null: the server itself, e.g. declaring it lost). Returns (one JSON array)
-- each instance that changed with its task as it is now, locked FOR UPDATE in id order for the task changes that follow in the same
-- transaction (no task: it is gone), and for failures the task's retry policy. A report `via_running` moves a
-- dispatched instance through `running` (started at `running_at`) to its status in one change; the caller has
-- checked the second step.
WITH moved AS (
    UPDATE sched_task_instance i
    SET status = u.status,
        started_at = CASE WHEN u.status = 'running' THEN coalesce(u.at, now())
                          WHEN u.via_running THEN coalesce(u.running_at, now())
                          ELSE i.started_at END,
        completed_at = CASE WHEN u.status IN ('dispatched', 'running') THEN NULL ELSE coalesce(u.at, now()) END,
        exit_code = coalesce(u.exit_code, i.exit_code),
        signal = coalesce(u.signal, i.signal),
        error = coalesce(u.error, i.error),
        output = CASE WHEN coalesce(u.output, '') = '' THEN i.output ELSE u.output END,
        output_truncated = i.output_truncated OR coalesce(u.output_truncated, false),
        metrics = coalesce(u.metrics, i.metrics),
        updated_at = now()
    FROM jsonb_to_recordset(%(reports)s::jsonb)
         AS u(instance_id uuid, agent_id text, status text, at timestamptz, exit_code integer, signal integer,
              error text, output text, output_truncated boolean, metrics jsonb, via_running boolean,
              running_at timestamptz)
    JOIN jsonb_to_recordset(%(edges)s::jsonb) AS e(from_status text, to_status text)
      ON e.to_status = CASE WHEN u.via_running THEN 'running' ELSE u.status END
    WHERE i.id = u.instance_id
      AND i.status = e.from_status
      AND (u.agent_id IS NULL OR i.agent_id = u.agent_id)
    RETURNING i.id, i.task_id, i.status
), locked AS (
    SELECT t.id, t.status, t.instance_id, t.attempt, t.config -> 'retry' AS retry
    FROM sched_task t
    WHERE t.id IN (SELECT task_id FROM moved)
    ORDER BY t.id
    FOR UPDATE
)
SELECT coalesce(json_agg(r), '[]')::text AS rows
FROM (SELECT m.id, m.task_id, m.status, l.status AS task_status, l.instance_id AS task_instance_id,
             l.attempt AS task_attempt, CASE WHEN m.status IN ('failed', 'timeout', 'lost') THEN l.retry END AS retry
      FROM moved m
      LEFT JOIN locked l ON l.id = m.task_id) AS r

-- name: record_late_reports
-- Reports for instances that are already final with another status (e.g. declared lost, then the agent says it
-- succeeded): the report is kept beside the row, the status and the task never change. `reports` as above.
UPDATE sched_task_instance i
SET reported_status = u.status,
    exit_code = coalesce(i.exit_code, u.exit_code),
    signal = coalesce(i.signal, u.signal),
    error = coalesce(i.error, u.error),
    output = CASE WHEN i.output = '' THEN coalesce(u.output, '') ELSE i.output END,
    output_truncated = i.output_truncated OR coalesce(u.output_truncated, false),
    metrics = coalesce(i.metrics, u.metrics),
    updated_at = now()
FROM jsonb_to_recordset(%(reports)s::jsonb)
     AS u(instance_id uuid, agent_id text, status text, exit_code integer, signal integer, error text, output text,
          output_truncated boolean, metrics jsonb)
WHERE i.id = u.instance_id
  AND i.status NOT IN ('dispatched', 'running')
  AND i.status <> u.status
  AND (u.agent_id IS NULL OR i.agent_id = u.agent_id)
RETURNING i.id

-- name: record_report_frames
-- The frame ids of agents' reports, remembered as applied (`frames`: a JSON array of {agent_id, msg_id}, any
-- number of agents); returns those seen for the first time. Resent frames find their id and are not applied again.
INSERT INTO sched_agent_msg (agent_id, msg_id)
SELECT f.agent_id, f.msg_id FROM jsonb_to_recordset(%(frames)s::jsonb) AS f(agent_id text, msg_id text)
ON CONFLICT (agent_id, msg_id) DO NOTHING
RETURNING agent_id, msg_id

-- name: forget_report_frames
-- The frame ids of reports that were refused, forgotten again in the transaction that recorded them: what was
-- refused is not kept (an agent could otherwise fill the table with frames that change nothing).
DELETE FROM sched_agent_msg m
USING jsonb_to_recordset(%(frames)s::jsonb) AS f(agent_id text, msg_id text)
WHERE m.agent_id = f.agent_id AND m.msg_id = f.msg_id

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
