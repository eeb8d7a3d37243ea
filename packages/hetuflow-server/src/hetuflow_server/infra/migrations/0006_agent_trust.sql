-- 0006_agent_trust: what an agent may decide for itself is bounded — routing labels an operator set stay set,
-- and an attempt's stored log has a size.
--
-- labels_locked: the labels were set by an operator (PATCH /api/v1/agents/{id}). An agent declares labels at
-- every registration, but those are only a proposal: while the row is locked, registration keeps the stored
-- labels, so a reconnect cannot undo the operator's choice nor route to the agent work meant for other hosts.
ALTER TABLE sched_agent ADD COLUMN labels_locked boolean NOT NULL DEFAULT false;

-- log_bytes: content bytes of the attempt's chunks stored so far; log_truncated: the per-attempt quota was
-- reached and the truncation marker stored, so nothing more of this attempt's output is kept.
ALTER TABLE sched_task_instance
    ADD COLUMN log_bytes bigint NOT NULL DEFAULT 0 CHECK (log_bytes >= 0),
    ADD COLUMN log_truncated boolean NOT NULL DEFAULT false;
