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
-- Per job of the window: tasks by outcome, and the 50th/95th percentile of how long the latest attempt ran, over
-- the newest `timed_cap` succeeded or failed tasks of the window (one primary-key lookup each, so that sample is
-- bounded too); the jobs with the most tasks first. `total` is the number of tasks read.
WITH recent AS MATERIALIZED (
    SELECT t.job_id, t.status, t.instance_id, t.scheduled_at, t.id
    FROM sched_task t
    WHERE t.scheduled_at >= %(since)s::timestamptz AND t.scheduled_at < %(until)s::timestamptz
      AND (%(job_id)s::uuid IS NULL OR t.job_id = %(job_id)s::uuid)
    ORDER BY t.scheduled_at DESC, t.id DESC
    LIMIT %(cap)s::integer
), counted AS (
    SELECT job_id,
           count(*)::integer AS runs,
           (count(*) FILTER (WHERE status = 'succeeded'))::integer AS succeeded,
           (count(*) FILTER (WHERE status = 'failed'))::integer AS failed,
           (count(*) FILTER (WHERE status = 'cancelled'))::integer AS cancelled,
           (count(*) FILTER (WHERE status = 'skipped'))::integer AS skipped
    FROM recent
    GROUP BY job_id
), timed AS MATERIALIZED (
    -- A lookup by primary key per task: joined instead, the attempts may be planned as one scan of them all.
    SELECT f.job_id,
           (SELECT extract(epoch FROM i.completed_at - i.started_at)::double precision
            FROM sched_task_instance i
            WHERE i.id = f.instance_id AND i.started_at IS NOT NULL AND i.completed_at IS NOT NULL) AS secs
    FROM (SELECT job_id, instance_id FROM recent
          WHERE status IN ('succeeded', 'failed') AND instance_id IS NOT NULL
          ORDER BY scheduled_at DESC, id DESC
          LIMIT %(timed_cap)s::integer) AS f
), percentiles AS (
    SELECT job_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS p50_secs,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY secs) AS p95_secs
    FROM timed
    WHERE secs IS NOT NULL
    GROUP BY job_id
)
SELECT c.*, p.p50_secs, p.p95_secs, (sum(c.runs) OVER ())::integer AS total
FROM counted c
LEFT JOIN percentiles p ON p.job_id = c.job_id
ORDER BY c.runs DESC, c.job_id
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
