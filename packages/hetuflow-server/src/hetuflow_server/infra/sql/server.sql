-- Servers (sched_server) and leases (sched_lease).

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
