"""The asset graph: raw fleet -> chaos -> sanitized fleet + quarantine -> decisions -> rank.

Every partitioned asset is one region's shard; the Dagster layer only wires the domain
functions together, checks what each step produced while it is still in memory (`checks`)
and describes the results for the UI.
"""

from collections.abc import Callable, Iterator

import dagster as dg
import polars as pl

from sentinel_assets import outcomes, quality, reports, warehouse
from sentinel_assets.chaos import inject_faults
from sentinel_assets.defs import checks
from sentinel_assets.defs.checks import contract_spec, region_spec
from sentinel_assets.defs.config import region_seed
from sentinel_assets.defs.failures import retry_transient_only
from sentinel_assets.defs.metadata import contract_metadata, dashboard_link, markdown
from sentinel_assets.defs.partitions import region_partitions
from sentinel_assets.defs.region_steps import RegionEvent, over_regions
from sentinel_assets.defs.resources import SentinelSettings, WarehouseCatalog
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.generate import generate_fleet
from sentinel_assets.quality import quarantine_rate
from sentinel_assets.recovery import (
    action_counts,
    campaign_health,
    decide_recovery,
    reason_code_counts,
)
from sentinel_assets.sanitize import reason_counts, split_fleet
from sentinel_assets.timeseries.trend import recent_drain

FLEET_GROUP = "fleet"
REPORT_GROUP = "reports"
# A dropped connection or a full disk may be gone a few seconds later; only such errors are
# retried (`defs.failures.retry_transient_only` on every asset that has this policy); a
# locked catalog is waited for in place (`warehouse.connect_waiting`).
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# What a fleet step yields for one region: its outputs, then the results of its checks.
StepEvent = RegionEvent


def report_asset(deps: list[str]) -> Callable[[Callable[..., object]], dg.AssetsDefinition]:
    """A cross-region report built in DuckDB SQL, checked against its contract in the same
    step; one writer of the catalog at a time."""

    def decorate(build: Callable[..., object]) -> dg.AssetsDefinition:
        return dg.asset(
            deps=deps,
            check_specs=[contract_spec(build.__name__, partitioned=False)],
            metadata={**contract_metadata(build.__name__), **dashboard_link(build.__name__)},
            group_name=REPORT_GROUP,
            pool=warehouse.CATALOG_POOL,
            kinds={"duckdb", "sql"},
            retry_policy=TRANSIENT_RETRY,
        )(retry_transient_only(build))

    return decorate


def status_counts(fleet: pl.DataFrame) -> dict[str, int]:
    return dict(fleet.group_by("update_status").len().sort("update_status").iter_rows())


def fleet_asset(
    *more_checks: dg.AssetCheckSpec, deps: list[dg.AssetDep] | None = None
) -> Callable[[Callable[..., Iterator[StepEvent]]], dg.AssetsDefinition]:
    """One region's shard of a fleet asset, checked against its contract (and `more_checks`)
    in the same step; `deps` are tables it reads itself (not loaded as inputs). `build`
    takes the region first; a step over several regions calls it for each (`over_regions`)."""

    def decorate(build: Callable[..., Iterator[StepEvent]]) -> dg.AssetsDefinition:
        return dg.asset(
            deps=deps,
            partitions_def=region_partitions,
            check_specs=[contract_spec(build.__name__), *more_checks],
            metadata={**contract_metadata(build.__name__), **dashboard_link(build.__name__)},
            group_name=FLEET_GROUP,
            kinds={"polars", "parquet"},
            retry_policy=TRANSIENT_RETRY,
        )(retry_transient_only(over_regions(build)))

    return decorate


