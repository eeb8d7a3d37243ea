-- Tasks (sched_task). Statements return whole rows (`t.*`): the Task Struct takes the columns it knows.
-- Status changes are conditional: `allowed` (or the `edge_from`/`edge_to` pairs) come from infra/transitions.py.

-- name: insert_tasks
-- Many tasks in one statement. A task for a schedule slot (and pin) that already has one is skipped (generation is
-- idempotent across servers), and so is a second live task of a daemon schedule (and pin); compare the returned
-- ids with the requested ones to see which. No conflict target: each of those unique indexes may be the one hit.
INSERT INTO sched_task (id, job_id, schedule_id, flow_run_id, flow_step, retry_of, origin, scheduled_at, priority,
                        parameters, config, depends_on, trigger_rule, created_by)
SELECT u.id, u.job_id, u.schedule_id, u.flow_run_id, u.flow_step, u.retry_of, u.origin, u.scheduled_at, u.priority,
       u.parameters, u.config, ARRAY(SELECT jsonb_array_elements_text(u.depends_on)::uuid), u.trigger_rule,
       %(by)s::text
FROM unnest(%(ids)s::uuid[], %(job_ids)s::uuid[], %(schedule_ids)s::uuid[], %(flow_run_ids)s::uuid[],
            %(flow_steps)s::text[], %(retry_ofs)s::uuid[], %(origins)s::text[], %(scheduled_ats)s::timestamptz[],
            %(priorities)s::integer[], %(parameters)s::jsonb[], %(configs)s::jsonb[], %(depends_on)s::jsonb[],
            %(trigger_rules)s::text[])
     AS u(id, job_id, schedule_id, flow_run_id, flow_step, retry_of, origin, scheduled_at, priority, parameters,
          config, depends_on, trigger_rule)
ON CONFLICT DO NOTHING
RETURNING *

-- name: trigger_tasks
-- A manual trigger as one statement (it commits on its own): the live job's row is read FOR SHARE, so a delete or
-- change of the job (FOR NO KEY UPDATE) waits for it or it for them, and a delete never misses a task made here;
-- concurrent triggers of one job do not wait for each other. One task per run (a JSON array of {id,
-- scheduled_at, priority, parameters}) gets the job's current config and, without a priority of its own, the
-- config's; one NOTIFY on `channel` (with `payload`) wakes the dispatchers. A broadcast job that pins nothing gets no task here
-- (`broadcast`: the caller makes one per agent). No row: no such live job.
WITH job AS (
    SELECT id, config,
           config #>> '{target,routing}' = 'broadcast' AND config #>> '{target,agent_id}' IS NULL AS broadcast
    FROM sched_job
    WHERE id = %(job_id)s::uuid AND deleted_at IS NULL
    FOR SHARE
), made AS (
    INSERT INTO sched_task (id, job_id, origin, scheduled_at, priority, parameters, config, created_by)
    SELECT r.id, job.id, 'manual', r.scheduled_at,
           coalesce(r.priority, (job.config ->> 'priority')::integer, 0), r.parameters, job.config, %(by)s::text
    FROM job, jsonb_to_recordset(%(runs)s::jsonb)
         AS r(id uuid, scheduled_at timestamptz, priority integer, parameters jsonb)
    WHERE NOT job.broadcast
    RETURNING 1
), woken AS (
    SELECT pg_notify(%(channel)s::text, %(payload)s::text) FROM (SELECT FROM made LIMIT 1) AS one
)
SELECT job.broadcast, (SELECT count(*) FROM made) AS made, (SELECT count(*) FROM woken) AS woken
FROM job

-- name: get_task
SELECT * FROM sched_task WHERE id = %(id)s::uuid

-- name: lock_tasks
-- The rows of many tasks, locked in id order (a fixed order, so two lockers never deadlock).
SELECT * FROM sched_task WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE

