-- Aggregates for the dashboard and the job pages (GET /api/v1/stats/...). Each reads a bounded slice of sched_task:
-- the tasks scheduled in [since, until), newest first through sched_task_list_idx (or sched_task_job_list_idx for
-- one job), at most `cap` of them; so the cost follows the window and the cap, never the size of the history.
-- Tasks are counted by when they were scheduled, with the state they are in now.

-- name: runs_per_bucket
-- Tasks of the window by bucket (0 = the oldest, `bucket_secs` long) and status.
WITH recent AS (
    SELECT t.scheduled_at, t.status
    FROM sched_task t
    WHERE t.scheduled_at >= %(since)s::timestamptz AND t.scheduled_at < %(until)s::timestamptz
      AND (%(job_id)s::uuid IS NULL OR t.job_id = %(job_id)s::uuid)
    ORDER BY t.scheduled_at DESC, t.id DESC
    LIMIT %(cap)s::integer
)
SELECT floor(extract(epoch FROM r.scheduled_at - %(since)s::timestamptz) / %(bucket_secs)s::integer)::integer
           AS bucket,
       r.status,
       count(*)::integer AS n
FROM recent r
GROUP BY 1, 2

-- name: task_counts_now
-- Tasks in each open state now, each count stopping at `cap` (through sched_task_status_list_idx).
SELECT (SELECT count(*) FROM (SELECT 1 FROM sched_task WHERE status = 'running'
                              LIMIT %(cap)s::integer) AS s)::integer AS running,
       (SELECT count(*) FROM (SELECT 1 FROM sched_task WHERE status = 'dispatched'
                              LIMIT %(cap)s::integer) AS s)::integer AS dispatched,
       (SELECT count(*) FROM (SELECT 1 FROM sched_task WHERE status = 'pending' AND scheduled_at <= now()
                              LIMIT %(cap)s::integer) AS s)::integer AS due,
       (SELECT count(*) FROM (SELECT 1 FROM sched_task WHERE status = 'pending' AND scheduled_at > now()
                              LIMIT %(cap)s::integer) AS s)::integer AS planned,
       (SELECT count(*) FROM (SELECT 1 FROM sched_task WHERE status = 'waiting_retry'
                              LIMIT %(cap)s::integer) AS s)::integer AS waiting_retry

-- name: job_stats
-- Per job of the window: tasks by outcome, and the 50th/95th percentile of how long the latest attempt of each
-- succeeded or failed task ran; the jobs with the most tasks first. `total` is the number of tasks read.
WITH recent AS (
    SELECT t.job_id, t.status, t.instance_id
    FROM sched_task t
    WHERE t.scheduled_at >= %(since)s::timestamptz AND t.scheduled_at < %(until)s::timestamptz
      AND (%(job_id)s::uuid IS NULL OR t.job_id = %(job_id)s::uuid)
    ORDER BY t.scheduled_at DESC, t.id DESC
    LIMIT %(cap)s::integer
), timed AS (
    SELECT r.job_id, r.status, extract(epoch FROM i.completed_at - i.started_at)::double precision AS secs
    FROM recent r
    LEFT JOIN sched_task_instance i
           ON i.id = r.instance_id AND r.status IN ('succeeded', 'failed') AND i.started_at IS NOT NULL
)
SELECT job_id,
       count(*)::integer AS runs,
       (count(*) FILTER (WHERE status = 'succeeded'))::integer AS succeeded,
       (count(*) FILTER (WHERE status = 'failed'))::integer AS failed,
       (count(*) FILTER (WHERE status = 'cancelled'))::integer AS cancelled,
       (count(*) FILTER (WHERE status = 'skipped'))::integer AS skipped,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FILTER (WHERE secs IS NOT NULL) AS p50_secs,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY secs) FILTER (WHERE secs IS NOT NULL) AS p95_secs,
       (sum(count(*)) OVER ())::integer AS total
FROM timed
GROUP BY job_id
ORDER BY runs DESC, job_id
LIMIT %(limit)s::integer

-- name: agent_stats
-- Every agent (by id, at most `limit`): status, capacity, attempts on it now (sched_task_instance_live_idx) and
-- the tasks of the window it ran last. `total` is the number of tasks read.
WITH recent AS (
    SELECT t.agent_id
    FROM sched_task t
    WHERE t.scheduled_at >= %(since)s::timestamptz AND t.scheduled_at < %(until)s::timestamptz
    ORDER BY t.scheduled_at DESC, t.id DESC
    LIMIT %(cap)s::integer
), per_agent AS (
    SELECT agent_id, count(*) AS n FROM recent WHERE agent_id IS NOT NULL GROUP BY agent_id
)
SELECT a.id AS agent_id,
       a.status,
       coalesce((a.capabilities ->> 'capacity')::integer, 0) AS capacity,
       (SELECT count(*) FROM sched_task_instance i
        WHERE i.agent_id = a.id AND i.status IN ('dispatched', 'running'))::integer AS running,
       coalesce(p.n, 0)::integer AS tasks,
       (SELECT count(*) FROM recent)::integer AS total
FROM sched_agent a
LEFT JOIN per_agent p ON p.agent_id = a.id
ORDER BY a.id
LIMIT %(limit)s::integer
