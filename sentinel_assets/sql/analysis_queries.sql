-- Sentinel analyst queries: run them unchanged against the warehouse file, e.g.
--   duckdb -readonly .sentinel/warehouse.duckdb < sentinel_assets/sql/analysis_queries.sql
-- (read-only, so it is safe beside a running pipeline). They read the warehouse views
-- (sanitized_fleet, quarantine, recovery_decisions, recovery_outcomes, ...) and the report
-- tables (failure_clusters, campaign_report, ...) that `make demo` materializes; the last
-- queries read the time-series views and the star schema (`make demo` ends with
-- `sentinel timeseries`, which builds them).
-- Each query starts with its question (`-- Q:`) and the columns it returns (`-- columns:`).
-- Join the region-partitioned tables on `record_id` alone: it is unique across the whole
-- warehouse (region number x 10^12 + the record's sequence in its region). `partition_key` is
-- the region shard a row is stored in, and is never corrupted (unlike `region`).

-- Q: How many devices are in each update status, fleet-wide, as the campaign stands?
-- columns: update_status, devices
SELECT update_status, count(*) AS devices
FROM sanitized_fleet
GROUP BY update_status
ORDER BY devices DESC;

-- Q: How do the fleet's status counts change once the recovery decisions are applied?
-- columns: status, before, after
SELECT
    status,
    coalesce(sum(devices) FILTER (WHERE phase = 'before'), 0)::BIGINT AS before,
    coalesce(sum(devices) FILTER (WHERE phase = 'after'), 0)::BIGINT AS after
FROM status_before_after
WHERE region = 'all'
GROUP BY status
ORDER BY list_position(
    ['success', 'partial', 'failed', 'pending', 'recovered', 'rolled_back',
     'still_failed', 'deferred', 'held', 'in_triage'],
    status
);

-- Q: Which regions' campaigns are halted, and what numbers triggered the halt?
-- columns: region, campaign, attempted, failures, failure_pct, threshold_pct, abort_min_attempted, held_devices
SELECT
    region,
    campaign,
    attempted,
    failures,
    round(100 * failure_rate, 1) AS failure_pct,
    round(100 * abort_failure_rate, 1) AS threshold_pct,
    abort_min_attempted,
    held_devices
FROM campaign_report
ORDER BY campaign = 'halted' DESC, failure_rate DESC;

-- Q: How do regions rank by their share of failed or partial devices, and how much of their data was quarantined?
-- columns: region_rank, region, devices, unhealthy_pct, quarantine_pct
SELECT DISTINCT
    region_rank,
    region,
    devices,
    round(100 * unhealthy_rate, 1) AS unhealthy_pct,
    round(100 * quarantine_rate, 2) AS quarantine_pct
FROM regional_rank
ORDER BY region_rank, region;

-- Q: Which upgrade path (model, firmware) holds the most failures in each region, and what share of the region's failures is it?
-- columns: region, model, firmware_from, firmware_to, failures, failure_pct, share_of_region_pct
SELECT
    region,
    model,
    firmware_from,
    firmware_to,
    failures,
    round(100 * failure_rate, 1) AS failure_pct,
    round(100 * share_of_region_failures, 1) AS share_of_region_pct
FROM failure_clusters
WHERE cluster_rank = 1
ORDER BY failures DESC, region;

-- Q: Which region x model combinations have the highest failure rate (the heatmap's hottest cells)?
-- columns: region, model, devices, failures, failure_pct
SELECT
    region,
    model,
    sum(devices)::BIGINT AS devices,
    sum(failures)::BIGINT AS failures,
    round(100 * sum(failures) / sum(devices), 1) AS failure_pct
FROM failure_clusters
GROUP BY region, model
ORDER BY failure_pct DESC, region, model
LIMIT 10;

-- Q: Do failed and partial updates gather at low battery or weak signal?
-- columns: measure, band, devices, failed, partial, failure_pct
SELECT
    measure,
    band,
    sum(devices)::BIGINT AS devices,
    sum(failed)::BIGINT AS failed,
    sum(partial)::BIGINT AS partial,
    round(100 * sum(failed + partial) / nullif(sum(devices), 0), 1) AS failure_pct
FROM failure_telemetry
GROUP BY measure, band_order, band
ORDER BY measure, band_order;

-- Q: What fills the manual-triage queue, fleet-wide, by reason code?
-- columns: source, reason_code, records
SELECT source, reason_code, sum(records)::BIGINT AS records
FROM triage_queue
GROUP BY source, reason_code
ORDER BY records DESC, source, reason_code
LIMIT 15;

-- Q: Why are partial (uncommitted) devices not all rolled back right away?
-- columns: action, reason_code, devices
SELECT action, reason_code, count(*) AS devices
FROM recovery_decisions
WHERE update_status = 'partial'
GROUP BY action, reason_code
ORDER BY devices DESC;

-- Q: Which devices are due for a retry first?
-- columns: next_attempt_at, region, device_id, model, failure_kind, reason
SELECT next_attempt_at, region, device_id, model, failure_kind, reason
FROM recovery_decisions
WHERE action = 'retry'
ORDER BY next_attempt_at, region, device_id
LIMIT 20;

-- Q: How often did retries and rollbacks work in the simulation, per region, against the odds the model gave them?
-- columns: region, action, attempts, worked, worked_pct, expected_pct
SELECT
    region,
    action,
    count(*) AS attempts,
    count(*) FILTER (WHERE status_after IN ('recovered', 'rolled_back')) AS worked,
    round(100 * worked / attempts, 1) AS worked_pct,
    round(100 * avg(success_probability), 1) AS expected_pct
FROM recovery_outcomes
WHERE action IN ('retry', 'rollback')
GROUP BY region, action
ORDER BY region, action;

-- Q: Which injected faults did the sanitizer catch, traced from the chaos ledger to the quarantined record on the record key?
-- columns: fault_kind, faults, quarantined, contained_pct, same_shard
SELECT
    l.fault_kind,
    count(*) AS faults,
    count(q.record_id) AS quarantined,
    round(100 * count(q.record_id) / count(*), 1) AS contained_pct,
    count(*) FILTER (WHERE q.partition_key = l.partition_key) AS same_shard
FROM chaos_ledger AS l
LEFT JOIN quarantine AS q USING (record_id)
GROUP BY l.fault_kind
ORDER BY faults DESC, l.fault_kind;

-- Q: How did the devices end up after each action the policy took (decisions joined to outcomes on the record key)?
-- columns: action, status_after, devices
SELECT d.action, o.status_after, count(*) AS devices
FROM recovery_decisions AS d
JOIN recovery_outcomes AS o USING (record_id)
GROUP BY d.action, o.status_after
ORDER BY d.action, devices DESC, o.status_after;

-- --- Telemetry over time: the time-series views and the star schema (`sentinel timeseries`) ---
-- fact_telemetry has one row per real reading; its valid_until is the device's next reading, so the
-- state at a time T is a range lookup. dim_device is SCD type 2: one version per model, site,
-- hardware revision and running firmware, valid over [valid_from, valid_to).

-- Q: What state was each device in at a given time (here 2026-10-31 12:00 UTC), with the device version then in force?
-- columns: region, device_id, firmware_version, model, ts, valid_until, update_status, battery_pct, temperature_c
SELECT d.region, d.device_id, d.firmware_version, d.model, f.ts, f.valid_until,
       f.update_status, f.battery_pct, f.temperature_c
FROM fact_telemetry AS f
JOIN dim_device AS d USING (device_key)
WHERE f.ts <= TIMESTAMPTZ '2026-10-31 12:00:00+00'
  AND (f.valid_until > TIMESTAMPTZ '2026-10-31 12:00:00+00' OR f.valid_until IS NULL)
ORDER BY d.region, d.device_id;

-- Q: How complete is each region's telemetry per day (readings received vs expected, interpolated and outage shares)?
-- columns: region, event_date, devices, readings_received, readings_expected, coverage_pct, interpolated_pct, outage_pct
SELECT region, event_date, devices, readings_received, readings_expected,
       round(100 * coverage, 1) AS coverage_pct,
       round(100 * interpolated_share, 1) AS interpolated_pct,
       round(100 * outage_share, 1) AS outage_pct
FROM daily_region_stats
ORDER BY region, event_date;

-- Q: Which firmware versions have the highest anomaly rate (devices with an episode per device running that firmware at the episode's start)?
-- columns: firmware_version, devices, devices_with_anomaly, anomaly_rate_pct
WITH running AS (
    SELECT DISTINCT d.firmware_version, d.region, d.device_id
    FROM dim_device AS d
),
anomalous AS (
    SELECT DISTINCT d.firmware_version, a.region, a.device_id
    FROM telemetry_anomalies AS a
    JOIN dim_device AS d
      ON d.region = a.region AND d.device_id = a.device_id
     AND a.episode_start_ts >= d.valid_from
     AND (a.episode_start_ts < d.valid_to OR d.valid_to IS NULL)
)
SELECT r.firmware_version,
       count(*) AS devices,
       count(a.device_id) AS devices_with_anomaly,
       round(100 * count(a.device_id) / count(*), 2) AS anomaly_rate_pct
FROM running AS r
LEFT JOIN anomalous AS a USING (firmware_version, region, device_id)
GROUP BY r.firmware_version
ORDER BY anomaly_rate_pct DESC, r.firmware_version;