-- name: list_tasks
-- One page, newest scheduled first, after the cursor (scheduled_at, id); each filter applies only when given.
SELECT *
FROM sched_task t
WHERE (cardinality(%(statuses)s::text[]) = 0 OR t.status = ANY(%(statuses)s::text[]))
  AND (%(job_id)s::uuid IS NULL OR t.job_id = %(job_id)s::uuid)
  AND (%(schedule_id)s::uuid IS NULL OR t.schedule_id = %(schedule_id)s::uuid)
  AND (%(agent_id)s::text IS NULL OR t.agent_id = %(agent_id)s::text)
  AND (%(flow_run_id)s::uuid IS NULL OR t.flow_run_id = %(flow_run_id)s::uuid)
  AND (%(scheduled_after)s::timestamptz IS NULL OR t.scheduled_at >= %(scheduled_after)s::timestamptz)
  AND (%(scheduled_before)s::timestamptz IS NULL OR t.scheduled_at < %(scheduled_before)s::timestamptz)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (t.scheduled_at, t.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid))
ORDER BY t.scheduled_at DESC, t.id DESC
LIMIT %(limit)s::integer

-- name: list_tasks_ascending
-- The same page, earliest scheduled first (the runs coming up next): the list indexes read backwards.
SELECT *
FROM sched_task t
WHERE (cardinality(%(statuses)s::text[]) = 0 OR t.status = ANY(%(statuses)s::text[]))
  AND (%(job_id)s::uuid IS NULL OR t.job_id = %(job_id)s::uuid)
  AND (%(schedule_id)s::uuid IS NULL OR t.schedule_id = %(schedule_id)s::uuid)
  AND (%(agent_id)s::text IS NULL OR t.agent_id = %(agent_id)s::text)
  AND (%(flow_run_id)s::uuid IS NULL OR t.flow_run_id = %(flow_run_id)s::uuid)
  AND (%(scheduled_after)s::timestamptz IS NULL OR t.scheduled_at >= %(scheduled_after)s::timestamptz)
  AND (%(scheduled_before)s::timestamptz IS NULL OR t.scheduled_at < %(scheduled_before)s::timestamptz)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (t.scheduled_at, t.id) > (%(cursor_at)s::timestamptz, %(cursor_id)s::uuid))
ORDER BY t.scheduled_at, t.id
LIMIT %(limit)s::integer

-- name: transition_task
-- One conditional status change. The row is locked first so `previous_status` is the state the change was
-- decided on; with `instance_id` given, the change applies only while that instance is the current attempt.
WITH current_row AS (
    SELECT id, status FROM sched_task WHERE id = %(id)s::uuid FOR UPDATE
)
UPDATE sched_task t
SET status = %(status)s::text,
    error = coalesce(%(error)s::text, t.error),
    next_attempt_at = %(next_attempt_at)s::timestamptz,
    completed_at = CASE WHEN %(status)s::text IN ('succeeded', 'failed', 'cancelled', 'skipped') THEN now() END,
    updated_at = now()
FROM current_row
WHERE t.id = current_row.id
  AND current_row.status = ANY(%(allowed)s::text[])
  AND (%(instance_id)s::uuid IS NULL OR t.instance_id = %(instance_id)s::uuid)
RETURNING t.*, current_row.status AS previous_status

-- name: transition_tasks
-- Many status changes in one statement (`changes`: a JSON array, each task at most once), each checked against the
-- allowed (from, to) pairs (`edges`, a JSON array) and fenced by the instance it names (when given); a change
-- `via_running` moves a dispatched task through `running` to its status (the caller has checked the second step).
-- Returns what the callers read of the rows that changed (one JSON array), not whole rows: this runs for every
-- report an agent sends.
WITH changed AS (
    UPDATE sched_task t
    SET status = c.status,
        error = coalesce(c.error, t.error),
        next_attempt_at = c.next_attempt_at,
        completed_at = CASE WHEN c.status IN ('succeeded', 'failed', 'cancelled', 'skipped') THEN now() END,
        updated_at = now()
    FROM jsonb_to_recordset(%(changes)s::jsonb)
         AS c(task_id uuid, instance_id uuid, status text, error text, next_attempt_at timestamptz,
              via_running boolean)
    JOIN jsonb_to_recordset(%(edges)s::jsonb) AS e(from_status text, to_status text)
      ON e.to_status = CASE WHEN c.via_running THEN 'running' ELSE c.status END
    WHERE t.id = c.task_id
      AND t.status = e.from_status
      AND (c.instance_id IS NULL OR t.instance_id = c.instance_id)
    RETURNING t.id, t.status, t.error, t.instance_id, t.agent_id, t.flow_run_id, t.next_attempt_at, t.origin
)
SELECT coalesce(json_agg(changed), '[]')::text AS rows FROM changed

