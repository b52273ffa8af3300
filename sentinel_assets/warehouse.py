"""The warehouse: one Parquet file per (asset, region), exposed as views in one DuckDB file.

Region shards are computed in parallel, and DuckDB allows one writing process per file, so
shards never write into the DuckDB file: each replaces its own Parquet file atomically
(write to a temporary name, fsync, rename). A run killed mid-write leaves the previous file in
place. The DuckDB file holds only views over those files and the cross-region report tables,
so its writes are short.
"""

from __future__ import annotations

import errno
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets.alerts import ensure_alerts_table
from sentinel_assets.contracts import UNHEALTHY_STATUSES, validate_region
from sentinel_assets.failures import reads_as_disk_full
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
    except (OSError, pl.exceptions.ComputeError) as error:
        if not reads_as_disk_full(str(error)):
            raise
        # Polars reports ENOSPC as a ComputeError; as an OSError it is retried as transient.
        raise OSError(
            errno.ENOSPC,
            f"No space left on device for {path} (the previous shard is intact): free space "
            "and re-materialize the partition",
        ) from error
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


class BrokenStorageError(ValueError):
    """A shard or the catalog file that exists but cannot be read."""


class CatalogLockedError(RuntimeError):
    """The catalog stayed locked by another process for the whole wait."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
LOCK_WAIT_ENV = "SENTINEL_CATALOG_LOCK_WAIT_S"


def lock_holder(message: str) -> str:
    """`PID 4242 (/usr/bin/python3)` from DuckDB's lock error, or its words when it names none."""
    found = _LOCK_HOLDER.search(message)
    if found is None:
        return message.strip().splitlines()[0] if message.strip() else "another process"
    return f"PID {found['pid']} ({found['program']})"


def connect_waiting(
    database: Path, config: dict, wait_s: float, first_delay_s: float = 0.1
) -> duckdb.DuckDBPyConnection:
    """A read-write connection, retried with backoff while another process holds the file's
    lock, for at most `wait_s`; then `CatalogLockedError` names the holder (DuckDB says its
    PID) and what to do, instead of a wait without end."""
    deadline = time.monotonic() + wait_s
    delay = first_delay_s
    while True:
        try:
            return duckdb.connect(str(database), read_only=False, config=config)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise CatalogLockedError(
                    f"The warehouse file {database} stayed locked by {lock_holder(str(error))} "
                    f"for {wait_s:g} s ({LOCK_WAIT_ENV}): close that DuckDB session (a `duckdb` "
                    "shell, a notebook, a script) and re-run; the region shards already "
                    "written are intact."
                ) from error
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


def rematerialize_hint(shard: Path) -> str:
    """How to rebuild one shard: every shard is derived, so its partition is re-run."""
    asset, region = shard.parent.name, shard.stem.removeprefix("region=")
    return (
        f"re-materialize {asset} for {region} (`sentinel demo --regions {region}`, or "
        f"`dagster asset materialize -m sentinel_assets.definitions --select {asset} "
        f"--partition {region}`)"
    )


def broken_shard(shard: Path, reason: str) -> BrokenStorageError:
    first_line = reason.strip().splitlines()[0] if reason.strip() else "unreadable"
    return BrokenStorageError(
        f"The shard {shard} is broken ({first_line}): {rematerialize_hint(shard)}."
    )


