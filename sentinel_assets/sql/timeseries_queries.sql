-- Queries on the time-series views and the star schema (`sentinel timeseries` builds them).
-- Same format as analysis_queries.sql: each query is led by its question and its columns.

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
