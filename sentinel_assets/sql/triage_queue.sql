-- Triage queue: what a person has to look at, by reason code, per region. Records come from
-- two places: quarantine (broke the data contract; `reasons` is a list of 'column:rule'
-- codes, one record can carry several) and recovery (decided `manual_triage`, with the code
-- of the policy rule that sent it). share_of_queue = records with the code / records of the
-- region's queue from that source.
WITH quarantine_codes AS (
    SELECT partition_key AS region, record_id, unnest(reasons) AS reason_code
    FROM quarantine
),
recovery_codes AS (
    SELECT region, record_id, reason_code
    FROM recovery_decisions
    WHERE action = 'manual_triage'
),
coded AS (
    SELECT 'quarantine' AS source, * FROM quarantine_codes
    UNION ALL
    SELECT 'recovery' AS source, * FROM recovery_codes
),
counted AS (
    SELECT
        region,
        source,
        reason_code,
        count(DISTINCT record_id) AS records
    FROM coded
    GROUP BY region, source, reason_code
),
queue AS (
    SELECT region, source, count(DISTINCT record_id) AS queue_records
    FROM coded
    GROUP BY region, source
)
SELECT
    c.region,
    c.source,
    c.reason_code,
    c.records,
    q.queue_records,
    c.records / q.queue_records AS share_of_queue,
    RANK() OVER (PARTITION BY c.region, c.source ORDER BY c.records DESC) AS reason_rank
FROM counted AS c
JOIN queue AS q USING (region, source)
ORDER BY c.region, c.source, reason_rank, c.reason_code;
