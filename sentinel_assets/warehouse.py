"""The warehouse: one Parquet file per (asset, region), exposed as views in one DuckDB file.

Region shards are computed in parallel, and DuckDB allows one writing process per file, so
shards never write into the DuckDB file: each replaces its own Parquet file atomically
(write to a temporary name, fsync, rename). A run killed mid-write leaves the previous file in
place. The DuckDB file holds only views over those files and the cross-region report tables,
so its writes are short.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets.alerts import ensure_alerts_table
from sentinel_assets.contracts import UNHEALTHY_STATUSES, validate_region
from sentinel_assets.quality import QUARANTINE_RATE_MACRO

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
PARQUET_COMPRESSION = "lz4"
# The catalog file takes one writer process at a time: the Dagster pool of the steps that
# write it (one slot, see dagster.yaml).
CATALOG_POOL = "duckdb_catalog"
# The cross-region report tables inside the catalog file, each built from `sql/<name>.sql`
# (the Dagster `reports` group has one asset per table).
REPORT_TABLES: tuple[str, ...] = (
    "regional_rank",
    "failure_clusters",
    "failure_telemetry",
    "triage_queue",
    "campaign_report",
    "status_before_after",
)


def _identifier(name: str) -> str:
    """Table names come from asset keys; still, never splice an unchecked name into SQL."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid table name {name!r}: use lowercase letters, digits and _")
    return name


def table_dir(tables_root: Path, table: str) -> Path:
    return tables_root / _identifier(table)


def partition_file(tables_root: Path, table: str, region: str) -> Path:
    """Where one region's shard of one asset lives."""
    return table_dir(tables_root, table) / f"region={validate_region(region)}.parquet"


def write_partition(frame: pl.DataFrame, path: Path) -> None:
    """Replace a shard atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression=PARQUET_COMPRESSION)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class WrittenShard:
    """A frame and the identity of the file it was written to, to tell whether that file
    still holds exactly this frame (no other process replaced it since)."""

    frame: pl.DataFrame
    path: Path
    file_id: tuple[int, int, int]

    @staticmethod
    def _file_id(path: Path) -> tuple[int, int, int]:
        stat = path.stat()
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    @classmethod
    def of(cls, path: Path, frame: pl.DataFrame) -> WrittenShard:
        return cls(frame, path, cls._file_id(path))

    def is_on_disk(self) -> bool:
        try:
            return self._file_id(self.path) == self.file_id
        except FileNotFoundError:
            return False


def read_partition(path: Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Load a shard, with a message that says which shard is missing."""
    if not path.exists():
        raise FileNotFoundError(
            f"no data at {path}: materialize {path.parent.name} for this region first"
        )
    return pl.read_parquet(path, columns=list(columns) if columns else None)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def has_shards(tables_root: Path, table: str) -> bool:
    return any(table_dir(tables_root, table).glob("region=*.parquet"))


def create_view(conn: duckdb.DuckDBPyConnection, tables_root: Path, table: str) -> None:
    """(Re)point the catalog view of an asset at all of its region shards. DuckDB binds a
    view's `SELECT *` again on every query, so new regions and new columns show up without
    re-creating it."""
    pattern = (table_dir(tables_root, table) / "region=*.parquet").resolve().as_posix()
    # DDL takes no bound parameters: the path is quoted as a SQL string literal instead.
    conn.execute(
        f"CREATE OR REPLACE VIEW {_identifier(table)} AS "
        f"SELECT * FROM read_parquet({_sql_string(pattern)}, union_by_name = true)"
    )


def _unhealthy_macro() -> str:
    statuses = ", ".join(_sql_string(status) for status in UNHEALTHY_STATUSES)
    return f"is_unhealthy(status) AS status IN ({statuses})"


def create_macros(conn: duckdb.DuckDBPyConnection) -> None:
    """SQL macros for the definitions the shipped queries share with the Python code, so each
    is stated once: `is_unhealthy(update_status)` and `quarantine_rate(quarantined, trusted)`.
    They live in the catalog file, so analysts' own queries can use them too."""
    for macro in (_unhealthy_macro(), QUARANTINE_RATE_MACRO):
        conn.execute(f"CREATE OR REPLACE MACRO {macro}")


def create_views(conn: duckdb.DuckDBPyConnection, tables_root: Path) -> list[str]:
    """The catalog's macros, its (maybe empty) alerts table, and views for every asset that
    has at least one shard on disk; returns the views' names."""
    create_macros(conn)
    # Users query `FROM alerts` before anything has failed: it exists from the first run.
    ensure_alerts_table(conn)
    names = (
        sorted(
            p.name for p in tables_root.glob("*") if p.is_dir() and has_shards(tables_root, p.name)
        )
        if tables_root.exists()
        else []
    )
    for name in names:
        create_view(conn, tables_root, name)
    return names


def read_sql(name: str) -> str:
    """A query shipped with the package, for the pipeline and for analysts alike."""
    return resources.files("sentinel_assets.sql").joinpath(name).read_text(encoding="utf-8")


def create_table_from_sql(conn: duckdb.DuckDBPyConnection, table: str, sql: str) -> int:
    """Replace a report table in one transaction; returns its row count."""
    conn.execute(f"CREATE OR REPLACE TABLE {_identifier(table)} AS {sql.strip().rstrip(';')}")
    [(rows,)] = conn.execute(f"SELECT count(*) FROM {_identifier(table)}").fetchall()
    return rows