@fleet_asset()
def raw_fleet(
    region: str, settings: SentinelSettings, telemetry: TelemetryLanding
) -> Iterator[StepEvent]:
    """Every device of the region as it stands mid-way through the OTA campaign: model,
    firmware path, update status and the telemetry that recovery decisions depend on (from
    the simulator, or with `source: landing` the latest landed event per device)."""
    sim = settings.simulation
    excluded = 0
    if sim.source == "landing":
        snapshot = telemetry.fleet(region, sim.as_of_utc())
        fleet, excluded = snapshot.fleet, snapshot.excluded.height
    else:
        fleet = generate_fleet(
            region,
            sim.devices_per_region,
            seed=sim.seed,
            as_of=sim.as_of_utc(),
            profile=sim,
        )
    yield dg.Output(
        fleet,
        metadata={
            "source": sim.source,
            "devices_excluded_incomplete": excluded,
            "devices": fleet.height,
            "update_status": dg.MetadataValue.json(status_counts(fleet)),
            "preview": markdown(fleet),
        },
    )
    yield checks.ContractDue(fleet, "raw_fleet")


@dg.multi_asset(
    outs={
        "corrupted_fleet": dg.AssetOut(
            description="The raw fleet with faults injected: what the field really sends. "
            "Readings are text here, so values like 'N/A' or '87%' can exist.",
            metadata=contract_metadata("corrupted_fleet"),
            kinds={"polars", "parquet"},
        ),
        "chaos_ledger": dg.AssetOut(
            description="Every fault the chaos injector put in: record id, column, kind "
            "and injected value, so containment can be proven downstream.",
            metadata=contract_metadata("chaos_ledger"),
            kinds={"polars", "parquet"},
        ),
    },
    check_specs=[contract_spec("corrupted_fleet"), contract_spec("chaos_ledger")],
    partitions_def=region_partitions,
    group_name=FLEET_GROUP,
    retry_policy=TRANSIENT_RETRY,
)
@retry_transient_only
@over_regions
def chaos_injection(
    region: str, raw_fleet: pl.DataFrame, settings: SentinelSettings
) -> Iterator[StepEvent]:
    """Corrupts a copy of the raw fleet at the configured rate per fault kind."""
    chaos = settings.chaos
    corrupted, ledger = inject_faults(
        raw_fleet, chaos.rate_by_kind(), seed=region_seed(chaos.seed, region)
    )
    faults = dict(ledger.group_by("fault_kind").len().sort("fault_kind").iter_rows())
    yield dg.Output(
        corrupted,
        output_name="corrupted_fleet",
        metadata={
            "records": corrupted.height,
            "injected_faults": ledger.height,
            "preview": markdown(corrupted),
        },
    )
    yield dg.Output(
        ledger,
        output_name="chaos_ledger",
        metadata={
            "faults": ledger.height,
            "faults_by_kind": dg.MetadataValue.json(faults),
            "preview": markdown(ledger),
        },
    )
    yield checks.ContractDue(corrupted, "corrupted_fleet")
    yield checks.ContractDue(ledger, "chaos_ledger")


