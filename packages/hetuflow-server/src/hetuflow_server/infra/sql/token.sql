-- Issued tokens (sched_token): what is needed to list and revoke them, never the token itself.

-- name: insert_token
INSERT INTO sched_token (jti, name, scope, subject, created_at, expires_at, created_by)
VALUES (%(jti)s::uuid, %(name)s::text, %(scope)s::text, %(subject)s::text, %(created_at)s::timestamptz,
        %(expires_at)s::timestamptz, %(created_by)s::text)
RETURNING jti, name, scope, subject, created_at, expires_at, revoked_at

-- name: get_token
SELECT jti, name, scope, subject, created_at, expires_at, revoked_at FROM sched_token WHERE jti = %(jti)s::uuid

-- name: list_tokens
SELECT jti, name, scope, subject, created_at, expires_at, revoked_at
FROM sched_token
WHERE %(include_revoked)s::boolean OR revoked_at IS NULL
ORDER BY created_at, jti

-- name: revoke_token
-- Revoking twice keeps the first revocation time.
UPDATE sched_token SET revoked_at = coalesce(revoked_at, now())
WHERE jti = %(jti)s::uuid
RETURNING jti, name, scope, subject, created_at, expires_at, revoked_at

-- name: select_tokens
-- The records of the tokens holding live connections, for the periodic check that ends revoked ones.
SELECT jti, name, scope, subject, created_at, expires_at, revoked_at
FROM sched_token
WHERE jti = ANY(%(jtis)s::uuid[])
