-- Servers (sched_server), leases (sched_lease) and the scheduler's uptime (sched_uptime).

-- name: register_server
INSERT INTO sched_server (id, name, address, status, started_at, last_heartbeat_at)
VALUES (%(id)s::uuid, %(name)s::text, %(address)s::text, 'active', now(), now())
ON CONFLICT (id) DO UPDATE
SET name = excluded.name, address = excluded.address, status = 'active', last_heartbeat_at = now()
RETURNING id, name, address, status, started_at, last_heartbeat_at,
          EXISTS (SELECT 1 FROM sched_lease l WHERE l.name = %(leader_lease)s::text AND l.holder = sched_server.id
                  AND l.expires_at > now()) AS is_leader

-- name: heartbeat_server
UPDATE sched_server SET last_heartbeat_at = now(), status = 'active'
WHERE id = %(id)s::uuid
RETURNING id

-- name: deactivate_server
UPDATE sched_server SET status = 'inactive' WHERE id = %(id)s::uuid RETURNING id

-- name: mark_stale_servers_inactive
UPDATE sched_server SET status = 'inactive'
WHERE status = 'active' AND last_heartbeat_at < %(before)s::timestamptz
RETURNING id

-- name: list_servers
SELECT s.id, s.name, s.address, s.status, s.started_at, s.last_heartbeat_at,
       EXISTS (SELECT 1 FROM sched_lease l WHERE l.name = %(leader_lease)s::text AND l.holder = s.id
               AND l.expires_at > now()) AS is_leader
FROM sched_server s
ORDER BY s.started_at, s.id

-- name: acquire_lease
-- Take or renew a lease. The holder renews its own live lease (same token); anyone takes an expired one with a
-- token one higher than before. Returns nothing when another holder's lease is still live.
INSERT INTO sched_lease AS l (name, holder, token, acquired_at, expires_at)
VALUES (%(name)s::text, %(holder)s::uuid, 1, now(), now() + make_interval(secs => %(ttl_secs)s::double precision))
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    token = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.acquired_at
                       ELSE now() END,
    expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at <= now()
RETURNING name, holder, token, acquired_at, expires_at

-- name: release_lease
-- Give a lease up at once (the row and its token stay, so the next token is still higher).
UPDATE sched_lease SET expires_at = now()
WHERE name = %(name)s::text AND holder = %(holder)s::uuid AND expires_at > now()
RETURNING name

-- name: get_lease
SELECT name, holder, token, acquired_at, expires_at FROM sched_lease WHERE name = %(name)s::text

-- name: hold_lease
-- Fencing inside a transaction: true while the caller still holds the lease with this token. The row stays
-- share-locked until the transaction ends, so nobody can take the lease over meanwhile.
SELECT name FROM sched_lease
WHERE name = %(name)s::text AND holder = %(holder)s::uuid AND token = %(token)s::bigint AND expires_at > now()
FOR SHARE

-- name: mark_scheduler_up
-- A server is up now (it registered or heartbeated). When the last sign of life of any server is older than
-- `gap_secs`, nothing was up in between — every server stopped, frozen or cut off from the database — and the
-- uptime starts again now. The row keeps the gap of its last writer, so readers can tell a stale row.
INSERT INTO sched_uptime AS u (id, up_since, seen_at, gap_secs)
VALUES (true, now(), now(), %(gap_secs)s::double precision)
ON CONFLICT (id) DO UPDATE
SET up_since = CASE WHEN u.seen_at < now() - make_interval(secs => u.gap_secs) THEN now() ELSE u.up_since END,
    seen_at = greatest(u.seen_at, now()),
    gap_secs = excluded.gap_secs
RETURNING up_since

-- name: scheduler_up_since
-- Since when the scheduler has been up without a gap. A row not renewed within its gap means nothing was up
-- until a moment ago (a database outage ends before the next heartbeat starts the uptime again), so the uptime
-- is no older than now; no row at all means no server ever said it was up.
SELECT coalesce((SELECT CASE WHEN u.seen_at >= now() - make_interval(secs => u.gap_secs) THEN u.up_since
                             ELSE now() END
                 FROM sched_uptime u),
                now()) AS up_since
