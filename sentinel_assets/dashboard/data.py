"""Read-only loading of the warehouse for the dashboard, with one-sentence errors.

The dashboard never holds the DuckDB file open: each load opens it read-only, copies what it
needs into Polars frames and closes it again, so the pipeline's short catalog writes (report
tables, new views) are never blocked, and a write in progress only makes a load wait and
retry. The region shards are Parquet files that the pipeline replaces atomically, so a load
during a refresh sees each region's old or new shard, never half of one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import OUTCOME_STATUSES, UPDATE_STATUSES
from sentinel_assets.recovery import DEFAULT_AS_OF, parse_as_of

LOCK_RETRY_SECONDS = 10.0
# Every partitioned table names the region shard a record is stored in.
SHARD_COLUMN = "partition_key"


class WarehouseError(Exception):
    """The warehouse cannot be read as asked; the message is one sentence for the user."""


def warehouse_path() -> Path:
    """Where the pipeline keeps its catalog: `$SENTINEL_HOME/warehouse.duckdb`."""
    return paths.catalog_path()


def default_as_of() -> datetime:
    """The snapshot time the pipeline decided at (decisions depend on it through the
    staleness rule): `$SENTINEL_AS_OF` for a warehouse built with another, else the
    pipeline's default (`recovery.DEFAULT_AS_OF`)."""
    raw = os.environ.get("SENTINEL_AS_OF") or DEFAULT_AS_OF
    try:
        return parse_as_of(raw)
    except ValueError as error:
        raise WarehouseError(f"SENTINEL_AS_OF: {error}.") from None


