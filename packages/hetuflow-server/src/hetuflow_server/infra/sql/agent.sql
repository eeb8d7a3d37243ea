-- Agents (sched_agent) and the ids of their frames already applied (sched_agent_msg).
-- Status mixes liveness (online/offline) with operator modes (draining/disabled): an operator mode survives a
-- reconnect; only `online` agents get new work.

-- name: register_agent
-- Registration: create the agent or refresh it. A disabled or draining agent keeps its mode; the labels it
-- declares replace the stored ones unless an operator set (locked) them.
INSERT INTO sched_agent (id, name, address, status, labels, capabilities, server_id, last_heartbeat_at)
VALUES (%(id)s::text, %(name)s::text, %(address)s::text, 'online', %(labels)s::jsonb, %(capabilities)s::jsonb,
        %(server_id)s::uuid, now())
ON CONFLICT (id) DO UPDATE
SET name = excluded.name,
    address = excluded.address,
    status = CASE WHEN sched_agent.status IN ('disabled', 'draining') THEN sched_agent.status ELSE 'online' END,
    labels = CASE WHEN sched_agent.labels_locked THEN sched_agent.labels ELSE excluded.labels END,
    capabilities = excluded.capabilities,
    server_id = excluded.server_id,
    last_heartbeat_at = now(),
    updated_at = now()
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: heartbeat_agent
-- A heartbeat on the connection held by `server_id`; an agent declared offline that still beats is back online.
UPDATE sched_agent
SET last_heartbeat_at = now(),
    metrics = %(metrics)s::jsonb,
    server_id = %(server_id)s::uuid,
    status = CASE WHEN status = 'offline' THEN 'online' ELSE status END,
    updated_at = now()
WHERE id = %(id)s::text
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: heartbeat_agents
-- The heartbeats received by `server_id` over one flush interval, in one statement: the rows are locked in id
-- order (so concurrent batches and the reaper never deadlock), and an agent declared offline that still beats
-- is back online. Returns each agent's status with its attempts still dispatched or running and the status of
-- their task, for the state sync: one row per attempt, or one row without an attempt.
WITH beat AS (
    SELECT a.id, b.metrics
    FROM unnest(%(ids)s::text[], %(metrics)s::text[]) AS b(id, metrics)
    JOIN sched_agent a ON a.id = b.id
    ORDER BY a.id
    FOR UPDATE OF a
), updated AS (
    UPDATE sched_agent a
    SET last_heartbeat_at = now(),
        metrics = beat.metrics::jsonb,
        server_id = %(server_id)s::uuid,
        status = CASE WHEN a.status = 'offline' THEN 'online' ELSE a.status END,
        updated_at = now()
    FROM beat
    WHERE a.id = beat.id
    RETURNING a.id, a.status
)
SELECT u.id, u.status, i.id AS instance_id, i.task_id, t.status AS task_status
FROM updated u
LEFT JOIN sched_task_instance i ON i.agent_id = u.id AND i.status IN ('dispatched', 'running')
LEFT JOIN sched_task t ON t.id = i.task_id

-- name: get_agent
SELECT id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
       created_at
FROM sched_agent WHERE id = %(id)s::text

-- name: list_agents
SELECT id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
       created_at
FROM sched_agent ORDER BY id

-- name: set_agent_labels
-- An operator's labels; `locked` keeps them over the agent's own at its registrations.
UPDATE sched_agent SET labels = %(labels)s::jsonb, labels_locked = %(locked)s::boolean, updated_at = now()
WHERE id = %(id)s::text
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: set_agent_status
-- Conditional mode change (drain, disable).
UPDATE sched_agent SET status = %(status)s::text, updated_at = now()
WHERE id = %(id)s::text AND status = ANY(%(allowed)s::text[])
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: enable_agent
-- A disabled agent comes back online if a server holds its connection, else offline.
UPDATE sched_agent
SET status = CASE WHEN server_id IS NOT NULL THEN 'online' ELSE 'offline' END, updated_at = now()
WHERE id = %(id)s::text AND status = 'disabled'
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: disconnect_agent
-- The connection held by `server_id` closed: the agent is offline (a disabled one stays disabled).
UPDATE sched_agent
SET status = CASE WHEN status = 'disabled' THEN status ELSE 'offline' END, server_id = NULL, updated_at = now()
WHERE id = %(id)s::text AND server_id = %(server_id)s::uuid
RETURNING id, name, address, status, labels, labels_locked, capabilities, server_id, metrics, last_heartbeat_at,
          created_at

-- name: mark_stale_agents_offline
-- Liveness: agents silent since before `before` are offline. Locked in id order like a batch of heartbeats, so
-- the two never deadlock; a heartbeat stored meanwhile takes the agent out of the set.
UPDATE sched_agent
SET status = 'offline', server_id = NULL, updated_at = now()
WHERE id IN (
    SELECT id FROM sched_agent
    WHERE status IN ('online', 'draining') AND last_heartbeat_at < %(before)s::timestamptz
    ORDER BY id
    FOR UPDATE
)
RETURNING id

-- name: delete_agent
-- Only an agent that is not connected can be deleted.
DELETE FROM sched_agent
WHERE id = %(id)s::text AND server_id IS NULL AND status IN ('offline', 'disabled')
RETURNING id

-- name: record_agent_msgs
-- Remember frame ids as applied; returns the ids seen for the first time.
INSERT INTO sched_agent_msg (agent_id, msg_id)
SELECT %(agent_id)s::text, m.msg_id FROM unnest(%(msg_ids)s::text[]) AS m(msg_id)
ON CONFLICT (agent_id, msg_id) DO NOTHING
RETURNING msg_id

-- name: purge_agent_msgs
-- Retention: up to `limit` frame ids processed before `before` (the rows are never updated, so ctid is stable).
DELETE FROM sched_agent_msg
WHERE ctid = ANY(ARRAY(SELECT ctid FROM sched_agent_msg WHERE processed_at < %(before)s::timestamptz
                       LIMIT %(limit)s::integer))

-- name: list_matching_online_agents
-- Broadcast fan-out: the online agents (connected, not draining or disabled) that can run a task — the required
-- labels ⊆ agent labels and its command among the agent's capabilities — by id.
SELECT id
FROM sched_agent
WHERE status = 'online'
  AND labels @> %(labels)s::jsonb
  AND (capabilities -> 'commands') ? %(command)s::text
ORDER BY id
