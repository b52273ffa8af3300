import dagster as dg

from sentinel_assets.defs.assets import FLEET_GROUP, REPORT_GROUP
from sentinel_assets.defs.partitions import region_partitions

fleet_refresh = dg.define_asset_job(
    "fleet_refresh",
    selection=dg.AssetSelection.groups(FLEET_GROUP),
    partitions_def=region_partitions,
    description="One region's shard end to end: generate, corrupt, sanitize, decide.",
)

regional_report = dg.define_asset_job(
    "regional_report",
    selection=dg.AssetSelection.groups(REPORT_GROUP),
    description="Cross-region reports over every region's shard.",
)
