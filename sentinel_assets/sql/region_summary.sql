-- Region summary: per region, how many devices were trusted, how many records went to
-- triage, what the recovery decisions are, and the worst upgrade path.
WITH trusted AS (
    SELECT region, count(*) AS devices
    FROM sanitized_fleet
    GROUP BY region
),
triage AS (
    SELECT partition_key AS region, count(*) AS quarantined
    FROM quarantine
    GROUP BY partition_key
),
actions AS (
    SELECT
        region,
        count(*) FILTER (WHERE action = 'retry') AS retry,
        count(*) FILTER (WHERE action = 'rollback') AS rollback,
        count(*) FILTER (WHERE action = 'defer') AS defer,
        count(*) FILTER (WHERE action = 'manual_triage') AS manual_triage,
        count(*) FILTER (WHERE action = 'hold') AS hold
    FROM recovery_decisions
    GROUP BY region
),
bottleneck AS (
    SELECT
        region,
        region_rank,
        arg_min(model || ' ' || firmware_from || '→' || firmware_to, cluster_rank) AS top_bottleneck,
        min_by(cluster_failures, cluster_rank) AS bottleneck_failures
    FROM regional_rank
    GROUP BY region, region_rank
)
SELECT
    t.region,
    b.region_rank,
    t.devices,
    coalesce(q.quarantined, 0) AS quarantined,
    quarantine_rate(coalesce(q.quarantined, 0), t.devices) AS quarantine_rate,
    coalesce(a.retry, 0) AS retry,
    coalesce(a.rollback, 0) AS rollback,
    coalesce(a.defer, 0) AS defer,
    coalesce(a.manual_triage, 0) AS manual_triage,
    coalesce(a.hold, 0) AS hold,
    b.top_bottleneck,
    b.bottleneck_failures
FROM trusted AS t
LEFT JOIN triage AS q USING (region)
LEFT JOIN actions AS a USING (region)
LEFT JOIN bottleneck AS b USING (region)
ORDER BY b.region_rank NULLS LAST, t.region;
