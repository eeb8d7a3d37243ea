-- Daemon schedules and their tasks (sched_task rows of origin 'daemon'): what the daemon supervisor on the leader
-- and the services that stop daemons read. A daemon run is "live" while its task is pending, dispatched, running
-- or waiting for a retry; the unique index sched_task_daemon_live_key (migration 0003) allows one per schedule
-- and pin.

-- name: list_daemon_vacancies
-- Daemon runs that should exist and do not. Every enabled daemon schedule of an enabled live job wants one run
-- (pinned to the job's own target.agent_id, if any), or — for a broadcast job — one per online agent that
-- matches it (required labels ⊆ agent labels, command among its capabilities), pinned to that agent. A wanted run
-- that has a live task is filled.
WITH daemons AS (
    SELECT s.id AS schedule_id, s.job_id, j.config
    FROM sched_schedule s
    JOIN sched_job j ON j.id = s.job_id
    WHERE s.kind = 'daemon' AND s.status = 'enabled'
      AND j.status = 'enabled' AND j.deleted_at IS NULL
), wanted AS (
    SELECT d.schedule_id, d.job_id, d.config #>> '{target,agent_id}' AS pin
    FROM daemons d
    WHERE coalesce(d.config #>> '{target,routing}', 'any') <> 'broadcast'
       OR d.config #>> '{target,agent_id}' IS NOT NULL
    UNION ALL
    SELECT d.schedule_id, d.job_id, a.id AS pin
    FROM daemons d
    JOIN sched_agent a
      ON a.status = 'online'
     AND a.labels @> coalesce(d.config -> 'target' -> 'labels', '{}'::jsonb)
     AND (a.capabilities -> 'commands') ? (d.config ->> 'command')
    WHERE d.config #>> '{target,routing}' = 'broadcast' AND d.config #>> '{target,agent_id}' IS NULL
)
SELECT w.schedule_id, w.job_id, w.pin
FROM wanted w
WHERE NOT EXISTS (
    SELECT 1
    FROM sched_task t
    WHERE t.origin = 'daemon' AND t.schedule_id = w.schedule_id
      AND coalesce(t.config #>> '{target,agent_id}', '') = coalesce(w.pin, '')
      AND t.status IN ('pending', 'dispatched', 'running', 'waiting_retry')
)
ORDER BY w.schedule_id, w.pin
LIMIT %(limit)s::integer

-- name: list_daemon_runs
-- The latest runs of a daemon schedule with a given pin ('' for none), newest first: how each ended, and when its
-- current attempt's process started (null when it never started).
SELECT t.id AS task_id, t.status, t.scheduled_at, t.completed_at, i.started_at
FROM sched_task t
LEFT JOIN sched_task_instance i ON i.id = t.instance_id
WHERE t.schedule_id = %(schedule_id)s::uuid AND t.origin = 'daemon'
  AND coalesce(t.config #>> '{target,agent_id}', '') = %(pin)s::text
ORDER BY t.scheduled_at DESC, t.id DESC
LIMIT %(limit)s::integer

-- name: lock_live_daemon_tasks
-- The live daemon tasks of a schedule or of a job (whichever is given), locked in id order so that they can be
-- cancelled: a disabled or deleted schedule or job stops its daemons.
SELECT *
FROM sched_task
WHERE origin = 'daemon' AND status IN ('pending', 'dispatched', 'running', 'waiting_retry')
  AND (schedule_id = %(schedule_id)s::uuid OR job_id = %(job_id)s::uuid)
ORDER BY id
FOR UPDATE
