-- Region x model failure rate (failed + partial over devices), the data of the heatmap.
-- Reads the failure_clusters report table.
SELECT
    region,
    model,
    CAST(sum(devices) AS BIGINT) AS devices,
    CAST(sum(failures) AS BIGINT) AS failures,
    sum(failures) / sum(devices) AS failure_rate
FROM failure_clusters
GROUP BY region, model
ORDER BY region, model;