def read_partition(path: Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Load a shard, with a message that says which shard is missing or broken."""
    if not path.exists():
        raise FileNotFoundError(
            f"no data at {path}: materialize {path.parent.name} for this region first"
        )
    try:
        return pl.read_parquet(path, columns=list(columns) if columns else None)
    except pl.exceptions.ComputeError as error:
        raise broken_shard(path, str(error)) from None


# DuckDB names the file it could not read as Parquet, e.g. "No magic bytes found at end of
# file '/x/region=eu-west.parquet'".
_PARQUET_IN_ERROR = re.compile(r"'([^']+\.parquet)'")
NOT_A_CATALOG = "not a valid DuckDB database file"


def broken_catalog(catalog: Path, reason: str) -> BrokenStorageError:
    return BrokenStorageError(
        f"The catalog {catalog} is not a readable DuckDB file ({reason.strip()}). It holds "
        "views over the shards, the report tables and the alerts: `sentinel rebuild-catalog` "
        "sets it aside and rebuilds it from the shards."
    )


DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


def is_duckdb_file(path: Path) -> bool:
    """False for a file that exists but is not a DuckDB database (without opening it: the
    IO manager's connection would retry a garbage file for minutes)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except FileNotFoundError:
        return True  # created on first use
    return len(header) == 0 or header[8:12] == DUCKDB_MAGIC


def storage_problem(error: BaseException, catalog: Path | None = None) -> BrokenStorageError | None:
    """The broken shard (or `catalog`) behind a DuckDB error, said with how to rebuild it."""
    text = str(error)
    if isinstance(error, duckdb.IOException) and NOT_A_CATALOG in text and catalog:
        return broken_catalog(catalog, NOT_A_CATALOG)
    if isinstance(error, duckdb.InvalidInputException | duckdb.IOException):
        found = _PARQUET_IN_ERROR.search(text)
        if found:
            return broken_shard(Path(found.group(1)), text.split(": ", 1)[-1])
    return None


def missing_shards(tables_root: Path) -> list[Path]:
    """Shards a region lacks while its other tables have one: a deleted or never-renamed
    file, which a view over the rest would silently leave out of every report."""
    if not tables_root.exists():
        return []
    shards = {
        table.name: {shard.name for shard in table.glob("region=*.parquet")}
        for table in sorted(tables_root.iterdir())
        if table.is_dir()
    }
    regions = set().union(*shards.values()) if shards else set()
    return [
        tables_root / table / name
        for table, names in shards.items()
        if names
        for name in sorted(regions - names)
    ]


def require_whole_regions(tables_root: Path) -> None:
    """Refuse to report over a region whose shards are incomplete, naming the first gap."""
    gaps = missing_shards(tables_root)
    if gaps:
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise BrokenStorageError(
            f"The shard {gaps[0]} is missing{more} while the region's other tables have "
            f"theirs: {rematerialize_hint(gaps[0])}."
        )


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def has_shards(tables_root: Path, table: str) -> bool:
    return any(table_dir(tables_root, table).glob("region=*.parquet"))


def _shard_pattern(tables_root: Path, table: str) -> str:
    return (table_dir(tables_root, table) / "region=*.parquet").resolve().as_posix()


def create_view(conn: duckdb.DuckDBPyConnection, tables_root: Path, table: str) -> None:
    """(Re)point the catalog view of an asset at all of its region shards. DuckDB binds a
    view's `SELECT *` again on every query, so new regions and new columns show up without
    re-creating it."""
    pattern = _shard_pattern(tables_root, table)
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


def tables_with_shards(tables_root: Path) -> list[str]:
    """Every asset with at least one region shard on disk, by name."""
    if not tables_root.exists():
        return []
    return sorted(
        p.name for p in tables_root.glob("*") if p.is_dir() and has_shards(tables_root, p.name)
    )


def create_views(conn: duckdb.DuckDBPyConnection, tables_root: Path) -> list[str]:
    """The catalog's macros, its (maybe empty) alerts table, and views for every asset that
    has at least one shard on disk; returns the views' names."""
    create_macros(conn)
    # Users query `FROM alerts` before anything has failed: it exists from the first run.
    ensure_alerts_table(conn)
    names = tables_with_shards(tables_root)
    for name in names:
        create_view(conn, tables_root, name)
    return names


def ensure_views(conn: duckdb.DuckDBPyConnection, tables_root: Path) -> list[str]:
    """`create_views`, but a view already over this data folder's shards is left as it is:
    each report of a refresh would otherwise re-create (and DuckDB re-bind, reading every
    shard's footer) every view the refresh's writes have just created."""
    create_macros(conn)
    ensure_alerts_table(conn)
    current = dict(
        conn.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'"
        ).fetchall()
    )
    names = tables_with_shards(tables_root)
    for name in names:
        if _sql_string(_shard_pattern(tables_root, name)) not in (current.get(name) or ""):
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


@dataclass(frozen=True)
class RebuiltCatalog:
    """What `rebuild_catalog` did: where the old file went, the views made, alerts kept."""

    set_aside: Path | None
    views: list[str]
    alerts_kept: int


def _alerts_of(old: Path, conn: duckdb.DuckDBPyConnection) -> int:
    """Copy the alerts of a readable old catalog (the one table that is not derived data)."""
    try:
        conn.execute(f"ATTACH {_sql_string(str(old))} AS old_catalog (READ_ONLY)")
    except duckdb.Error:
        return 0  # unreadable: its alerts are gone with it (the file is kept for forensics)
    try:
        tables = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'old_catalog' "
            "AND table_name = 'alerts'"
        ).fetchall()[0][0]
        if not tables:
            return 0
        conn.execute("INSERT OR IGNORE INTO alerts BY NAME SELECT * FROM old_catalog.alerts")
        return conn.execute("SELECT count(*) FROM alerts").fetchall()[0][0]
    finally:
        conn.execute("DETACH old_catalog")


def rebuild_catalog(
    catalog: Path, tables_root: Path, stamp: str, config: dict[str, str] | None = None
) -> RebuiltCatalog:
    """Set the catalog file aside (kept as `<name>.set-aside-<stamp>`) and create a new one
    from the shards: macros, views, and the alerts table with the old alerts when readable.
    Report tables are rebuilt by materializing them again."""
    set_aside = None
    if catalog.exists():
        set_aside = catalog.with_name(f"{catalog.name}.set-aside-{stamp}")
        os.replace(catalog, set_aside)
        wal = catalog.with_name(catalog.name + ".wal")
        if wal.exists():
            os.replace(wal, set_aside.with_name(set_aside.name + ".wal"))
    catalog.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(catalog), config=config or {}) as conn:
        views = create_views(conn, tables_root)
        kept = _alerts_of(set_aside, conn) if set_aside else 0
    return RebuiltCatalog(set_aside, views, kept)
