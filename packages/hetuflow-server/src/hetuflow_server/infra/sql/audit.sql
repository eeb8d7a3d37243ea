-- The audit trail of API changes (sched_audit).

-- name: insert_audit
-- Written in the transaction of the change it records (sent with its COMMIT: nothing reads it back).
INSERT INTO sched_audit (actor, actor_jti, scope, action, method, path, target, summary)
VALUES (%(actor)s::text, %(actor_jti)s::uuid, %(scope)s::text, %(action)s::text, %(method)s::text,
        %(path)s::text, %(target)s::text, %(summary)s::jsonb)

-- name: list_audit
-- Newest first, before the cursor id; every filter given must match (`actor` is a token name or jti).
SELECT id, at, actor, actor_jti, scope, action, method, path, target, summary
FROM sched_audit
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (%(target)s::text IS NULL OR target = %(target)s::text)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text OR actor_jti::text = %(actor)s::text)
ORDER BY id DESC
LIMIT %(limit)s::integer

-- name: delete_audit_before
-- Retention: up to `limit` entries older than `before`.
DELETE FROM sched_audit
WHERE ctid = ANY(ARRAY(SELECT ctid FROM sched_audit WHERE at < %(before)s::timestamptz LIMIT %(limit)s::integer))
