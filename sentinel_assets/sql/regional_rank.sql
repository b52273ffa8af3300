-- Regional rank: which regions the OTA campaign is failing worst, and within each region,
-- which upgrade paths (model, firmware_from -> firmware_to) hold the most failed or partial
-- devices. Reads the warehouse views; run it as is with the duckdb CLI:
--   duckdb .sentinel/warehouse.duckdb < sentinel_assets/sql/regional_rank.sql
WITH region_health AS (
    SELECT
        region,
        count(*) AS devices,
        count(*) FILTER (WHERE update_status = 'failed') AS failed,
        count(*) FILTER (WHERE update_status = 'partial') AS partial,
        count(*) FILTER (WHERE is_unhealthy(update_status)) AS unhealthy
    FROM sanitized_fleet
    GROUP BY region
),
region_quarantine AS (
    SELECT partition_key AS region, count(*) AS quarantined
    FROM quarantine
    GROUP BY partition_key
),
ranked_regions AS (
    SELECT
        h.region,
        h.devices,
        h.failed,
        h.partial,
        h.unhealthy / h.devices AS unhealthy_rate,
        coalesce(q.quarantined, 0) AS quarantined,
        quarantine_rate(coalesce(q.quarantined, 0), h.devices) AS quarantine_rate,
        RANK() OVER (ORDER BY h.unhealthy / h.devices DESC) AS region_rank
    FROM region_health AS h
    LEFT JOIN region_quarantine AS q USING (region)
),
clusters AS (
    SELECT
        region,
        model,
        firmware_from,
        firmware_to,
        count(*) AS cluster_devices,
        count(*) FILTER (WHERE is_unhealthy(update_status)) AS cluster_failures
    FROM sanitized_fleet
    GROUP BY region, model, firmware_from, firmware_to
),
ranked_clusters AS (
    SELECT
        *,
        cluster_failures / cluster_devices AS cluster_failure_rate,
        RANK() OVER (PARTITION BY region ORDER BY cluster_failures DESC) AS cluster_rank
    FROM clusters
)
SELECT
    r.region,
    r.region_rank,
    r.devices,
    r.failed,
    r.partial,
    r.unhealthy_rate,
    r.quarantined,
    r.quarantine_rate,
    c.model,
    c.firmware_from,
    c.firmware_to,
    c.cluster_devices,
    c.cluster_failures,
    c.cluster_failure_rate,
    c.cluster_rank
FROM ranked_regions AS r
JOIN ranked_clusters AS c USING (region)
ORDER BY r.region_rank, r.region, c.cluster_rank, c.model, c.firmware_from;
