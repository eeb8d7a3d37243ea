-- Statements about the database session itself rather than a table: probes, session settings, NOTIFY.

-- name: ping
-- Readiness probe.
SELECT 1 AS ok

-- name: set_session_utc
-- Run once per pooled connection: every timestamptz is returned in UTC.
SET TIME ZONE 'UTC'

-- name: set_session_idle_timeout
-- Run once per pooled connection when configured: PostgreSQL ends a session left idle inside a transaction for
-- this long (its server frozen or cut off mid-transaction), which releases the row locks it holds.
SELECT set_config('idle_in_transaction_session_timeout', %(timeout_ms)s::text, false)

-- name: notify
-- Wake every server listening on `channel`; delivered when the surrounding transaction commits.
SELECT pg_notify(%(channel)s::text, %(payload)s::text)