@contextmanager
def read_only(
    path: Path, *, lock_wait: float = LOCK_RETRY_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, closed on exit; waits out a writer's short lock."""
    path = Path(path)
    if path.is_dir():
        raise WarehouseError(
            f"{path} is a folder, not a warehouse file: point SENTINEL_HOME at "
            f"the folder that holds {paths.CATALOG_FILE}."
        )
    if not path.exists():
        raise WarehouseError(
            f"No warehouse at {path}: run `make demo` (or materialize the "
            "fleet in Dagster) first, or set SENTINEL_HOME to its folder."
        )
    deadline = time.monotonic() + lock_wait
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as error:
            locked = "lock" in str(error).lower()
            if locked and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if locked:
                raise WarehouseError(
                    f"The warehouse {path} stayed locked by a writer for "
                    f"{lock_wait:g} s: try again in a moment."
                ) from error
            raise WarehouseError(
                f"{path} is not a readable DuckDB warehouse ({_first_line(error)})."
            ) from error
        except duckdb.Error as error:
            raise WarehouseError(
                f"{path} is not a readable DuckDB warehouse ({_first_line(error)})."
            ) from error
    try:
        yield conn
    finally:
        conn.close()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _relations(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {name for (name,) in rows}


def _missing(table: str, path: Path) -> WarehouseError:
    job = "regional_report" if table in warehouse.REPORT_TABLES else "fleet_refresh"
    return WarehouseError(
        f"The warehouse {path} has no `{table}` table yet: run the Dagster job "
        f"`{job}` (or `make demo`) first."
    )


def query(
    path: Path, sql: str, *, tables: Sequence[str], params: Sequence[object] = ()
) -> pl.DataFrame:
    """Run one read-only query that reads `tables`; a missing table is named in the error."""
    with read_only(path) as conn:
        present = _relations(conn)
        for table in tables:
            if table not in present:
                raise _missing(table, path)
        try:
            frame = conn.sql(sql, params=list(params) or None).pl()
        except duckdb.Error as error:
            raise WarehouseError(
                f"Reading {', '.join(tables)} from {path} failed ({_first_line(error)})."
            ) from error
    # DuckDB hands out its session zone (`Etc/UTC`); the pipeline's frames say `UTC`.
    aware = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(aware).dt.convert_time_zone("UTC"))


def read_table(path: Path, table: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """A whole table or view (the pipeline's table names are plain identifiers)."""
    select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    return query(path, f"SELECT {select} FROM {warehouse._identifier(table)}", tables=[table])


# --- what the views show ---------------------------------------------------------------


def region_overview(path: Path) -> pl.DataFrame:
    """Per region: devices, quarantined records and rate, campaign state with its numbers,
    and devices per status before and after recovery (`before_<status>`, `after_<status>`)."""
    campaigns = read_table(path, "campaign_status")
    devices = query(
        path,
        "SELECT region, count(*) AS devices FROM sanitized_fleet GROUP BY region",
        tables=["sanitized_fleet"],
    )
    quarantined = quarantine_counts(path)
    outcomes = query(
        path,
        "SELECT region, 'before_' || status_before AS phase_status, count(*) AS n "
        "FROM recovery_outcomes GROUP BY ALL UNION ALL "
        "SELECT region, 'after_' || status_after, count(*) FROM recovery_outcomes GROUP BY ALL",
        tables=["recovery_outcomes"],
    )
    order = [f"before_{s}" for s in UPDATE_STATUSES] + [f"after_{s}" for s in OUTCOME_STATUSES]
    status = (
        outcomes.pivot("phase_status", index="region", values="n")
        if outcomes.height
        else pl.DataFrame(schema={"region": pl.String})
    )
    status = status.select("region", *[c for c in order if c in status.columns]).with_columns(
        pl.exclude("region").fill_null(0)
    )
    frame = (
        devices.join(quarantined, on="region", how="full", coalesce=True)
        .join(campaigns.drop("devices", SHARD_COLUMN, strict=False), on="region", how="left")
        .join(status, on="region", how="left")
        .with_columns(pl.col("devices", "quarantined").fill_null(0))
        .with_columns(
            (pl.col("quarantined") / (pl.col("devices") + pl.col("quarantined")))
            .fill_nan(0.0)
            .alias("quarantine_rate"),
            pl.when(pl.col("halted"))
            .then(pl.lit("halted"))
            .otherwise(pl.lit("running"))
            .alias("campaign"),
        )
    )
    first = [
        "region",
        "devices",
        "quarantined",
        "quarantine_rate",
        "campaign",
        "attempted",
        "failures",
        "failure_rate",
        "abort_failure_rate",
        "abort_min_attempted",
    ]
    return frame.select(*first, pl.exclude(*first, "halted")).sort("region")


def quarantine_counts(path: Path) -> pl.DataFrame:
    """Quarantined records per region shard."""
    return query(
        path,
        f"SELECT {SHARD_COLUMN} AS region, count(*) AS quarantined FROM quarantine GROUP BY 1",
        tables=["quarantine"],
    )


def quarantine_records(path: Path) -> pl.DataFrame:
    """Every quarantined record with its original values, its region shard as `region_shard`
    first (the record's own `region` value may be the broken one) and its reason codes."""
    frame = read_table(path, "quarantine")
    return frame.rename({SHARD_COLUMN: "region_shard"}).select(
        "region_shard", "reasons", pl.exclude("region_shard", "reasons")
    )


def failure_heatmap(path: Path) -> pl.DataFrame:
    """Region x model: devices, failed + partial, and their share (the heatmap's cells)."""
    return query(
        path,
        "SELECT region, model, count(*) AS devices, "
        "count(*) FILTER (WHERE update_status IN ('failed', 'partial')) AS failures, "
        "failures / devices AS failure_rate FROM sanitized_fleet GROUP BY ALL ORDER BY ALL",
        tables=["sanitized_fleet"],
    )


def worst_upgrade_paths(path: Path, top: int = 3) -> pl.DataFrame:
    """The `top` upgrade paths of each region by failures (the `failure_clusters` report)."""
    return query(
        path,
        "SELECT region, cluster_rank, model, firmware_from, firmware_to, devices, failures, "
        "failure_rate, share_of_region_failures FROM failure_clusters "
        "WHERE cluster_rank <= ? ORDER BY failures DESC, region, cluster_rank",
        tables=["failure_clusters"],
        params=[top],
    )


# --- freshness ---------------------------------------------------------------------------


def last_materialized(path: Path) -> pl.DataFrame:
    """When each region's shards were last written (one row per asset and region) and when
    the catalog file itself (views, report tables) was: file times, no Dagster needed."""
    rows: list[dict[str, object]] = []
    tables_root = paths.tables_root(Path(path).parent)
    for shard in sorted(tables_root.glob("*/region=*.parquet")):
        rows.append(
            {
                "asset": shard.parent.name,
                "region": shard.stem.removeprefix("region="),
                "written_at": _mtime(shard),
            }
        )
    if Path(path).is_file():
        rows.append({"asset": "(catalog and reports)", "region": None, "written_at": _mtime(path)})
    return pl.DataFrame(
        rows,
        schema={"asset": pl.String, "region": pl.String, "written_at": pl.Datetime("us", "UTC")},
    )


def _mtime(file: Path) -> datetime:
    return datetime.fromtimestamp(Path(file).stat().st_mtime, tz=UTC)


def data_version(path: Path) -> tuple[float, ...]:
    """Changes whenever the pipeline writes a shard or the catalog: a cache key."""
    tables_root = paths.tables_root(Path(path).parent)
    files = [Path(path), *sorted(tables_root.glob("*/region=*.parquet"))]
    return tuple(f.stat().st_mtime_ns for f in files if f.exists())


@dataclass(frozen=True)
class WhatIfInputs:
    """What the what-if needs, loaded once per data version: the sanitized fleet, the
    materialized decisions and campaign status."""

    fleet: pl.DataFrame
    decisions: pl.DataFrame
    campaigns: pl.DataFrame


def whatif_inputs(path: Path) -> WhatIfInputs:
    return WhatIfInputs(
        fleet=read_table(path, "sanitized_fleet"),
        decisions=read_table(
            path,
            "recovery_decisions",
            ["region", "record_id", "device_id", "update_status", "action", "reason_code"],
        ),
        campaigns=read_table(path, "campaign_status"),
    )


# --- triage ------------------------------------------------------------------------------


def filter_quarantine(
    records: pl.DataFrame,
    regions: Sequence[str] = (),
    reason_codes: Sequence[str] = (),
    columns: Sequence[str] = (),
) -> pl.DataFrame:
    """Quarantined records of the chosen region shards that carry any of the chosen reason
    codes and break a rule on any of the chosen columns (an empty choice keeps all)."""
    keep = pl.lit(True)
    if regions:
        keep &= pl.col("region_shard").is_in(list(regions))
    if reason_codes:
        keep &= pl.col("reasons").list.eval(pl.element().is_in(list(reason_codes))).list.any()
    if columns:
        broken = pl.element().str.split(":").list.first().is_in(list(columns))
        keep &= pl.col("reasons").list.eval(broken).list.any()
    return records.filter(keep)


def to_csv(frame: pl.DataFrame) -> str:
    """CSV text; list columns (reason codes) are joined with `|`."""
    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    return frame.with_columns(pl.col(lists).list.join("|")).write_csv()
