-- Failure telemetry: how the failed and partial devices of each region spread over battery
-- and signal bands, next to all devices of the band, so a rate shows where failures gather.
-- A band includes its lower bound and excludes its upper one; NULL means open-ended. Bands are
-- fixed (below -110 dBm a download rarely finishes; 20 % battery is the common install gate)
-- so they compare across runs and regions.
WITH bands (measure, band_order, band, low, high) AS (
    VALUES
        ('battery_pct', 1, '0-20 %', NULL::DOUBLE, 20.0::DOUBLE),
        ('battery_pct', 2, '20-40 %', 20.0, 40.0),
        ('battery_pct', 3, '40-60 %', 40.0, 60.0),
        ('battery_pct', 4, '60-80 %', 60.0, 80.0),
        ('battery_pct', 5, '80-100 %', 80.0, NULL),
        ('signal_dbm', 1, 'unusable (< -110 dBm)', NULL, -110.0),
        ('signal_dbm', 2, 'weak (-110 to -100 dBm)', -110.0, -100.0),
        ('signal_dbm', 3, 'fair (-100 to -90 dBm)', -100.0, -90.0),
        ('signal_dbm', 4, 'good (>= -90 dBm)', -90.0, NULL)
),
readings AS (
    UNPIVOT (
        SELECT
            region,
            update_status,
            CAST(battery_pct AS DOUBLE) AS battery_pct,
            CAST(signal_dbm AS DOUBLE) AS signal_dbm
        FROM sanitized_fleet
    )
    ON battery_pct, signal_dbm
    INTO NAME measure VALUE reading
),
-- Devices per distinct reading first (a few thousand rows for millions of devices), so the
-- band join below compares those, not every device.
reading_counts AS (
    SELECT
        region,
        measure,
        reading,
        count(*) AS devices,
        count(*) FILTER (WHERE update_status = 'failed') AS failed,
        count(*) FILTER (WHERE update_status = 'partial') AS partial
    FROM readings
    GROUP BY region, measure, reading
),
regions AS (
    SELECT DISTINCT region FROM reading_counts
),
banded AS (
    SELECT
        r.region,
        b.measure,
        b.band_order,
        b.band,
        CAST(coalesce(sum(d.devices), 0) AS BIGINT) AS devices,
        CAST(coalesce(sum(d.failed), 0) AS BIGINT) AS failed,
        CAST(coalesce(sum(d.partial), 0) AS BIGINT) AS partial
    FROM regions AS r
    CROSS JOIN bands AS b
    LEFT JOIN reading_counts AS d
        ON d.region = r.region
        AND d.measure = b.measure
        AND (b.low IS NULL OR d.reading >= b.low)
        AND (b.high IS NULL OR d.reading < b.high)
    GROUP BY r.region, b.measure, b.band_order, b.band
)
SELECT
    region,
    measure,
    CAST(band_order AS BIGINT) AS band_order,
    band,
    devices,
    failed,
    partial,
    (failed + partial) / nullif(devices, 0) AS failure_rate,
    coalesce(
        (failed + partial) / nullif(sum(failed + partial) OVER (PARTITION BY region, measure), 0),
        0.0
    ) AS share_of_region_failures
FROM banded
ORDER BY region, measure, band_order;
