-- Schedules (sched_schedule).

-- name: insert_schedule
INSERT INTO sched_schedule (id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time,
                            end_time, max_count, event_name, parameters, misfire_policy, misfire_grace_secs,
                            misfire_max_runs, start_deadline_secs, status)
VALUES (%(id)s::uuid, %(job_id)s::uuid, %(flow_id)s::uuid, %(kind)s::text, %(cron_expression)s::text,
        %(timezone)s::text, %(interval_secs)s::integer, %(start_time)s::timestamptz, %(end_time)s::timestamptz,
        %(max_count)s::integer, %(event_name)s::text, %(parameters)s::jsonb, %(misfire_policy)s::text,
        %(misfire_grace_secs)s::double precision, %(misfire_max_runs)s::integer,
        %(start_deadline_secs)s::double precision, %(status)s::text)
RETURNING id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
          event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
          generated_until, fire_count, created_at, updated_at

-- name: get_schedule
SELECT id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
       event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
       generated_until, fire_count, created_at, updated_at
FROM sched_schedule
WHERE id = %(id)s::uuid

-- name: lock_schedule
-- NO KEY UPDATE: the id never changes, and slot records or tasks inserted meanwhile (their foreign keys take a
-- KEY SHARE lock on this row) must not wait for, or deadlock with, a read-modify-write of the schedule.
SELECT id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
       event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
       generated_until, fire_count, created_at, updated_at
FROM sched_schedule
WHERE id = %(id)s::uuid
FOR NO KEY UPDATE

-- name: list_schedules
-- One page in id order after the cursor id, optionally of one job or one flow.
SELECT id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
       event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
       generated_until, fire_count, created_at, updated_at
FROM sched_schedule
WHERE (%(job_id)s::uuid IS NULL OR job_id = %(job_id)s::uuid)
  AND (%(flow_id)s::uuid IS NULL OR flow_id = %(flow_id)s::uuid)
  AND (%(after_id)s::uuid IS NULL OR id > %(after_id)s::uuid)
ORDER BY id
LIMIT %(limit)s::integer

-- name: update_schedule
-- Overwrite every user-settable field. A changed rule restarts generation from now (`reset_cursor`): slots
-- already materialised under the old rule were removed by the caller.
UPDATE sched_schedule
SET cron_expression = %(cron_expression)s::text,
    timezone = %(timezone)s::text,
    interval_secs = %(interval_secs)s::integer,
    start_time = %(start_time)s::timestamptz,
    end_time = %(end_time)s::timestamptz,
    max_count = %(max_count)s::integer,
    event_name = %(event_name)s::text,
    parameters = %(parameters)s::jsonb,
    misfire_policy = %(misfire_policy)s::text,
    misfire_grace_secs = %(misfire_grace_secs)s::double precision,
    misfire_max_runs = %(misfire_max_runs)s::integer,
    start_deadline_secs = %(start_deadline_secs)s::double precision,
    status = %(status)s::text,
    generated_until = CASE WHEN %(reset_cursor)s::boolean THEN least(generated_until, now())
                           ELSE generated_until END,
    updated_at = now()
WHERE id = %(id)s::uuid
RETURNING id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
          event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
          generated_until, fire_count, created_at, updated_at

-- name: set_schedule_status
-- Conditional status change; disabling also rewinds the generation cursor to now, since the caller removed the
-- future tasks generated beyond it.
UPDATE sched_schedule
SET status = %(status)s::text,
    generated_until = CASE WHEN %(status)s::text = 'disabled' THEN least(generated_until, now())
                           ELSE generated_until END,
    updated_at = now()
WHERE id = %(id)s::uuid AND status = ANY(%(allowed)s::text[])
RETURNING id, job_id, flow_id, kind, cron_expression, timezone, interval_secs, start_time, end_time, max_count,
          event_name, parameters, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs, status,
          generated_until, fire_count, created_at, updated_at

-- name: rewind_job_schedules
-- A disabled job's future tasks were removed: its schedules must generate them again once it is enabled.
UPDATE sched_schedule
SET generated_until = least(generated_until, now()), updated_at = now()
WHERE job_id = %(job_id)s::uuid AND generated_until > now()
RETURNING id

-- name: disable_job_schedules
-- A deleted job keeps its schedules as history, disabled.
UPDATE sched_schedule
SET status = 'disabled', generated_until = least(generated_until, now()), updated_at = now()
WHERE job_id = %(job_id)s::uuid AND status = 'enabled'
RETURNING id

-- name: disable_flow_schedules
-- A deleted flow keeps its schedules as history, disabled.
UPDATE sched_schedule
SET status = 'disabled', generated_until = least(generated_until, now()), updated_at = now()
WHERE flow_id = %(flow_id)s::uuid AND status = 'enabled'
RETURNING id

-- name: delete_schedule
DELETE FROM sched_schedule WHERE id = %(id)s::uuid RETURNING id

