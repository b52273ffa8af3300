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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import DEVICE_ID_PATTERN, OUTCOME_STATUSES, REGIONS, UPDATE_STATUSES
from sentinel_assets.recovery import DEFAULT_AS_OF, parse_as_of
from sentinel_assets.telemetry import lake
from sentinel_assets.timeseries import store
from sentinel_assets.timeseries.anomalies import EPISODE_COLUMNS
from sentinel_assets.timeseries.readings import partition_readings

LOCK_RETRY_SECONDS = 10.0
TIMESERIES_JOB = "telemetry_timeseries_refresh"
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


def require_warehouse(path: Path) -> Path:
    """`path` when it is a file; WarehouseError naming what to do when it is not."""
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
    return path


@contextmanager
def read_only(
    path: Path, *, lock_wait: float = LOCK_RETRY_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, closed on exit; waits out a writer's short lock."""
    path = require_warehouse(path)
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
    if table in store.PARTITIONED_TABLES:
        return WarehouseError(
            f"The warehouse {path} has no `{table}` table yet: the time series are not "
            f"materialized; run the Dagster job `{TIMESERIES_JOB}` for a date and region "
            "(or `sentinel timeseries`, the last step of `make demo`) first."
        )
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


# --- time series: a device's day, and the anomaly what-if's input -------------------------

# The values a device's day shows, in panel order, with their axis titles.
SERIES_VALUES: dict[str, str] = {
    "battery_pct": "battery %",
    "battery_voltage_v": "voltage V",
    "temperature_c": "temperature °C",
    "signal_dbm": "signal dBm",
}
SERIES_COLUMNS = (
    "slot_ts",
    "readings_in_slot",
    "is_measured",
    "is_interpolated",
    "is_outage",
    "gap_minutes",
    *SERIES_VALUES,
)


def timeseries_version(path: Path) -> tuple[float, ...]:
    """Changes whenever a time-series partition or a lake batch is written: a cache key."""
    home = Path(path).parent
    tables_root, lake_root = paths.tables_root(home), paths.lake_root(home)
    files = [Path(path), *sorted(tables_root.glob("*/date=*/region=*.parquet"))]
    files += lake.event_files(lake_root)
    return tuple(f.stat().st_mtime_ns for f in files if f.exists())


def device_link(region: str, device_id: str, day: date | None = None) -> pl.Expr:
    """The drill-down URL (relative to the dashboard) of each row's device, from its
    `region` and `device_id` columns (and the day, else the view opens the newest one);
    NULL where either is not a valid region or device id (a broken quarantined record), so
    a link never carries text that would need escaping."""
    day_part = f"&date={day}" if day is not None else ""
    valid = pl.col(device_id).str.contains(DEVICE_ID_PATTERN) & pl.col(region).is_in(list(REGIONS))
    link = pl.format(
        "./?view=device&region={}&device={}" + day_part, pl.col(region), pl.col(device_id)
    )
    return pl.when(valid.fill_null(False)).then(link).alias("drill-down")


def partition_written_at(path: Path, table: str, day: date, region: str) -> datetime | None:
    """When a time-series partition's file was last written (None when there is none)."""
    file = store.partition_file(paths.tables_root(Path(path).parent), table, day, region)
    return _mtime(file) if file.exists() else None


def device_days(path: Path) -> pl.DataFrame:
    """Every materialized device day (`daily_device_stats`): region, event_date, device_id,
    its slot counts and anomaly episodes; the drill-down's selectors choose from these."""
    return query(
        path,
        "SELECT region, event_date, device_id, slots_measured, slots_interpolated, "
        "slots_outage, anomaly_episodes FROM daily_device_stats ORDER BY ALL",
        tables=["daily_device_stats"],
    )


def find_devices(days: pl.DataFrame, region: str, day: date, search: str = "") -> pl.DataFrame:
    """The device days of `region` on `day` whose id contains `search` (case-insensitive,
    literal), those with the most anomaly episodes first, then by id."""
    found = days.filter(pl.col("region") == region, pl.col("event_date") == day)
    if search.strip():
        found = found.filter(
            pl.col("device_id")
            .str.to_lowercase()
            .str.contains(search.strip().lower(), literal=True)
        )
    return found.sort(["anomaly_episodes", "device_id"], descending=[True, False])


@dataclass(frozen=True)
class DeviceDay:
    """One device's materialized day: its grid slots and its anomaly episodes."""

    region: str
    device_id: str
    day: date
    series: pl.DataFrame  # SERIES_COLUMNS, one row per slot, in time order
    episodes: pl.DataFrame  # EPISODE_COLUMNS, one row per rule and episode

    def slot_counts(self) -> dict[str, int]:
        return {
            kind: int(self.series[f"is_{kind}"].sum())
            for kind in ("measured", "interpolated", "outage")
        }


def device_day(path: Path, region: str, device_id: str, day: date) -> DeviceDay:
    """A device's day from `device_timeseries` and `telemetry_anomalies`; WarehouseError
    when the tables are not materialized or the device has no slots that day."""
    where = "WHERE region = ? AND device_id = ? AND event_date = ?"
    params = [region, device_id, day]
    with read_only(path) as conn:
        present = _relations(conn)
        for table in ("device_timeseries", "telemetry_anomalies"):
            if table not in present:
                raise _missing(table, path)
        series = conn.sql(
            f"SELECT {', '.join(SERIES_COLUMNS)} FROM device_timeseries {where} ORDER BY slot_ts",
            params=params,
        ).pl()
        episodes = conn.sql(
            f"SELECT {', '.join(EPISODE_COLUMNS)} FROM telemetry_anomalies {where} "
            "ORDER BY episode_start_ts, rule",
            params=params,
        ).pl()
    series, episodes = _utc(series), _utc(episodes)
    if series.is_empty():
        raise WarehouseError(
            f"Device {device_id} of {region} has no time series on {day}: it sent no reading "
            f"that day, or the {day}|{region} partition is not materialized."
        )
    return DeviceDay(region, device_id, day, series, episodes)


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Time-zoned columns in `UTC`, as the pipeline writes them (DuckDB names it `Etc/UTC`)."""
    return frame.with_columns(
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone
    )


def slot_interval(series: pl.DataFrame) -> timedelta:
    """The grid interval of a day's slots (a day's grid covers the whole day)."""
    if series.is_empty():
        raise ValueError("a day with no slots has no interval")
    return timedelta(days=1) / series.height


def slot_kind() -> pl.Expr:
    return (
        pl.when(pl.col("is_measured"))
        .then(pl.lit("measured"))
        .when(pl.col("is_interpolated"))
        .then(pl.lit("interpolated"))
        .otherwise(pl.lit("outage"))
        .alias("kind")
    )


def series_points(series: pl.DataFrame) -> pl.DataFrame:
    """The day's values in long form for the chart: slot_ts, value (its column), reading,
    kind (measured / interpolated) and segment. Outage slots have no point; every outage
    starts a new segment, so a line drawn per segment never bridges one."""
    return (
        series.sort("slot_ts")
        .with_columns(slot_kind(), pl.col("is_outage").cum_sum().alias("segment"))
        .filter(~pl.col("is_outage"))
        .unpivot(
            index=["slot_ts", "kind", "segment"],
            on=list(SERIES_VALUES),
            variable_name="value",
            value_name="reading",
        )
        .drop_nulls("reading")
        .sort("value", "slot_ts")
    )


def outage_ranges(series: pl.DataFrame) -> pl.DataFrame:
    """Consecutive outage slots as time ranges: start, end (the end of the last slot), slots."""
    interval = slot_interval(series) if not series.is_empty() else timedelta(0)
    runs = series.sort("slot_ts").with_columns(
        (pl.col("is_outage") != pl.col("is_outage").shift(1)).fill_null(True).cum_sum().alias("run")
    )
    return (
        runs.filter(pl.col("is_outage"))
        .group_by("run")
        .agg(
            pl.col("slot_ts").min().alias("start"),
            (pl.col("slot_ts").max() + interval).alias("end"),
            pl.len().cast(pl.Int64).alias("slots"),
        )
        .sort("start")
        .select("start", "end", "slots")
    )


def episode_ranges(episodes: pl.DataFrame, interval: timedelta) -> pl.DataFrame:
    """Anomaly episodes as shaded ranges: rule, start, end; an episode of a single reading
    (start = end) is drawn one grid slot wide so that it stays visible."""
    return episodes.select(
        "rule",
        pl.col("episode_start_ts").alias("start"),
        pl.max_horizontal(pl.col("episode_end_ts"), pl.col("episode_start_ts") + interval).alias(
            "end"
        ),
        "readings",
    ).sort("start", "rule")


@dataclass(frozen=True)
class AnomalyInputs:
    """What the anomaly what-if needs for a day, loaded once per data version: the real
    readings the pipeline built that day's partitions from (each materialized region's, with
    its adjacent days: `readings.partition_readings`), the materialized episodes and the
    materialized region statistics."""

    day: date
    readings: pl.DataFrame
    anomalies: pl.DataFrame
    region_stats: pl.DataFrame


def anomaly_days(path: Path) -> list[date]:
    """The days with materialized region statistics, newest first."""
    frame = query(
        path,
        "SELECT DISTINCT event_date FROM daily_region_stats ORDER BY 1 DESC",
        tables=["daily_region_stats"],
    )
    return frame["event_date"].to_list()


def anomaly_inputs(path: Path, day: date) -> AnomalyInputs:
    """The anomaly what-if's input for `day` (see `AnomalyInputs`)."""
    where = "WHERE event_date = ?"
    region_stats = query(
        path,
        "SELECT region, event_date, devices, anomaly_episodes, devices_with_anomaly, "
        f"anomaly_rate, max_anomaly_rate FROM daily_region_stats {where} ORDER BY region",
        tables=["daily_region_stats"],
        params=[day],
    )
    anomalies = query(
        path,
        f"SELECT region, device_id, {', '.join(EPISODE_COLUMNS)} FROM telemetry_anomalies "
        f"{where} ORDER BY region, device_id, rule, episode_start_ts",
        tables=["telemetry_anomalies"],
        params=[day],
    )
    lake_root = paths.lake_root(Path(path).parent)
    parts = [partition_readings(lake_root, day, r) for r in region_stats["region"].to_list()]
    readings = pl.concat(parts, how="vertical").collect() if parts else None
    if readings is None or readings.is_empty():
        raise WarehouseError(
            f"The telemetry lake {lake_root} has no readings for {day}: the anomaly what-if "
            "finds episodes again in the readings the time series were built from."
        )
    return AnomalyInputs(day, readings, _utc(anomalies), region_stats)
