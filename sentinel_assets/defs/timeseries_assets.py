"""Telemetry over time: per date x region partition, the devices' regular time series, their
anomaly episodes and daily statistics; over the whole lake, the star schema for BI tools.

Each partitioned asset reads `telemetry_events` of its day and of the adjacent days (the
partition mapping says so), so results do not depend on how a backfill was split. The domain
work is `sentinel_assets.timeseries`; this module declares the assets, writes their files
(`timeseries.store`), refreshes the catalog views and reports the checks, all in the step.
The anomaly-rate check of `daily_region_stats` is not blocking: when it fails, the
`check_failure_alerts` sensor raises the alert.
"""

from datetime import date

import dagster as dg
import polars as pl
from pydantic import Field

from sentinel_assets.contracts import ASSET_CONTRACTS, device_timeseries_schema
from sentinel_assets.defs.config import TimeseriesConfig
from sentinel_assets.defs.metadata import contract_metadata, dashboard_link, markdown
from sentinel_assets.defs.partitions import event_partitions
from sentinel_assets.defs.resources import WarehouseCatalog
from sentinel_assets.defs.telemetry_assets import contract_check
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.reports import markdown_image, write_chart
from sentinel_assets.telemetry import lake
from sentinel_assets.timeseries import chart, star, store, verify
from sentinel_assets.timeseries.day import build_day
from sentinel_assets.timeseries.readings import clean_readings, partition_readings

GROUP = "timeseries"


class TimeseriesResource(dg.ConfigurableResource):
    """The time-series settings of a run, shared by every time-series asset."""

    settings: TimeseriesConfig = Field(default_factory=TimeseriesConfig)


ADJACENT_DAYS = dg.MultiPartitionMapping(
    {
        "date": dg.DimensionPartitionMapping(
            "date",
            dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "region": dg.DimensionPartitionMapping("region", dg.IdentityPartitionMapping()),
    }
)


def _spec(asset: str, name: str, doc: str | None, *, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name, asset=asset, blocking=blocking, partitions_def=event_partitions, description=doc
    )


def _finding(asset: str, name: str, finding: verify.Finding) -> dg.AssetCheckResult:
    metadata: dict[str, object] = dict(finding.counts)
    if not finding.passed:
        metadata["examples"] = markdown(finding.examples, rows=10)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=finding.passed,
        metadata=metadata,
        severity=(
            dg.AssetCheckSeverity.WARN
            if name == "anomaly_rate_within_limit"
            else dg.AssetCheckSeverity.ERROR
        ),
    )


def _partition(context: dg.AssetExecutionContext) -> tuple[date, str]:
    day, region = lake.split_partition_key(str(context.partition_key))
    return date.fromisoformat(day), region


def _refresh_views(catalog: WarehouseCatalog) -> None:
    with catalog.get_connection() as conn:
        store.create_views(conn, catalog.tables_root)


def _rule_counts(anomalies: pl.DataFrame) -> dict[str, int]:
    return dict(anomalies.group_by("rule").len().sort("rule").iter_rows())


