"""Where the time-series tables live and how the catalog sees them.

    tables/<asset>/date=YYYY-MM-DD/region=<r>.parquet   one file per date x region partition
    tables/<star table>/all.parquet                     dim_device, dim_date, fact_telemetry

Each file is replaced atomically (`warehouse.write_partition`). The catalog's views glob the
files, so a new partition shows up without re-creating them. (`warehouse.create_views` only
picks up `tables/<asset>/region=*.parquet` shards, so the two layouts never mix.)
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets.contracts import validate_region
from sentinel_assets.warehouse import table_dir, write_partition

PARTITIONED_TABLES: tuple[str, ...] = (
    "device_timeseries",
    "telemetry_anomalies",
    "daily_device_stats",
    "daily_region_stats",
)
STAR_TABLES: tuple[str, ...] = ("dim_device", "dim_date", "fact_telemetry")
STAR_FILE = "all.parquet"


def partition_file(tables_root: Path, table: str, day: date | str, region: str) -> Path:
    return (
        table_dir(tables_root, table) / f"date={day}" / f"region={validate_region(region)}.parquet"
    )


def star_file(tables_root: Path, table: str) -> Path:
    return table_dir(tables_root, table) / STAR_FILE


def write(frame: pl.DataFrame, path: Path) -> Path:
    write_partition(frame, path)
    return path


def read_partition(tables_root: Path, table: str, day: date | str, region: str) -> pl.DataFrame:
    """A partition's table; a missing one names what to materialize first."""
    path = partition_file(tables_root, table, day, region)
    if not path.exists():
        raise FileNotFoundError(
            f"no {table} for {day}|{region} at {path}: materialize {table} for that partition first"
        )
    return pl.read_parquet(path)


def _pattern(tables_root: Path, table: str) -> str | None:
    folder = table_dir(tables_root, table)
    glob = "date=*/region=*.parquet" if table in PARTITIONED_TABLES else STAR_FILE
    if not any(folder.glob(glob)):
        return None
    return (folder / glob).resolve().as_posix()


def create_views(conn: duckdb.DuckDBPyConnection, tables_root: Path) -> list[str]:
    """Catalog views over the time-series tables that have files; returns their names."""
    created = []
    for table in (*PARTITIONED_TABLES, *STAR_TABLES):
        pattern = _pattern(tables_root, table)
        if pattern is None:
            continue
        quoted = "'" + pattern.replace("'", "''") + "'"
        conn.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({quoted}, "
            "hive_partitioning = false, union_by_name = true)"
        )
        created.append(table)
    return created