@dg.multi_asset(
    outs={
        "sanitized_fleet": dg.AssetOut(
            description="Records that satisfy the fleet contract, cast to strict types. "
            "Everything downstream trusts these.",
            metadata={**contract_metadata("sanitized_fleet"), **dashboard_link("sanitized_fleet")},
            kinds={"polars", "parquet"},
        ),
        "quarantine": dg.AssetOut(
            description="The manual-triage queue: every record that broke the contract, "
            "with its original values and one reason code (column:rule) per broken rule.",
            metadata={**contract_metadata("quarantine"), **dashboard_link("quarantine")},
            kinds={"polars", "parquet"},
        ),
    },
    ins={"chaos_ledger": dg.AssetIn(metadata={"columns": ["record_id"]})},
    internal_asset_deps={  # quarantine is proven against the ledger (faults_contained)
        "sanitized_fleet": {dg.AssetKey("corrupted_fleet")},
        "quarantine": {dg.AssetKey("corrupted_fleet"), dg.AssetKey("chaos_ledger")},
    },
    check_specs=[
        contract_spec("sanitized_fleet"),
        contract_spec("quarantine"),
        region_spec("sanitized_fleet", quality.records_conserved, ["corrupted_fleet"]),
        region_spec("sanitized_fleet", quality.quarantine_rate_within_gate),
        region_spec("quarantine", quality.faults_contained, ["chaos_ledger"]),
    ],
    partitions_def=region_partitions,
    group_name=FLEET_GROUP,
    retry_policy=TRANSIENT_RETRY,
)
@retry_transient_only
@over_regions
def sanitization(
    region: str,
    corrupted_fleet: pl.DataFrame,
    chaos_ledger: pl.DataFrame,
    settings: SentinelSettings,
) -> Iterator[StepEvent]:
    """Splits the corrupted fleet by the contract; never drops and never halts on a record."""
    sanitized, quarantine = split_fleet(corrupted_fleet)
    rate = quarantine_rate(quarantine.height, sanitized.height)
    reasons = reason_counts(quarantine)
    yield dg.Output(
        sanitized,
        output_name="sanitized_fleet",
        metadata={
            "devices": sanitized.height,
            "quarantine_rate": dg.MetadataValue.float(round(rate, 4)),
            "update_status": dg.MetadataValue.json(status_counts(sanitized)),
            "preview": markdown(sanitized),
        },
    )
    yield dg.Output(
        quarantine,
        output_name="quarantine",
        metadata={
            "quarantined": quarantine.height,
            "quarantine_rate": dg.MetadataValue.float(round(rate, 4)),
            "reasons": markdown(reasons, rows=25),
            "preview": markdown(quarantine),
        },
    )
    yield checks.ContractDue(sanitized, "sanitized_fleet")
    yield checks.ContractDue(quarantine, "quarantine")
    yield checks.verdict(
        "sanitized_fleet", quality.records_conserved, corrupted_fleet, sanitized, quarantine
    )
    yield checks.verdict(
        "sanitized_fleet",
        quality.quarantine_rate_within_gate,
        sanitized,
        quarantine,
        settings.gates.max_quarantine_rate,
    )
    yield checks.verdict("quarantine", quality.faults_contained, quarantine, chaos_ledger)


# Every date of the region's time series: the asset reads the latest one up to its snapshot.
REGION_TIMESERIES = dg.AssetDep(
    "device_timeseries",
    partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="region"),
)


@fleet_asset(
    region_spec("recovery_decisions", quality.halt_holds_pending_updates),
    deps=[REGION_TIMESERIES],
)
def recovery_decisions(
    region: str,
    sanitized_fleet: pl.DataFrame,
    campaign_status: pl.DataFrame,
    settings: SentinelSettings,
    catalog: WarehouseCatalog,
) -> Iterator[StepEvent]:
    """One row per unhealthy device with the action to take (retry, rollback, defer,
    manual_triage, hold), the code of the policy rule that decided and the reason an operator
    reads; retries carry their `next_attempt_at` (exponential backoff). A region whose
    `campaign_status` is halted holds its pending updates and retries. Where the region has a
    time series (`device_timeseries` up to the snapshot), a battery draining faster than
    `max_battery_drain_pct_per_h` defers; without one, the static guards alone decide."""
    as_of = settings.simulation.as_of_utc()
    trend = recent_drain(catalog.tables_root, region, as_of)
    decisions = decide_recovery(
        sanitized_fleet,
        settings.recovery,
        as_of=as_of,
        campaign=campaign_status,
        trend=trend.drain,
    )
    yield dg.Output(
        decisions,
        metadata={
            "decisions": decisions.height,
            "actions": dg.MetadataValue.json(action_counts(decisions)),
            "reason_codes": dg.MetadataValue.json(reason_code_counts(decisions)),
            "battery_trend": trend.describe(),
            "battery_trend_devices": 0 if trend.drain is None else trend.drain.height,
            "campaign_halted": bool(campaign_status["halted"].any()),
            "campaign": markdown(campaign_status),
            "preview": markdown(decisions),
        },
    )
    yield checks.ContractDue(decisions, "recovery_decisions")
    yield checks.verdict(
        "recovery_decisions",
        quality.halt_holds_pending_updates,
        decisions,
        campaign_status,
        sanitized_fleet,
    )


