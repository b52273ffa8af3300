-- Campaign status per region: running or halted by the abort rule (failure rate among devices
-- that attempted the update >= abort_failure_rate, once at least abort_min_attempted
-- attempted), the numbers that decided it, and how many updates the halt holds back.
WITH held AS (
    SELECT region, count(*) AS held_devices
    FROM recovery_decisions
    WHERE action = 'hold'
    GROUP BY region
)
SELECT
    c.region,
    CASE WHEN c.halted THEN 'halted' ELSE 'running' END AS campaign,
    c.attempted,
    c.failures,
    c.failure_rate,
    c.abort_failure_rate,
    c.abort_min_attempted,
    coalesce(h.held_devices, 0) AS held_devices,
    CASE
        WHEN c.halted THEN printf(
            'halted: %d of %d attempted failed (%.1f %% >= %.1f %%, min %d attempted); %d updates held',
            c.failures, c.attempted, 100 * c.failure_rate, 100 * c.abort_failure_rate,
            c.abort_min_attempted, coalesce(h.held_devices, 0)
        )
        WHEN c.attempted < c.abort_min_attempted THEN printf(
            'running: %d attempted, abort rule applies from %d',
            c.attempted, c.abort_min_attempted
        )
        ELSE printf(
            'running: %d of %d attempted failed (%.1f %% < %.1f %%)',
            c.failures, c.attempted, 100 * c.failure_rate, 100 * c.abort_failure_rate
        )
    END AS summary
FROM campaign_status AS c
LEFT JOIN held AS h USING (region)
ORDER BY c.halted DESC, c.failure_rate DESC, c.region;
