-- Tasks seen as the slots of their schedules (sched_task joined with sched_schedule): what the task generator and
-- the dispatcher's admission step (misfire and overlap policies) read.

-- name: list_generation_work
-- One page, in id order after `after_id`, of the enabled clock schedules of enabled live jobs whose generation
-- cursor is unset or before `until` (the generator's refill mark).
SELECT s.id, s.job_id, s.kind, s.cron_expression, s.timezone, s.interval_secs, s.start_time, s.end_time,
       s.max_count, s.event_name, s.parameters, s.misfire_policy, s.misfire_grace_secs, s.misfire_max_runs,
       s.status, s.generated_until, s.fire_count, s.created_at, s.updated_at
FROM sched_schedule s
JOIN sched_job j ON j.id = s.job_id
WHERE s.status = 'enabled' AND s.kind IN ('cron', 'interval', 'once')
  AND (s.generated_until IS NULL OR s.generated_until < %(until)s::timestamptz)
  AND j.status = 'enabled' AND j.deleted_at IS NULL
  AND (%(after_id)s::uuid IS NULL OR s.id > %(after_id)s::uuid)
ORDER BY s.id
LIMIT %(limit)s::integer

-- name: slot_tasks_at
-- The tasks a schedule already has at some of its slots (who won a generation race).
SELECT id, scheduled_at
FROM sched_task
WHERE schedule_id = %(schedule_id)s::uuid AND scheduled_at = ANY(%(scheduled_ats)s::timestamptz[])

-- name: count_slot_tasks_after
-- How many tasks a schedule has after an instant: slots already counted in its fire_count that lie beyond its
-- cursor (left behind by a rewind, e.g. dispatched ahead of time before a rule change); a slot with pinned copies
-- (broadcast) counts once.
SELECT count(DISTINCT scheduled_at) AS n
FROM sched_task
WHERE schedule_id = %(schedule_id)s::uuid AND scheduled_at > %(after)s::timestamptz

-- name: misfire_rules
-- The misfire settings of some schedules, and their kind (a daemon's restarts are never judged late).
SELECT id, kind, misfire_policy, misfire_grace_secs, misfire_max_runs
FROM sched_schedule
WHERE id = ANY(%(ids)s::uuid[])

-- name: count_later_late_slots
-- For each given slot task: how many later slots of its schedule are also late (before the slot's `cutoff`)
-- and still waiting for their first attempt, among the tasks with the same pin ('' for none: each agent of a
-- broadcast job is judged on its own copies). A late slot runs under run_once/run_all only while fewer than
-- the policy keeps come after it.
SELECT u.id,
       (SELECT count(*)
        FROM sched_task o
        WHERE o.schedule_id = u.schedule_id
          AND o.scheduled_at > u.scheduled_at AND o.scheduled_at < u.cutoff
          AND coalesce(o.config #>> '{target,agent_id}', '') = u.pin
          AND o.status = 'pending' AND o.attempt = 0) AS later
FROM unnest(%(ids)s::uuid[], %(schedule_ids)s::uuid[], %(scheduled_ats)s::timestamptz[],
            %(cutoffs)s::timestamptz[], %(pins)s::text[]) AS u(id, schedule_id, scheduled_at, cutoff, pin)

-- name: live_runs_of_schedules
-- Runs of some schedules that are going now (dispatched or running), oldest slot first, with their pin.
SELECT id AS task_id, schedule_id, scheduled_at, instance_id, agent_id, config #>> '{target,agent_id}' AS pin
FROM sched_task
WHERE schedule_id = ANY(%(schedule_ids)s::uuid[]) AND status IN ('dispatched', 'running')
ORDER BY schedule_id, scheduled_at, id

-- name: next_guarded_slot
-- The earliest pending first attempt, due after `after`, of a schedule slot whose job forbids or replaces
-- overlapping runs: the dispatcher claims those when due, so it must wake up then.
SELECT min(scheduled_at) AS at
FROM sched_task
WHERE status = 'pending' AND attempt = 0 AND schedule_id IS NOT NULL
  AND scheduled_at > %(after)s::timestamptz
  AND coalesce(config ->> 'concurrency', 'allow') <> 'allow'
