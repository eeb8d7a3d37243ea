-- 0003_pins_daemons: tasks pinned to one agent (broadcast routing fans a task out into one per agent) and
-- daemon schedules (one live task per schedule, restarted when it ends).
--
-- A task is pinned when its config snapshot names an agent (config.target.agent_id): it runs on that agent only.
-- Broadcast makes one pinned copy per matching agent of every task it creates, so a schedule slot may now have
-- several tasks, one per pin. Daemon tasks get their own origin so that the database itself can refuse a second
-- live one per schedule (and pin), whichever server or leader tries to create it.

-- The dispatcher's matcher also checks the pin: a pinned task is runnable only by a profile that lists its agent
-- among `agent_ids` (the connected agents sharing that profile's labels and commands).
CREATE OR REPLACE FUNCTION sched_task_runnable(config jsonb, profiles jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    pinned text := config #>> '{target,agent_id}';
BEGIN
    RETURN EXISTS (
        SELECT 1
        FROM jsonb_array_elements(profiles) AS p(profile)
        WHERE coalesce(config -> 'target' -> 'labels', '{}'::jsonb) <@ (p.profile -> 'labels')
          AND (p.profile -> 'commands') ? (config ->> 'command')
          AND (pinned IS NULL OR coalesce(p.profile -> 'agent_ids', '[]'::jsonb) ? pinned)
    );
END
$$;

-- Generation stays idempotent per slot and pin: one task per (schedule, slot) and agent it is pinned to ('' for
-- an unpinned task). The name is kept, so a conflict still reads "the schedule already has a task for this slot".
ALTER TABLE sched_task DROP CONSTRAINT sched_task_schedule_slot_key;
CREATE UNIQUE INDEX sched_task_schedule_slot_key
    ON sched_task (schedule_id, scheduled_at, (coalesce(config #>> '{target,agent_id}', '')));

ALTER TABLE sched_task DROP CONSTRAINT sched_task_origin_check;
ALTER TABLE sched_task ADD CONSTRAINT sched_task_origin_check
    CHECK (origin IN ('schedule', 'manual', 'event', 'flow', 'retry', 'daemon'));

-- At most one live task per daemon schedule (and pin): the daemon supervisor inserts with ON CONFLICT DO NOTHING,
-- so two leaders racing (a lease that just moved) can never start a daemon twice.
CREATE UNIQUE INDEX sched_task_daemon_live_key
    ON sched_task (schedule_id, (coalesce(config #>> '{target,agent_id}', '')))
    WHERE origin = 'daemon' AND status IN ('pending', 'dispatched', 'running', 'waiting_retry');

-- The daemon supervisor's scan: enabled daemon schedules.
CREATE INDEX sched_schedule_daemon_idx ON sched_schedule (id) WHERE kind = 'daemon' AND status = 'enabled';