# The four tables one date x region step writes: (description, upstream).
_ADJACENT_EVENTS = [dg.AssetDep("telemetry_events", partition_mapping=ADJACENT_DAYS)]
DAY_TABLES: dict[str, tuple[str, list]] = {
    "device_timeseries": (
        "Per device and grid slot (default 15 min) of the day: battery %, "
        "voltage V, temperature °C/°F and signal dBm, each slot `is_measured` (mean of its "
        "readings), `is_interpolated` (linear in time between real readings at most "
        "max_interpolation_gap apart) or `is_outage` (NULL, never bridged); with trailing "
        "1 h / 24 h means, reading counts and battery drain %/h over real readings only.",
        _ADJACENT_EVENTS,
    ),
    "telemetry_anomalies": (
        "One row per device, rule and anomaly episode within the day (hot and "
        "low battery, voltage sag, signal collapse, temperature z-score): start, end, "
        "readings, peak values and the thresholds in force.",
        _ADJACENT_EVENTS,
    ),
    "daily_device_stats": (
        "Per device and day: readings received vs expected (coverage), "
        "interpolated and outage shares, anomaly episodes, min/max/mean/p05/p50/p95.",
        ["device_timeseries", "telemetry_anomalies"],
    ),
    "daily_region_stats": (
        "Per region and day: devices, coverage, interpolated share, anomaly "
        "episodes by rule and the share of devices with one (alert above "
        "max_anomaly_rate), value statistics.",
        ["daily_device_stats", "telemetry_anomalies"],
    ),
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            description=description,
            deps=deps,
            partitions_def=event_partitions,
            group_name=GROUP,
            kinds={"polars", "parquet"},
            metadata={**contract_metadata(name), **dashboard_link(name)},
        )
        for name, (description, deps) in DAY_TABLES.items()
    ],
    check_specs=[
        *(
            _spec(a, "contract", f"Every row of {a} satisfies its Pandera contract.")
            for a in DAY_TABLES
        ),
        _spec(
            "device_timeseries",
            "no_interpolation_across_long_gaps",
            verify.no_interpolation_across_long_gaps.__doc__,
        ),
        _spec(
            "device_timeseries",
            "interpolated_between_neighbours",
            verify.interpolated_between_neighbours.__doc__,
        ),
        _spec(
            "daily_region_stats",
            "anomaly_rate_within_limit",
            verify.anomaly_rate_within_limit.__doc__,
            blocking=False,
        ),
    ],
    partitions_def=event_partitions,
    can_subset=False,
)
def telemetry_timeseries(
    context: dg.AssetExecutionContext,
    telemetry: TelemetryLanding,
    catalog: WarehouseCatalog,
    timeseries: TimeseriesResource,
):
    """One step per partition: the four tables share the day's readings (read once)."""
    day, region = _partition(context)
    settings = timeseries.settings
    result = build_day(partition_readings(telemetry.lake, day, region), day, settings)
    root = catalog.tables_root
    frames = {
        "device_timeseries": result.timeseries,
        "telemetry_anomalies": result.anomalies,
        "daily_device_stats": result.device_stats,
        "daily_region_stats": result.region_stats,
    }
    for table, frame in frames.items():
        store.write(frame, store.partition_file(root, table, day, region))
    _refresh_views(catalog)
    series, anomalies = result.timeseries, result.anomalies
    slots = max(series.height, 1)
    device = chart.busiest_device(series)
    chart_md = {}
    if device is not None:
        png = chart.device_day_png(series, device)
        path = write_chart(png, catalog.reports_root / f"device_day_{day}_{region}.png")
        chart_md = {
            "device_day_chart": dg.MetadataValue.md(markdown_image(png, f"{device} on {day}")),
            "device_day_chart_file": dg.MetadataValue.path(str(path)),
            # This partition's busiest device in the dashboard's drill-down.
            **dashboard_link("device_timeseries", region=region, date=str(day), device=device),
        }
    yield dg.MaterializeResult(
        asset_key="device_timeseries",
        metadata={
            "dagster/row_count": series.height,
            "devices": series["device_id"].n_unique(),
            "coverage": dg.MetadataValue.float(round(series["is_measured"].sum() / slots, 4)),
            "interpolated_share": dg.MetadataValue.float(
                round(series["is_interpolated"].sum() / slots, 4)
            ),
            "outage_share": dg.MetadataValue.float(round(series["is_outage"].sum() / slots, 4)),
            "interval_minutes": settings.interval_minutes,
            "max_interpolation_gap_minutes": settings.max_interpolation_gap_minutes,
            **chart_md,
        },
    )
    yield dg.MaterializeResult(
        asset_key="telemetry_anomalies",
        metadata={
            "dagster/row_count": anomalies.height,
            "anomalies_by_rule": dg.MetadataValue.json(_rule_counts(anomalies)),
            "preview": markdown(anomalies),
        },
    )
    yield dg.MaterializeResult(
        asset_key="daily_device_stats",
        metadata={"dagster/row_count": result.device_stats.height},
    )
    yield dg.MaterializeResult(
        asset_key="daily_region_stats",
        metadata={
            "dagster/row_count": result.region_stats.height,
            "summary": markdown(
                result.region_stats.select(
                    "region",
                    "devices",
                    "coverage",
                    "interpolated_share",
                    "outage_share",
                    "anomaly_episodes",
                    "anomaly_rate",
                    "max_anomaly_rate",
                )
            ),
        },
    )
    schema = device_timeseries_schema(tuple(settings.window_labels))
    yield contract_check(series, "device_timeseries", schema)
    for table in ("telemetry_anomalies", "daily_device_stats", "daily_region_stats"):
        yield contract_check(frames[table], table, ASSET_CONTRACTS[table])
    readings = result.context_readings
    yield _finding(
        "device_timeseries",
        "no_interpolation_across_long_gaps",
        verify.no_interpolation_across_long_gaps(series, readings, settings),
    )
    yield _finding(
        "device_timeseries",
        "interpolated_between_neighbours",
        verify.interpolated_between_neighbours(series, readings),
    )
    yield _finding(
        "daily_region_stats",
        "anomaly_rate_within_limit",
        verify.anomaly_rate_within_limit(result.region_stats),
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            description=text,
            deps=[dg.AssetDep("telemetry_events", partition_mapping=dg.AllPartitionMapping())],
            group_name=GROUP,
            kinds={"polars", "duckdb", "parquet"},
            metadata=contract_metadata(name),
        )
        for name, text in (
            (
                "dim_device",
                "Device versions (SCD type 2): a new version when model, site, hardware "
                "revision or running firmware changes; [valid_from, valid_to), is_current.",
            ),
            ("dim_date", "One row per UTC day with a reading (date_key YYYYMMDD)."),
            (
                "fact_telemetry",
                "One row per real reading with device_key, date_key and valid_until (the "
                "device's next reading): the state at time T is a range lookup.",
            ),
        )
    ],
    check_specs=[
        *(
            dg.AssetCheckSpec("contract", asset=a, blocking=True, description="Its contract.")
            for a in store.STAR_TABLES
        ),
        dg.AssetCheckSpec(
            "scd2_windows_contiguous",
            asset="dim_device",
            blocking=True,
            description=verify.scd2_windows_contiguous.__doc__,
        ),
        dg.AssetCheckSpec(
            "valid_until_is_next_reading",
            asset="fact_telemetry",
            blocking=True,
            description=verify.valid_until_is_next_reading.__doc__,
        ),
    ],
    can_subset=False,
)
def star_schema(telemetry: TelemetryLanding, catalog: WarehouseCatalog):
    """The star schema over every real reading of the lake, as catalog views."""
    readings = clean_readings(lake.scan_events(telemetry.lake)).collect()
    devices = star.dim_device(readings.lazy()).collect()
    tables = {
        "dim_device": devices,
        "dim_date": star.dim_date(readings.lazy()).collect(),
        "fact_telemetry": star.fact_telemetry(readings.lazy(), devices.lazy()).collect(),
    }
    for table, frame in tables.items():
        store.write(frame, store.star_file(catalog.tables_root, table))
    _refresh_views(catalog)
    for table, frame in tables.items():
        extra = {}
        if table == "dim_device":
            extra = {
                "devices": frame["device_id"].n_unique(),
                "versions_per_device": dg.MetadataValue.float(
                    round(frame.height / max(frame["device_id"].n_unique(), 1), 3)
                ),
            }
        yield dg.MaterializeResult(
            asset_key=table, metadata={"dagster/row_count": frame.height, **extra}
        )
    for table, frame in tables.items():
        yield contract_check(frame, table, ASSET_CONTRACTS[table])
    yield _finding("dim_device", "scd2_windows_contiguous", verify.scd2_windows_contiguous(devices))
    yield _finding(
        "fact_telemetry",
        "valid_until_is_next_reading",
        verify.valid_until_is_next_reading(tables["fact_telemetry"]),
    )


timeseries_job = dg.define_asset_job(
    "telemetry_timeseries_refresh",
    selection=[telemetry_timeseries],
    partitions_def=event_partitions,
    description="Time series, anomalies and daily statistics of one date x region partition.",
)
star_schema_job = dg.define_asset_job(
    "star_schema_rebuild", selection=[star_schema], description="Rebuild the star schema."
)


@dg.definitions
def timeseries_definitions() -> dg.Definitions:
    """The time-series assets, their jobs and their settings resource."""
    return dg.Definitions(
        assets=[telemetry_timeseries, star_schema],
        jobs=[timeseries_job, star_schema_job],
        resources={"timeseries": TimeseriesResource()},
    )