@report_asset(deps=["sanitized_fleet", "quarantine"])
def regional_rank(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """Regions ranked by their share of failed or partial devices, each with its quarantine
    rate and its worst upgrade paths (model, firmware) ranked by failures. SQL:
    `sentinel_assets/sql/regional_rank.sql`."""
    (frame,) = build_report(catalog, "regional_rank")
    top = (
        frame.filter(pl.col("cluster_rank") == 1)
        .select(
            "region", "region_rank", "devices", "unhealthy_rate", "quarantine_rate",
            "model", "firmware_from", "cluster_failures",
        )
        .sort("region_rank", "region")
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "regions": top["region"].n_unique(),
            "worst_region": top["region"][0] if top.height else "",
            "bottlenecks": markdown(top, rows=len(top) or 1),
        },
        check_results=[checks.contract(frame, "regional_rank")],
    )


# --- Recovery outcomes and analyst reports -------------------------------------------------


@fleet_asset()
def campaign_status(
    region: str, sanitized_fleet: pl.DataFrame, settings: SentinelSettings
) -> Iterator[StepEvent]:
    """The region's campaign against the abort rule: devices that attempted the update, how
    many failed, the configured threshold and minimum, and whether the campaign is halted."""
    status = campaign_health(sanitized_fleet, settings.recovery)
    halted = bool(status["halted"].any())
    yield dg.Output(
        status,
        metadata={
            "campaign": "halted" if halted else "running",
            "attempted": int(status["attempted"].sum()),
            "failure_rate": dg.MetadataValue.float(round(status["failure_rate"].max() or 0.0, 4)),
            "numbers": markdown(status),
        },
    )
    yield checks.ContractDue(status, "campaign_status")


@fleet_asset(region_spec("recovery_outcomes", quality.outcomes_cover_the_fleet))
def recovery_outcomes(
    region: str,
    sanitized_fleet: pl.DataFrame,
    recovery_decisions: pl.DataFrame,
    settings: SentinelSettings,
) -> Iterator[StepEvent]:
    """Every device after the decisions were applied in a seeded simulation (odds by action,
    battery and signal): recovered, rolled_back, still_failed, deferred, held, in_triage, or
    its untouched success/pending status."""
    result = outcomes.simulate_outcomes(
        sanitized_fleet, recovery_decisions, seed=settings.simulation.seed
    )
    counts = outcomes.status_counts(result)
    summary = outcomes.status_summary(counts)
    yield dg.Output(
        result,
        metadata={
            "devices": result.height,
            "status_before": dg.MetadataValue.json(summary["before"]),
            "status_after": dg.MetadataValue.json(summary["after"]),
            "status_counts": markdown(counts, rows=counts.height),
            "preview": markdown(result),
        },
    )
    yield checks.ContractDue(result, "recovery_outcomes")
    yield checks.verdict(
        "recovery_outcomes", quality.outcomes_cover_the_fleet, result, sanitized_fleet
    )


def build_report(catalog: WarehouseCatalog, table: str, *queries: str) -> tuple[pl.DataFrame, ...]:
    """(Re)create a report table from its .sql file over the current shards; returns it,
    then the result of each of `queries` (.sql files), all on one connection."""
    warehouse.require_whole_regions(catalog.tables_root)
    with catalog.get_connection() as conn:
        warehouse.ensure_views(conn, catalog.tables_root)
        warehouse.create_table_from_sql(conn, table, warehouse.read_sql(f"{table}.sql"))
        return conn.table(table).pl(), *(conn.sql(warehouse.read_sql(q)).pl() for q in queries)


