-- 0008_notifications_audit: the audit trail of API changes, and the outbox of notifications about outcomes.
--
-- sched_audit holds one row per state-changing API call, written in the transaction of the change (so a change
-- that rolled back leaves no row, and no committed change lacks one). `summary` is what the caller asked for,
-- with secret values already removed by the server.
--
-- sched_notification is both the outbox and the delivery record: one row per (event, target). Rows are written
-- by the triggers below in the transaction that changed the state, so an event is queued exactly once whatever
-- code path (report, reaper, cancel) made it and however many servers run. Every server's notifier claims due
-- rows with FOR UPDATE SKIP LOCKED, marks them `sending` with a lease, delivers outside any transaction and
-- records the outcome; a row whose lease ran out (its server died mid-delivery) is due again.
CREATE TABLE sched_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL CHECK (length(actor) <= 255),
    actor_jti uuid,
    scope     text NOT NULL CONSTRAINT sched_audit_scope_check CHECK (scope IN ('agent', 'read', 'admin')),
    action    text NOT NULL CHECK (length(action) <= 128),
    method    text NOT NULL CHECK (method IN ('POST', 'PATCH', 'PUT', 'DELETE')),
    path      text NOT NULL CHECK (length(path) <= 2048),
    target    text NOT NULL CHECK (length(target) <= 2048),
    summary   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(summary) = 'object')
);
CREATE INDEX sched_audit_target_idx ON sched_audit (target, id);
CREATE INDEX sched_audit_actor_idx ON sched_audit (actor, id);
CREATE INDEX sched_audit_action_idx ON sched_audit (action, id);
CREATE INDEX sched_audit_at_idx ON sched_audit USING brin (at);

CREATE TABLE sched_notification (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event           text NOT NULL
                    CONSTRAINT sched_notification_event_check
                    CHECK (event IN ('failed', 'succeeded', 'missed', 'retrying', 'offline')),
    target          text NOT NULL CHECK (length(target) <= 128),
    job_id          uuid,
    task_id         uuid,
    payload         jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    status          text NOT NULL DEFAULT 'pending'
                    CONSTRAINT sched_notification_status_check
                    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    response_code   integer,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT sched_notification_completed_check CHECK (
        (status IN ('delivered', 'failed')) = (completed_at IS NOT NULL)
    )
);
CREATE INDEX sched_notification_due_idx ON sched_notification (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX sched_notification_job_idx ON sched_notification (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX sched_notification_completed_idx ON sched_notification USING brin (completed_at);

-- Queue one notification per rule of `config.notify` (a job config snapshot) that lists `event`, and wake the
-- notifiers. The job's name comes from sched_job: receivers want to know which job without another request.
CREATE FUNCTION sched_queue_notifications(
    config jsonb, event text, job uuid, task uuid, details jsonb
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sched_notification (event, target, job_id, task_id, payload)
    SELECT event, rule ->> 'target', job, task,
           jsonb_build_object('event', event, 'occurred_at', now(), 'job_id', job,
                              'job_namespace', j.namespace, 'job_name', j.name, 'task_id', task)
           || details
    FROM jsonb_array_elements(coalesce(config -> 'notify', '[]')) AS rule
    LEFT JOIN sched_job j ON j.id = job
    WHERE rule -> 'on' ? event;
    IF FOUND THEN
        PERFORM pg_notify('hetuflow_notification', '');
    END IF;
END
$$;

-- A task ended (succeeded, failed) or waits for its next attempt (retrying).
CREATE FUNCTION sched_task_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sched_queue_notifications(
        NEW.config,
        CASE NEW.status WHEN 'waiting_retry' THEN 'retrying' ELSE NEW.status END,
        NEW.job_id,
        NEW.id,
        jsonb_build_object('status', NEW.status, 'attempt', NEW.attempt, 'agent_id', NEW.agent_id,
                           'instance_id', NEW.instance_id, 'error', NEW.error,
                           'scheduled_at', NEW.scheduled_at, 'next_attempt_at', NEW.next_attempt_at));
    RETURN NULL;
END
$$;

-- The WHEN clause keeps the cost off tasks whose job names no notification target: no function call at all.
CREATE TRIGGER sched_task_notify_trigger
AFTER UPDATE OF status ON sched_task
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status
      AND NEW.status IN ('succeeded', 'failed', 'waiting_retry')
      AND jsonb_array_length(coalesce(NEW.config -> 'notify', '[]')) > 0)
EXECUTE FUNCTION sched_task_notify();

-- A schedule's slot was recorded as missed (the scheduler or the agents were down past the grace period).
CREATE FUNCTION sched_slot_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    job sched_job%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.outcome = 'missed' THEN
        RETURN NULL;
    END IF;
    SELECT j.* INTO job FROM sched_schedule s JOIN sched_job j ON j.id = s.job_id WHERE s.id = NEW.schedule_id;
    IF FOUND THEN
        PERFORM sched_queue_notifications(
            job.config, 'missed', job.id, NEW.task_id,
            jsonb_build_object('schedule_id', NEW.schedule_id, 'scheduled_at', NEW.scheduled_at,
                               'error', NEW.detail));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sched_slot_notify_trigger
AFTER INSERT OR UPDATE OF outcome ON sched_schedule_slot
FOR EACH ROW
WHEN (NEW.outcome = 'missed')
EXECUTE FUNCTION sched_slot_notify();

-- An attempt was declared lost: its agent went offline (silent past the timeout, or disconnected for good).
CREATE FUNCTION sched_instance_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    snapshot jsonb;
BEGIN
    SELECT t.config INTO snapshot FROM sched_task t WHERE t.id = NEW.task_id;
    PERFORM sched_queue_notifications(
        snapshot, 'offline', NEW.job_id, NEW.task_id,
        jsonb_build_object('agent_id', NEW.agent_id, 'instance_id', NEW.id, 'attempt', NEW.attempt,
                           'error', NEW.error));
    RETURN NULL;
END
$$;

CREATE TRIGGER sched_instance_notify_trigger
AFTER UPDATE OF status ON sched_task_instance
FOR EACH ROW
WHEN (NEW.status = 'lost' AND OLD.status IS DISTINCT FROM 'lost')
EXECUTE FUNCTION sched_instance_notify();
