import os

import dagster as dg

from sentinel_assets.contracts import REGIONS

region_partitions = dg.StaticPartitionsDefinition(list(REGIONS))

# Dagster's run tags: the partition a run materializes, or the range a run over several does.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# Telemetry (issue 11): one partition per landed batch file (its content hash, added by the
# landing sensor), and events by date x region. A MultiPartitionsDefinition orders its
# dimensions by name, so keys read `2026-10-31|us-east` (`telemetry.lake.partition_key`).
TELEMETRY_START_DATE = os.environ.get("SENTINEL_TELEMETRY_START_DATE") or "2026-10-01"
landing_batches = dg.DynamicPartitionsDefinition(name="landing_batches")
event_partitions = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date=TELEMETRY_START_DATE),
        "region": region_partitions,
    }
)