def chart_metadata(
    catalog: WarehouseCatalog, name: str, chart: reports.Chart, alt: str
) -> dict[str, dg.MetadataValue]:
    """A chart embedded in the asset page, and its file in the data folder."""
    path = reports.write_chart(chart.data, catalog.reports_root / f"{name}{chart.suffix}")
    return {
        name: dg.MetadataValue.md(reports.markdown_image(chart.data, alt, chart.media_type)),
        f"{name}_file": dg.MetadataValue.path(str(path)),
    }


@report_asset(deps=["sanitized_fleet"])
def failure_clusters(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """Upgrade paths (region x model x firmware) ranked by failures within their region
    (RANK) and by failure rate fleet-wide (DENSE_RANK), with their share of the region's
    failures; shows the region x model heatmap. SQL: `sql/failure_clusters.sql`."""
    frame, rates = build_report(catalog, "failure_clusters", "region_model_failure_rate.sql")
    worst = frame.filter(pl.col("cluster_rank") == 1).sort("failures", descending=True)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "worst_clusters": markdown(worst, rows=worst.height or 1),
            **chart_metadata(
                catalog,
                "failure_heatmap",
                reports.failure_heatmap_svg(rates),
                "failure rate by region and model",
            ),
        },
        check_results=[checks.contract(frame, "failure_clusters")],
    )


@report_asset(deps=["sanitized_fleet"])
def failure_telemetry(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """Failed and partial devices per battery and signal band in each region, with the
    band's failure rate. SQL: `sql/failure_telemetry.sql`."""
    (frame,) = build_report(catalog, "failure_telemetry")
    fleet = (
        frame.group_by("measure", "band_order", "band", maintain_order=True)
        .agg(pl.col("devices", "failed", "partial").sum())
        .sort("measure", "band_order")
    )
    return dg.MaterializeResult(
        metadata={"dagster/row_count": frame.height, "fleet_bands": markdown(fleet, rows=20)},
        check_results=[checks.contract(frame, "failure_telemetry")],
    )


@report_asset(deps=["quarantine", "recovery_decisions"])
def triage_queue(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """The manual-triage queue by reason code per region: quarantined records by broken
    contract rule (column:rule) and devices the policy sent to a person, by rule.
    SQL: `sql/triage_queue.sql`."""
    (frame,) = build_report(catalog, "triage_queue")
    fleet = (
        frame.group_by("source", "reason_code")
        .agg(pl.col("records").sum())
        .sort("records", descending=True)
    )
    return dg.MaterializeResult(
        metadata={"dagster/row_count": frame.height, "top_reasons": markdown(fleet, rows=15)},
        check_results=[checks.contract(frame, "triage_queue")],
    )


@report_asset(deps=["campaign_status", "recovery_decisions"])
def campaign_report(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """Each region's campaign, running or halted, with the numbers that triggered a halt and
    the updates it holds back. SQL: `sql/campaign_report.sql`."""
    (frame,) = build_report(catalog, "campaign_report")
    halted = frame.filter(pl.col("campaign") == "halted")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "halted_regions": dg.MetadataValue.json(halted["region"].to_list()),
            "campaigns": markdown(frame.select("region", "campaign", "summary"), rows=10),
        },
        check_results=[checks.contract(frame, "campaign_report")],
    )


@report_asset(deps=["recovery_outcomes"])
def status_before_after(catalog: WarehouseCatalog) -> dg.MaterializeResult:
    """Devices per status before and after recovery, per region and fleet-wide (region
    'all'), with the before/after bar chart. SQL: `sql/status_before_after.sql`."""
    (frame,) = build_report(catalog, "status_before_after")
    fleet = frame.filter(pl.col("region") == "all")
    by_phase = outcomes.status_summary(fleet)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "fleet_before": dg.MetadataValue.json(by_phase["before"]),
            "fleet_after": dg.MetadataValue.json(by_phase["after"]),
            **chart_metadata(
                catalog,
                "status_before_after",
                reports.status_bars_svg(fleet),
                "fleet status before and after recovery",
            ),
        },
        check_results=[checks.contract(frame, "status_before_after")],
    )
