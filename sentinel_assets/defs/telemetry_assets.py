"""Telemetry assets: each landed batch ingested once (`dead_letters`, one partition per file)
and the events lake by date x region (`telemetry_events`), with their checks in the step.

* `dead_letters[<batch>]` ingests one landed file (`telemetry.ingest.ingest_file`): its
  accepted events go into the lake's date x region parts (reported as materializations of
  those `telemetry_events` partitions), its dead letters into its own file. Checked in the
  step: the dead-letter contract, `lines_accounted` (data lines = accepted + duplicates +
  dead letters) and `events_contract` (the batch's events against the event contract).
* `telemetry_events[<date>|<region>]` re-reads every landed batch that touched the partition
  and rewrites its parts (`rebuild_partition`): a backfill over a date range from the UI is
  the historical migration (V1 history upcast by today's rules). Checked: its contract.
"""

import time

import dagster as dg
import pandera.polars as pa
import polars as pl

from sentinel_assets.contracts import DEAD_LETTER_SCHEMA, telemetry_event_schema
from sentinel_assets.defs.checks import timed
from sentinel_assets.defs.jobs import EXECUTOR
from sentinel_assets.defs.metadata import contract_metadata, dashboard_link, markdown
from sentinel_assets.defs.partitions import event_partitions, landing_batches
from sentinel_assets.defs.resources import WarehouseCatalog
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.telemetry import lake, landing
from sentinel_assets.telemetry.ingest import FileAccounting, ingest_file, rebuild_partition
from sentinel_assets.validation import check_contract

TELEMETRY_GROUP = "telemetry"
CONTRACT = "contract"
# One lake writer at a time (an unconfigured pool has one slot, see dagster.yaml): two batches
# landing together cannot both accept the same resent event.
LAKE_POOL = "telemetry_lake"


def _spec(
    asset: str, name: str, partitions_def: dg.PartitionsDefinition, doc: str | None
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name, asset=asset, blocking=True, partitions_def=partitions_def, description=doc
    )


@timed
def contract_check(
    frame: pl.DataFrame, asset: str, schema: pa.DataFrameSchema, check_name: str = CONTRACT
) -> dg.AssetCheckResult:
    """The frame against its Pandera contract (every failing rule reported, with examples)."""
    report = check_contract(frame, schema)
    metadata: dict[str, object] = {"rows": report.rows, "failing_rows": report.failing_rows}
    if not report.passed:
        metadata["failures_by_check"] = markdown(report.failures_by_check(), rows=20)
        metadata["examples"] = markdown(report.failure_cases, rows=10)
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check_name, passed=report.passed, metadata=metadata
    )


@timed
def lines_accounted(accounting: FileAccounting) -> dg.AssetCheckResult:
    """Every data line of the file is an accepted event, a duplicate or a dead letter, once
    (an unreadable file is exactly one dead letter)."""
    return dg.AssetCheckResult(
        asset_key="dead_letters",
        check_name="lines_accounted",
        passed=accounting.balanced,
        metadata={
            "data_lines": accounting.data_lines,
            "accepted": accounting.accepted,
            "duplicates": accounting.duplicates,
            "dead_letters": accounting.dead_letters,
            "blank_lines": accounting.blank_lines,
            "header_lines": accounting.header_lines,
        },
    )


def _batch_events(telemetry: TelemetryLanding, accounting: FileAccounting) -> pl.DataFrame:
    parts = [
        lake.event_part(telemetry.lake, *lake.split_partition_key(key), accounting.batch)
        for key in accounting.partitions
    ]
    if not parts:
        return pl.DataFrame(schema=lake.EVENT_DTYPES)
    return pl.read_parquet(parts)


