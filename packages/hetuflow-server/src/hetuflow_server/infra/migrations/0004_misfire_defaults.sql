-- 0004_misfire_defaults: misfire defaults that do not drop work, a start deadline per schedule, and the record
-- of how long the scheduler has been up without a gap.
--
-- A slot whose task was planned in time and that only waits for a free agent is no longer a misfire: it waits
-- (unless the schedule sets start_deadline_secs). The misfire policy now judges only the slots nothing could
-- plan or watch in time (an outage, a pause), and for those the defaults become "run the latest one" with a
-- minute of grace, as in Quartz. The server sends every field when it creates a schedule, so these column
-- defaults only serve rows written by hand; existing schedules keep the policy and grace they stored.

ALTER TABLE sched_schedule
    ALTER COLUMN misfire_policy SET DEFAULT 'run_once',
    ALTER COLUMN misfire_grace_secs SET DEFAULT 60,
    -- None: a slot planned in time waits for capacity as long as it takes.
    ADD COLUMN start_deadline_secs double precision CHECK (start_deadline_secs BETWEEN 0 AND 604800);

-- One row: since when some server has shown a sign of life (its heartbeat) at least every gap_secs. A slot
-- that came due before up_since saw the scheduler down (every server stopped, frozen, or cut off from the
-- database) at some point after its time, so it is judged by its misfire policy rather than left waiting.
-- gap_secs is the silence that counts as down (three heartbeat intervals of the server that wrote it); readers
-- use it to tell a stale row from a live one, whatever their own configuration.
CREATE TABLE sched_uptime (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    up_since timestamptz NOT NULL,
    seen_at  timestamptz NOT NULL,
    gap_secs double precision NOT NULL CHECK (gap_secs > 0)
);