-- name: claim_due_tasks
-- The dispatcher's claim: up to `limit` pending tasks due before `horizon` that one of the agent profiles can run,
-- priority first, then due time, locked (SKIP LOCKED) until the caller's transaction ends. The statement lives in
-- a function (migration 0004) whose planner settings keep it walking sched_task_claim_idx in order. The rows come
-- back as one JSON array, decoded straight into Structs (the whole config of every task is read here).
SELECT coalesce(json_agg(t ORDER BY t.priority DESC, t.scheduled_at, t.id), '[]')::text AS rows
FROM sched_claim_due_tasks(%(horizon)s::timestamptz, %(profiles)s::jsonb, %(limit)s::integer) AS t

-- name: promote_due_retries
-- Tasks whose retry backoff has passed go back to pending (waiting_retry → pending).
UPDATE sched_task t
SET status = 'pending', updated_at = now()
WHERE t.id IN (SELECT id FROM sched_task
               WHERE status = 'waiting_retry' AND next_attempt_at <= now()
               ORDER BY next_attempt_at
               LIMIT %(limit)s::integer
               FOR UPDATE SKIP LOCKED)
  AND t.status = ANY(%(allowed)s::text[])

-- name: delete_future_tasks_of_job
-- Planned runs of a job's schedules that never started and are not yet due (job disabled). Their slots are
-- planned no more, so they stop counting toward their schedule's max_count (fire_count; a slot counts once, however
-- many agents a broadcast job pinned copies of it to).
WITH gone AS (
    DELETE FROM sched_task
    WHERE job_id = %(job_id)s::uuid AND schedule_id IS NOT NULL
      AND status = 'pending' AND attempt = 0 AND scheduled_at > now()
    RETURNING id, schedule_id, scheduled_at
), uncounted AS (
    UPDATE sched_schedule s
    SET fire_count = greatest(s.fire_count - g.n, 0)
    FROM (SELECT schedule_id, count(DISTINCT scheduled_at) AS n FROM gone GROUP BY schedule_id) AS g
    WHERE s.id = g.schedule_id
)
SELECT id FROM gone

-- name: delete_unstarted_tasks_of_schedule
-- Planned runs of a schedule that never started: the future ones (disable, rule change) or all (delete). Their
-- slots are planned no more, so they stop counting toward the schedule's max_count (fire_count; once per slot).
WITH gone AS (
    DELETE FROM sched_task
    WHERE schedule_id = %(schedule_id)s::uuid
      AND status = 'pending' AND attempt = 0
      AND (%(include_due)s::boolean OR scheduled_at > now())
    RETURNING id, scheduled_at
), uncounted AS (
    UPDATE sched_schedule s
    SET fire_count = greatest(s.fire_count - (SELECT count(DISTINCT scheduled_at) FROM gone), 0)
    WHERE s.id = %(schedule_id)s::uuid AND EXISTS (SELECT 1 FROM gone)
)
SELECT id FROM gone

-- name: cancel_open_tasks_of_job
-- Tasks of a job that are not on an agent (pending, waiting for a retry) end cancelled (job deleted).
UPDATE sched_task
SET status = 'cancelled', error = %(reason)s::text, completed_at = now(), next_attempt_at = NULL,
    updated_at = now()
WHERE job_id = %(job_id)s::uuid AND status = ANY(%(allowed)s::text[])
RETURNING *

-- name: skip_blocked_flow_tasks
-- Flow steps that can never run given their trigger rule: `all_success` once a dependency did not succeed,
-- `one_failed` once every dependency ended and none failed (`all_done` always runs).
UPDATE sched_task t
SET status = 'skipped',
    error = CASE WHEN t.trigger_rule = 'one_failed' THEN 'no step it depends on failed'
                 ELSE 'a step it depends on did not succeed' END,
    completed_at = now(), updated_at = now()
