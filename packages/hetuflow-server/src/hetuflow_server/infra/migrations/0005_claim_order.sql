-- 0005_claim_order: the dispatcher's claim walks the pending tasks in priority order, whatever the statistics say.
--
-- The claim wants the first batch of pending tasks, in (priority, due time, id) order, that the connected agents
-- can run: sched_task_claim_idx yields them in that order, so walking it stops after the batch. But a queue
-- table's statistics are always stale (tasks leave `pending` by the thousand between two ANALYZE runs), and when
-- they say few tasks are pending the planner reads every pending row instead, tests each one with
-- sched_task_runnable and sorts them: with 2,000 pending tasks a 200-task claim took 30-150 ms instead of 2 ms.
-- Inside this function sorting, bitmap and sequential scans are priced out, so the ordered walk is the plan.
--
-- The claim itself is unchanged: pending tasks due before `horizon` whose dependencies all succeeded and that at
-- least one of the agent profiles ([{"labels": {...}, "commands": [...], "agent_ids": [...]}]) can run; a
-- schedule slot of a job that forbids or replaces overlapping runs only once due (the admission step judges it
-- then). Locked rows are skipped, so concurrent dispatchers never claim the same task; the locks last until the
-- caller's transaction ends.
CREATE FUNCTION sched_claim_due_tasks(horizon timestamptz, profiles jsonb, batch integer)
RETURNS SETOF sched_task
LANGUAGE sql VOLATILE
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    SELECT t.*
    FROM sched_task t
    WHERE t.status = 'pending'
      AND t.scheduled_at <= horizon
      AND (cardinality(t.depends_on) = 0
           OR NOT EXISTS (SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on) AND d.status <> 'succeeded'))
      AND sched_task_runnable(t.config, profiles)
      AND (t.scheduled_at <= now() OR t.schedule_id IS NULL OR t.attempt > 0
           OR coalesce(t.config ->> 'concurrency', 'allow') = 'allow')
    ORDER BY t.priority DESC, t.scheduled_at, t.id
    LIMIT batch
    FOR UPDATE OF t SKIP LOCKED
$$;