-- name: list_event_targets
-- Enabled event schedules of enabled live jobs listening to an event name, with what a task of each needs.
SELECT s.id AS schedule_id, s.job_id, s.parameters, j.config
FROM sched_schedule s
JOIN sched_job j ON j.id = s.job_id
WHERE s.kind = 'event' AND s.status = 'enabled' AND s.event_name = %(event_name)s::text
  AND j.status = 'enabled' AND j.deleted_at IS NULL
ORDER BY s.id

-- name: list_flow_event_targets
-- Enabled event schedules of enabled live flows listening to an event name.
SELECT s.id AS schedule_id, s.flow_id, s.parameters
FROM sched_schedule s
JOIN sched_flow f ON f.id = s.flow_id
WHERE s.kind = 'event' AND s.status = 'enabled' AND s.event_name = %(event_name)s::text
  AND f.status = 'enabled' AND f.deleted_at IS NULL
ORDER BY s.id

-- name: list_generatable_schedules
-- The generator's work list: enabled clock schedules of enabled live jobs whose cursor is behind `until`, with
-- their job's config (the snapshot the new tasks get).
SELECT s.id, s.job_id, s.flow_id, s.kind, s.cron_expression, s.timezone, s.interval_secs, s.start_time,
       s.end_time, s.max_count, s.event_name, s.parameters, s.misfire_policy, s.misfire_grace_secs, s.misfire_max_runs,
       s.start_deadline_secs, s.status, s.generated_until, s.fire_count, s.created_at, s.updated_at,
       j.config AS job_config
FROM sched_schedule s
JOIN sched_job j ON j.id = s.job_id
WHERE s.status = 'enabled' AND s.kind IN ('cron', 'interval', 'once')
  AND (s.generated_until IS NULL OR s.generated_until < %(until)s::timestamptz)
  AND j.status = 'enabled' AND j.deleted_at IS NULL
ORDER BY s.generated_until NULLS FIRST, s.id
LIMIT %(limit)s::integer

-- name: advance_schedule
-- Move the generation cursor (never backwards), add to the fire count, and possibly expire the schedule — only
-- while the caller still holds the lease `lease_name` with fencing token `token`.
UPDATE sched_schedule s
SET generated_until = greatest(s.generated_until, %(generated_until)s::timestamptz),
    fire_count = s.fire_count + %(fired)s::bigint,
    status = CASE WHEN %(expire)s::boolean AND s.status = 'enabled' THEN 'expired' ELSE s.status END,
    updated_at = now()
WHERE s.id = %(id)s::uuid
  AND EXISTS (SELECT 1 FROM sched_lease l
              WHERE l.name = %(lease_name)s::text AND l.holder = %(holder)s::uuid
                AND l.token = %(token)s::bigint AND l.expires_at > now())
RETURNING s.id, s.job_id, s.flow_id, s.kind, s.cron_expression, s.timezone, s.interval_secs, s.start_time,
          s.end_time, s.max_count, s.event_name, s.parameters, s.misfire_policy, s.misfire_grace_secs,
          s.misfire_max_runs, s.start_deadline_secs, s.status, s.generated_until, s.fire_count, s.created_at, s.updated_at

-- name: list_generation_work
-- One page, in id order after `after_id`, of the enabled clock schedules of enabled live jobs whose generation
-- cursor is unset or before `until` (the generator's refill mark), and of enabled live flows whose cursor is
-- unset or before `due_until` (a flow's runs start when their slot comes due, never ahead of it).
SELECT s.id, s.job_id, s.flow_id, s.kind, s.cron_expression, s.timezone, s.interval_secs, s.start_time,
       s.end_time, s.max_count, s.event_name, s.parameters, s.misfire_policy, s.misfire_grace_secs,
       s.misfire_max_runs, s.start_deadline_secs, s.status, s.generated_until, s.fire_count, s.created_at,
       s.updated_at
FROM sched_schedule s
LEFT JOIN sched_job j ON j.id = s.job_id
LEFT JOIN sched_flow f ON f.id = s.flow_id
WHERE s.status = 'enabled' AND s.kind IN ('cron', 'interval', 'once')
  AND ((j.status = 'enabled' AND j.deleted_at IS NULL
        AND (s.generated_until IS NULL OR s.generated_until < %(until)s::timestamptz))
       OR (f.status = 'enabled' AND f.deleted_at IS NULL
           AND (s.generated_until IS NULL OR s.generated_until < %(due_until)s::timestamptz)))
  AND (%(after_id)s::uuid IS NULL OR s.id > %(after_id)s::uuid)
ORDER BY s.id
LIMIT %(limit)s::integer

-- name: misfire_rules
-- The misfire settings and start deadline of some schedules, and their kind (a daemon's restarts are never
-- judged late).
SELECT id, kind, misfire_policy, misfire_grace_secs, misfire_max_runs, start_deadline_secs
FROM sched_schedule
WHERE id = ANY(%(ids)s::uuid[])

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
