-- Failure clusters: each upgrade path (model, firmware_from -> firmware_to) of each region with
-- its failed and partial devices, its share of the region's failures, its RANK() by failures
-- within the region (ties share a rank, the next rank is skipped) and its DENSE_RANK() by
-- failure rate across the whole fleet (ties share a rank, no gaps).
WITH clusters AS (
    SELECT
        region,
        model,
        firmware_from,
        firmware_to,
        count(*) AS devices,
        count(*) FILTER (WHERE update_status = 'failed') AS failed,
        count(*) FILTER (WHERE update_status = 'partial') AS partial,
        count(*) FILTER (WHERE is_unhealthy(update_status)) AS failures
    FROM sanitized_fleet
    GROUP BY region, model, firmware_from, firmware_to
),
measured AS (
    SELECT
        *,
        failures / devices AS failure_rate,
        sum(failures) OVER (PARTITION BY region) AS region_failures
    FROM clusters
)
SELECT
    region,
    model,
    firmware_from,
    firmware_to,
    devices,
    failed,
    partial,
    failures,
    failure_rate,
    coalesce(failures / nullif(region_failures, 0), 0.0) AS share_of_region_failures,
    RANK() OVER (PARTITION BY region ORDER BY failures DESC) AS cluster_rank,
    DENSE_RANK() OVER (ORDER BY failure_rate DESC) AS fleet_rate_rank
FROM measured
ORDER BY region, cluster_rank, model, firmware_from;
