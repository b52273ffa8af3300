import dagster as dg

from sentinel_assets.defs.assets import FLEET_GROUP, REPORT_GROUP
from sentinel_assets.defs.executors import selected_executor

# A region's steps run one after another and each is vectorized already; a subprocess per
# step (Dagster's default) would add seconds of start-up to each of ~20 steps per region.
# Parallelism comes from running regions side by side, not steps. The production profile
# selects another executor by environment (SENTINEL_EXECUTOR, see defs/executors.py).
EXECUTOR = selected_executor()

fleet_refresh = dg.define_asset_job(
    "fleet_refresh",
    selection=dg.AssetSelection.groups(FLEET_GROUP),  # partitioned by region, like its assets
    executor_def=EXECUTOR,
    description="One region's shard end to end: generate, corrupt, sanitize, decide.",
)

regional_report = dg.define_asset_job(
    "regional_report",
    selection=dg.AssetSelection.groups(REPORT_GROUP),
    executor_def=EXECUTOR,
    description="Cross-region reports over every region's shard.",
)

fleet_and_reports = dg.define_asset_job(
    "fleet_and_reports",
    selection=dg.AssetSelection.groups(FLEET_GROUP, REPORT_GROUP),
    executor_def=EXECUTOR,
    description="A range of regions end to end, then the cross-region reports, in one run: "
    "what `sentinel demo` launches for the whole fleet (one run's start-up instead of one "
    "per region). Each region's shards and checks are still recorded per partition.",
)


@dg.definitions
def jobs() -> dg.Definitions:
    """The jobs, and the executor for materializations launched from the asset graph: in
    process too."""
    return dg.Definitions(
        jobs=[fleet_refresh, regional_report, fleet_and_reports], executor=EXECUTOR
    )
