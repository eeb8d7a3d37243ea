-- Log chunks (sched_task_log).

-- name: insert_log_chunks
-- Many chunks in one statement, positioned (id) in the order given. Skipped: a chunk already stored (same
-- instance, stream, seq: a resend), one for an unknown instance, one sent by an agent (`agent_id` given) that does
-- not run that instance, and one for an attempt that ended more than `grace_secs` ago (by the server's clock:
-- its last change) or whose log was truncated. Each attempt stores at most `max_bytes` of content: the first
-- chunk beyond it is stored as `marker` instead and the attempt's log is truncated from then on. The attempts
-- are locked in id order, so concurrent batches count one attempt's bytes one after the other. Returns the
-- chunks stored.
WITH u AS (
    SELECT *
    FROM unnest(%(instance_ids)s::uuid[], %(streams)s::text[], %(seqs)s::bigint[], %(tss)s::timestamptz[],
                %(contents)s::bytea[], %(agent_ids)s::text[])
         WITH ORDINALITY AS u(instance_id, stream, seq, ts, content, agent_id, position)
), target AS (
    SELECT i.id, i.agent_id, i.log_bytes
    FROM sched_task_instance i
    WHERE i.id IN (SELECT instance_id FROM u)
      AND NOT i.log_truncated
      AND (i.status IN ('dispatched', 'running')
           OR i.updated_at >= now() - make_interval(secs => %(grace_secs)s::double precision))
    ORDER BY i.id
    FOR UPDATE
), fresh AS (
    SELECT u.instance_id, u.stream, u.seq, u.ts, u.content, u.position,
           t.log_bytes + sum(octet_length(u.content)) OVER (PARTITION BY u.instance_id ORDER BY u.position)
               AS upto
    FROM u
    JOIN target t ON t.id = u.instance_id
    WHERE (u.agent_id IS NULL OR t.agent_id = u.agent_id)
      AND NOT EXISTS (SELECT 1 FROM sched_task_log l
                      WHERE l.instance_id = u.instance_id AND l.stream = u.stream AND l.seq = u.seq)
), kept AS (
    -- Every chunk within the quota, and the one that crosses it (as the marker).
    SELECT instance_id, stream, seq, ts, position, upto > %(max_bytes)s::bigint AS truncates,
           CASE WHEN upto > %(max_bytes)s::bigint THEN %(marker)s::bytea ELSE content END AS content
    FROM fresh
    WHERE upto - octet_length(content) <= %(max_bytes)s::bigint
), counted AS (
    UPDATE sched_task_instance i
    SET log_bytes = i.log_bytes + c.bytes, log_truncated = c.truncates
    FROM (SELECT instance_id, sum(CASE WHEN truncates THEN 0 ELSE octet_length(content) END) AS bytes,
                 bool_or(truncates) AS truncates
          FROM kept GROUP BY instance_id) c
    WHERE i.id = c.instance_id
)
INSERT INTO sched_task_log (instance_id, stream, seq, ts, content)
SELECT instance_id, stream, seq, coalesce(ts, now()), content
FROM kept
ORDER BY position
ON CONFLICT (instance_id, stream, seq) DO NOTHING
RETURNING instance_id, stream, seq

-- name: read_logs
-- An attempt's chunks in arrival order after the cursor: at most `limit` chunks, and no more chunks once they
-- hold `max_bytes` of content (the first chunk always comes, whatever its size).
SELECT id, instance_id, stream, seq, ts, content
FROM (SELECT id, instance_id, stream, seq, ts, content,
             sum(octet_length(content)) OVER (ORDER BY id) - octet_length(content) AS before
      FROM (SELECT id, instance_id, stream, seq, ts, content
            FROM sched_task_log
            WHERE instance_id = %(instance_id)s::uuid AND id > %(after_id)s::bigint
            ORDER BY id
            LIMIT %(limit)s::integer) AS page) AS sized
WHERE before < %(max_bytes)s::bigint
ORDER BY id

-- name: delete_logs_before
-- Retention: up to `limit` chunks older than `before`.
DELETE FROM sched_task_log
WHERE ctid = ANY(ARRAY(SELECT ctid FROM sched_task_log WHERE ts < %(before)s::timestamptz
                       LIMIT %(limit)s::integer))
