-- The notification outbox and delivery record (sched_notification). Rows are written by the triggers of
-- migration 0009 in the transaction of the state change they announce.

-- name: claim_notifications
-- Up to `limit` due notifications (new, waiting for a retry, or `sending` with a lapsed lease: their server
-- died mid-delivery), marked `sending` until `lease_secs` from now, their attempt counted. SKIP LOCKED: the
-- notifiers of several servers never claim the same row.
UPDATE sched_notification n
SET status = 'sending',
    attempts = n.attempts + 1,
    next_attempt_at = now() + make_interval(secs => %(lease_secs)s::double precision),
    updated_at = now()
WHERE n.id IN (SELECT id FROM sched_notification
               WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id
               LIMIT %(limit)s::integer
               FOR UPDATE SKIP LOCKED)
RETURNING n.id, n.event, n.target, n.job_id, n.task_id, n.payload, n.attempts

-- name: finish_notification
-- The outcome of one attempt: `delivered`, `failed` (for good) or `pending` again at `next_attempt_at`. Only
-- the attempt that holds the row records: a row claimed again meanwhile (lapsed lease) is left alone.
UPDATE sched_notification
SET status = %(status)s::text,
    response_code = %(response_code)s::integer,
    error = %(error)s::text,
    next_attempt_at = coalesce(%(next_attempt_at)s::timestamptz, next_attempt_at),
    completed_at = CASE WHEN %(status)s::text IN ('delivered', 'failed') THEN now() END,
    updated_at = now()
WHERE id = %(id)s::bigint AND status = 'sending' AND attempts = %(attempts)s::integer
RETURNING id

-- name: next_notification_due
-- When the earliest pending or sending notification is due (NULL: none), for the notifier's sleep.
SELECT min(next_attempt_at) AS due_at
FROM sched_notification
WHERE status IN ('pending', 'sending')

-- name: list_notifications
-- Newest first, before the cursor id; every filter given must match.
SELECT id, event, target, job_id, task_id, status, attempts, response_code, error, payload, created_at,
       next_attempt_at, completed_at
FROM sched_notification
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(target)s::text IS NULL OR target = %(target)s::text)
  AND (%(job_id)s::uuid IS NULL OR job_id = %(job_id)s::uuid)
  AND (%(task_id)s::uuid IS NULL OR task_id = %(task_id)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s::integer

-- name: delete_notifications_before
-- Retention: up to `limit` finished notifications completed before `before`.
DELETE FROM sched_notification
WHERE ctid = ANY(ARRAY(SELECT ctid FROM sched_notification
                       WHERE completed_at < %(before)s::timestamptz LIMIT %(limit)s::integer))
