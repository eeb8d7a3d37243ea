-- Log chunks (sched_task_log).

-- name: insert_log_chunks
-- Many chunks in one statement, positioned (id) in the order given; a chunk already stored (same instance,
-- stream, seq: a resend), for an unknown instance, or sent by an agent (`agent_id` given) that does not run that
-- instance is skipped. Returns the chunks stored.
INSERT INTO sched_task_log (instance_id, stream, seq, ts, content)
SELECT u.instance_id, u.stream, u.seq, coalesce(u.ts, now()), u.content
FROM unnest(%(instance_ids)s::uuid[], %(streams)s::text[], %(seqs)s::bigint[], %(tss)s::timestamptz[],
            %(contents)s::bytea[], %(agent_ids)s::text[])
     WITH ORDINALITY AS u(instance_id, stream, seq, ts, content, agent_id, position)
WHERE EXISTS (SELECT 1 FROM sched_task_instance i
              WHERE i.id = u.instance_id AND (u.agent_id IS NULL OR i.agent_id = u.agent_id))
ORDER BY u.position
ON CONFLICT (instance_id, stream, seq) DO NOTHING
RETURNING instance_id, stream, seq

-- name: read_logs
-- An attempt's chunks in arrival order after the cursor.
SELECT id, instance_id, stream, seq, ts, content
FROM sched_task_log
WHERE instance_id = %(instance_id)s::uuid AND id > %(after_id)s::bigint
ORDER BY id
LIMIT %(limit)s::integer

-- name: delete_logs_before
-- Retention: up to `limit` chunks older than `before`.
DELETE FROM sched_task_log
WHERE ctid = ANY(ARRAY(SELECT ctid FROM sched_task_log WHERE ts < %(before)s::timestamptz
                       LIMIT %(limit)s::integer))
