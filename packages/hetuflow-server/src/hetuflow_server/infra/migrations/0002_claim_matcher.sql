-- 0002_claim_matcher: the dispatcher's "can one of these agents run this task" test as a function.
--
-- Written inline in the claim query (an EXISTS over the profiles parameter), the test gets a join selectivity
-- estimate near zero, so with a backlog of pending tasks the planner reads and sorts every pending row instead of
-- walking sched_task_claim_idx in priority order and stopping at the batch size (80 ms instead of 2 ms for a
-- 200-task batch out of 20,000). Behind a PL/pgSQL function (never inlined) it gets the default estimate and the
-- index order wins. IMMUTABLE: the answer depends on the arguments only.

CREATE FUNCTION sched_task_runnable(config jsonb, profiles jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    -- Some profile has every label the task requires (required ⊆ agent labels) and can run its command.
    RETURN EXISTS (
        SELECT 1
        FROM jsonb_array_elements(profiles) AS p(profile)
        WHERE coalesce(config -> 'target' -> 'labels', '{}'::jsonb) <@ (p.profile -> 'labels')
          AND (p.profile -> 'commands') ? (config ->> 'command')
    );
END
$$;