WHERE t.flow_run_id = ANY(%(run_ids)s::uuid[])
  AND t.status = ANY(%(allowed)s::text[])
  AND CASE t.trigger_rule
          WHEN 'all_done' THEN false
          WHEN 'one_failed' THEN
              NOT EXISTS (SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on)
                            AND d.status NOT IN ('succeeded', 'failed', 'cancelled', 'skipped'))
              AND NOT EXISTS (SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on) AND d.status = 'failed')
          ELSE EXISTS (SELECT 1 FROM sched_task d
                       WHERE d.id = ANY(t.depends_on) AND d.status IN ('failed', 'cancelled', 'skipped'))
      END
RETURNING t.id

-- name: next_wake_times
-- When the dispatcher must look again without being woken, read in one statement: the earliest pending task due
-- after `after` (the end of the look-ahead window it already claimed from), the earliest end of a retry backoff,
-- and the earliest pending first attempt, due after `now`, of a schedule slot whose job forbids or replaces
-- overlapping runs (the dispatcher claims those when due, not a look-ahead early).
SELECT (SELECT min(scheduled_at) FROM sched_task
        WHERE status = 'pending' AND scheduled_at > %(after)s::timestamptz) AS next_pending_at,
       (SELECT min(next_attempt_at) FROM sched_task WHERE status = 'waiting_retry') AS next_retry_at,
       (SELECT min(scheduled_at) FROM sched_task
        WHERE status = 'pending' AND attempt = 0 AND schedule_id IS NOT NULL
          AND scheduled_at > %(now)s::timestamptz
          AND coalesce(config ->> 'concurrency', 'allow') <> 'allow') AS next_guarded_at

-- Tasks seen as the slots of their schedules: what the task generator and the dispatcher's admission step
-- (misfire and overlap policies) read.

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

-- name: count_later_late_slots
-- For each given slot task: how many later slots of its schedule are also late (before the slot's `cutoff`)
-- and still waiting for their first attempt, among the tasks with the same pin ('' for none: each agent of a
-- broadcast job is judged on its own copies). A late slot runs under run_once/run_all only while fewer than
-- the policy keeps come after it. A later slot that only waits for an agent is not late and does not count:
-- late means due before `unwatched_before` (in an outage, beyond grace and slack of the scheduler's return)
-- or planned more than `tolerance_secs` (grace and slack) after its time.
SELECT u.id,
       (SELECT count(*)
        FROM sched_task o
        WHERE o.schedule_id = u.schedule_id
          AND o.scheduled_at > u.scheduled_at AND o.scheduled_at < u.cutoff
          AND (o.scheduled_at < u.unwatched_before
               OR o.created_at > o.scheduled_at + make_interval(secs => u.tolerance_secs))
          AND coalesce(o.config #>> '{target,agent_id}', '') = u.pin
          AND o.status = 'pending' AND o.attempt = 0) AS later
FROM unnest(%(ids)s::uuid[], %(schedule_ids)s::uuid[], %(scheduled_ats)s::timestamptz[],
            %(cutoffs)s::timestamptz[], %(unwatched_befores)s::timestamptz[],
            %(tolerances)s::double precision[], %(pins)s::text[])
     AS u(id, schedule_id, scheduled_at, cutoff, unwatched_before, tolerance_secs, pin)

-- name: live_runs_of_schedules
-- Runs of some schedules that are going now (dispatched or running), oldest slot first, with their pin.
SELECT id AS task_id, schedule_id, scheduled_at, instance_id, agent_id, config #>> '{target,agent_id}' AS pin
FROM sched_task
WHERE schedule_id = ANY(%(schedule_ids)s::uuid[]) AND status IN ('dispatched', 'running')
ORDER BY schedule_id, scheduled_at, id

-- Tasks of daemon schedules (origin 'daemon'). A daemon run is "live" while its task is pending, dispatched,
-- running or waiting for a retry; the unique index sched_task_daemon_live_key (migration 0003) allows one per
-- schedule and pin.

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
