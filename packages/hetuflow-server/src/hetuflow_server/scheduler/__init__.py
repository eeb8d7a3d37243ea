"""The leader's loops: what turns schedules into tasks, on the one server holding the leader lease.

- ``leader``: the lease itself (``Leadership``: ``is_leader``, ``tenure``, ``fence`` for singleton work).
- ``generator``: materialises the slots of clock schedules as tasks ahead of time.
- ``flow_fires``: starts a flow run for each due slot of a flow schedule (the generator hands them over).
- ``daemon``: keeps one run of each daemon schedule alive, restarting it with backoff.

The schedule math they use is pure and lives in ``hetuflow_server.triggers``; what they write goes through
the services and BMCs like any other change.
"""