@dg.asset(
    partitions_def=landing_batches,
    deps=["mqtt_telemetry_stream"],
    check_specs=[
        _spec("dead_letters", CONTRACT, landing_batches, "Dead letters satisfy their contract."),
        _spec("dead_letters", "lines_accounted", landing_batches, lines_accounted.__doc__),
        _spec(
            "dead_letters",
            "events_contract",
            landing_batches,
            "The batch's accepted events satisfy the telemetry_events contract.",
        ),
    ],
    group_name=TELEMETRY_GROUP,
    kinds={"polars", "duckdb", "parquet"},
    pool=LAKE_POOL,
    metadata={**contract_metadata("dead_letters"), **dashboard_link("dead_letters")},
)
def dead_letters(
    context: dg.AssetExecutionContext, telemetry: TelemetryLanding, catalog: WarehouseCatalog
) -> dg.MaterializeResult:
    """Ingests one landed batch file: what could not become an event, with `source_file`,
    `line_number`, `raw` and one reason code per broken rule. Its accepted events go into the
    `telemetry_events` lake."""
    batch = context.partition_key
    path = landing.batch_file(telemetry.landing, batch) or landing.rejected_file(
        telemetry.landing, batch
    )
    if path is None:
        raise dg.Failure(
            f"landing batch {batch} has no file under {telemetry.landing}/_batches: "
            "drop the file into the landing folder again"
        )
    if migrated := lake.ensure_record_ids(telemetry.lake):
        context.log.info(f"record ids of {migrated} lake parts recomputed ({lake.LAKE_META})")
    result = ingest_file(path, telemetry.lake, regions=telemetry.regions, models=telemetry.models)
    accounting = result.accounting
    if accounting.unreadable and path.parent.parent.name == landing.BATCHES_DIR:
        moved = landing.move_aside(path, telemetry.landing, batch)
        context.log.warning(f"{path.name} is unreadable ({accounting.unreadable}), moved: {moved}")
    for key, rows in accounting.partitions.items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key="telemetry_events",
                partition=key,
                metadata={"batch": batch, "events_from_batch": rows},
            )
        )
    _ensure_views(catalog, telemetry)
    events = _batch_events(telemetry, accounting)
    schema = telemetry_event_schema(tuple(telemetry.regions), tuple(telemetry.models))
    reasons = result.dead_letters.group_by("reason").len().sort("len", descending=True)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.dead_letters.height,
            "source_file": accounting.source_file,
            "sha256": accounting.sha256,
            "accepted": accounting.accepted,
            "duplicates": accounting.duplicates,
            "dead_letters": accounting.dead_letters,
            "unreadable": accounting.unreadable or "",
            "seconds": dg.MetadataValue.float(round(accounting.seconds, 3)),
            "partitions": dg.MetadataValue.json(accounting.partitions),
            "reasons": markdown(reasons, rows=20),
        },
        check_results=[
            contract_check(result.dead_letters, "dead_letters", DEAD_LETTER_SCHEMA),
            lines_accounted(accounting),
            contract_check(events, "dead_letters", schema, check_name="events_contract"),
        ],
    )


def _ensure_views(catalog: WarehouseCatalog, telemetry: TelemetryLanding) -> None:
    """The catalog's views glob the lake, so they are created once (and when a catalog file
    is new); DuckDB binds them again on each query."""
    with catalog.get_connection() as conn:
        existing = {
            name
            for (name,) in conn.execute(
                "SELECT view_name FROM duckdb_views() WHERE view_name IN (?, ?)",
                [lake.EVENTS, lake.DEAD_LETTERS],
            ).fetchall()
        }
        if existing != {lake.EVENTS, lake.DEAD_LETTERS}:
            lake.create_lake_views(conn, telemetry.lake)


@dg.asset(
    partitions_def=event_partitions,
    deps=[
        dg.AssetDep("dead_letters", partition_mapping=dg.AllPartitionMapping()),
        "mqtt_telemetry_stream",
    ],
    check_specs=[
        _spec(
            "telemetry_events",
            CONTRACT,
            event_partitions,
            "Every event of the partition satisfies the telemetry_events contract.",
        )
    ],
    group_name=TELEMETRY_GROUP,
    kinds={"polars", "parquet"},
    pool=LAKE_POOL,
    metadata=contract_metadata("telemetry_events"),
)
def telemetry_events(
    context: dg.AssetExecutionContext, telemetry: TelemetryLanding, catalog: WarehouseCatalog
) -> dg.MaterializeResult:
    """Every accepted event of one date and region, V2-shaped with strict types, in the
    hive-style lake (`date=YYYY-MM-DD/region=<r>/`). Materializing it re-reads the landed
    batches that touched it (the historical migration); the landing sensor fills it as files
    arrive (through `dead_letters`)."""
    started = time.perf_counter()
    key = context.partition_key
    batch_files = {
        batch: path
        for batch in landing.claimed_batches(telemetry.landing)
        if (path := landing.batch_file(telemetry.landing, batch)) is not None
    }
    events = rebuild_partition(
        telemetry.lake,
        str(key),
        batch_files,
        regions=telemetry.regions,
        models=telemetry.models,
    )
    _ensure_views(catalog, telemetry)
    schema = telemetry_event_schema(tuple(telemetry.regions), tuple(telemetry.models))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": events.height,
            "devices": events["device_id"].n_unique(),
            "batches": len({*events["source_file"]}),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            "preview": markdown(events),
        },
        check_results=[contract_check(events, "telemetry_events", schema)],
    )


ingest_landing_batch = dg.define_asset_job(
    "ingest_landing_batch",
    selection=[dead_letters],
    executor_def=EXECUTOR,
    description="Ingest one landed batch file (started by the landing sensor).",
)
