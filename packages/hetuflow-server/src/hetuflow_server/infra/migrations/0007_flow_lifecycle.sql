-- 0007_flow_lifecycle: flows that can be changed, disabled, deleted and scheduled, runs that can be cancelled
-- and retried, and per-step trigger rules.
--
-- A flow is soft-deleted like a job: its runs are its history and tasks keep pointing at them, so the row stays
-- and only its name is freed. A schedule now targets a job or a flow (exactly one); a flow schedule starts one
-- flow run per fire, and its slot record names that run. A run keeps the steps it started with (a change to the
-- flow never reaches it, and a retry re-runs the same steps). A flow step's trigger rule travels on its task, so
-- the dispatcher's claim and the skipping of unreachable steps can read it where they read `depends_on`.

-- --------------------------------------------------------------------------------------------- flows

ALTER TABLE sched_flow
    -- What a scheduled fire does while an earlier run of the same schedule still goes (as a job's concurrency).
    ADD COLUMN concurrency text NOT NULL DEFAULT 'allow'
        CONSTRAINT sched_flow_concurrency_check CHECK (concurrency IN ('allow', 'forbid', 'replace')),
    ADD COLUMN deleted_at timestamptz;

-- A name is unique among live flows; a deleted flow frees it. The index keeps the constraint's name, so a clash
-- still reads as the same conflict.
ALTER TABLE sched_flow DROP CONSTRAINT sched_flow_name_key;
CREATE UNIQUE INDEX sched_flow_name_key ON sched_flow (name) WHERE deleted_at IS NULL;

ALTER TABLE sched_flow_run
    -- The steps as they were when the run started.
    ADD COLUMN steps jsonb,
    -- The schedule and slot that fired the run; a deleted schedule leaves its runs behind, unlinked.
    ADD COLUMN schedule_id uuid REFERENCES sched_schedule (id) ON DELETE SET NULL,
    ADD COLUMN scheduled_at timestamptz;
UPDATE sched_flow_run r SET steps = f.steps FROM sched_flow f WHERE f.id = r.flow_id;
ALTER TABLE sched_flow_run
    ALTER COLUMN steps SET NOT NULL,
    ADD CONSTRAINT sched_flow_run_steps_check CHECK (jsonb_typeof(steps) = 'array');
-- One run per slot of a schedule, whichever server fires it.
CREATE UNIQUE INDEX sched_flow_run_slot_key ON sched_flow_run (schedule_id, scheduled_at)
    WHERE schedule_id IS NOT NULL;
-- Overlap policy at a fire: the schedule's runs still going.
CREATE INDEX sched_flow_run_live_idx ON sched_flow_run (schedule_id)
    WHERE schedule_id IS NOT NULL AND status IN ('pending', 'running');

-- --------------------------------------------------------------------------------------------- schedules

ALTER TABLE sched_schedule
    ALTER COLUMN job_id DROP NOT NULL,
    -- A schedule means nothing without its flow; flows are soft-deleted, so this only acts on a hard purge.
    ADD COLUMN flow_id uuid REFERENCES sched_flow (id) ON DELETE CASCADE,
    ADD CONSTRAINT sched_schedule_target_check CHECK ((job_id IS NULL) <> (flow_id IS NULL)),
    ADD CONSTRAINT sched_schedule_flow_kind_check
        CHECK (flow_id IS NULL OR kind IN ('cron', 'interval', 'once', 'event'));
-- Schedules of a flow (API list, flow disable/delete), paged by id.
CREATE INDEX sched_schedule_flow_idx ON sched_schedule (flow_id, id) WHERE flow_id IS NOT NULL;

ALTER TABLE sched_schedule_slot
    -- The run a flow schedule's slot started; the record goes with the run (as with a slot's task).
    ADD COLUMN flow_run_id uuid REFERENCES sched_flow_run (id) ON DELETE CASCADE,
    DROP CONSTRAINT sched_schedule_slot_ran_check,
    ADD CONSTRAINT sched_schedule_slot_ran_check
        CHECK (outcome <> 'ran' OR task_id IS NOT NULL OR flow_run_id IS NOT NULL);
-- Foreign-key lookup when a run is deleted.
CREATE INDEX sched_schedule_slot_flow_run_idx ON sched_schedule_slot (flow_run_id) WHERE flow_run_id IS NOT NULL;

-- --------------------------------------------------------------------------------------------- tasks

ALTER TABLE sched_task
    ADD COLUMN trigger_rule text NOT NULL DEFAULT 'all_success'
        CONSTRAINT sched_task_trigger_rule_check CHECK (trigger_rule IN ('all_success', 'all_done', 'one_failed'));

-- The claim of 0005 with the trigger rule in place of "every dependency succeeded": `all_done` waits until every
-- dependency ended, `one_failed` starts once one failed. Everything else is unchanged.
CREATE OR REPLACE FUNCTION sched_claim_due_tasks(horizon timestamptz, profiles jsonb, batch integer)
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
           OR CASE t.trigger_rule
                  WHEN 'all_done' THEN NOT EXISTS (
                      SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on)
                        AND d.status NOT IN ('succeeded', 'failed', 'cancelled', 'skipped'))
                  WHEN 'one_failed' THEN EXISTS (
                      SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on) AND d.status = 'failed')
                  ELSE NOT EXISTS (
                      SELECT 1 FROM sched_task d WHERE d.id = ANY(t.depends_on) AND d.status <> 'succeeded')
              END)
      AND sched_task_runnable(t.config, profiles)
      AND (t.scheduled_at <= now() OR t.schedule_id IS NULL OR t.attempt > 0
           OR coalesce(t.config ->> 'concurrency', 'allow') = 'allow')
    ORDER BY t.priority DESC, t.scheduled_at, t.id
    LIMIT batch
    FOR UPDATE OF t SKIP LOCKED
$$;
