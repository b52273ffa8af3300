-- Status before and after recovery: the campaign's `update_status` counts as they stood, and
-- each device's status once the recovery decisions were applied (recovery_outcomes), per
-- region and for the whole fleet (region = 'all'). share = devices / devices of the region.
WITH per_region AS (
    SELECT region, 'before' AS phase, status_before AS status, count(*) AS devices
    FROM recovery_outcomes
    GROUP BY ALL
    UNION ALL
    SELECT region, 'after' AS phase, status_after AS status, count(*) AS devices
    FROM recovery_outcomes
    GROUP BY ALL
),
with_fleet AS (
    SELECT * FROM per_region
    UNION ALL
    SELECT 'all' AS region, phase, status, CAST(sum(devices) AS BIGINT) AS devices
    FROM per_region
    GROUP BY phase, status
)
SELECT
    region,
    phase,
    status,
    devices,
    devices / sum(devices) OVER (PARTITION BY region, phase) AS share
FROM with_fleet
ORDER BY
    region = 'all',
    region,
    phase = 'after',
    list_position(
        ['success', 'partial', 'failed', 'pending', 'recovered', 'rolled_back',
         'still_failed', 'deferred', 'held', 'in_triage'],
        status
    );
