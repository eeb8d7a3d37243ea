-- Fire-slot records (sched_schedule_slot).

-- name: record_slots
-- Record many slots; an existing record is kept, or replaced when `overwrite`. Returns the records written.
INSERT INTO sched_schedule_slot (schedule_id, scheduled_at, outcome, task_id, flow_run_id, detail)
SELECT u.schedule_id, u.scheduled_at, u.outcome, u.task_id, u.flow_run_id, u.detail
FROM unnest(%(schedule_ids)s::uuid[], %(scheduled_ats)s::timestamptz[], %(outcomes)s::text[],
            %(task_ids)s::uuid[], %(flow_run_ids)s::uuid[], %(details)s::text[])
     AS u(schedule_id, scheduled_at, outcome, task_id, flow_run_id, detail)
ON CONFLICT (schedule_id, scheduled_at) DO UPDATE
SET outcome = excluded.outcome, task_id = excluded.task_id, flow_run_id = excluded.flow_run_id,
    detail = excluded.detail, recorded_at = now()
WHERE %(overwrite)s::boolean
RETURNING schedule_id, scheduled_at, outcome, task_id, flow_run_id, detail, recorded_at

-- name: list_slots
-- A schedule's slots, latest first, before the cursor.
SELECT schedule_id, scheduled_at, outcome, task_id, flow_run_id, detail, recorded_at
FROM sched_schedule_slot
WHERE schedule_id = %(schedule_id)s::uuid
  AND (%(before)s::timestamptz IS NULL OR scheduled_at < %(before)s::timestamptz)
ORDER BY scheduled_at DESC
LIMIT %(limit)s::integer
