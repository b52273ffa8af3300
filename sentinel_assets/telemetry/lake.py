"""The telemetry lake: hive-style Parquet folders, one per event date and region.

    lake/telemetry_events/date=YYYY-MM-DD/region=<r>/batch-<batch id>.parquet
    lake/dead_letters/batch=<batch id>.parquet
    lake/batches/<batch id>.json          # manifest: source, hash, accounting, partitions
    lake/lake.json                        # how its record ids are computed

Each landing batch writes its own part file per (date, region) it touches, so ingesting a file
never rewrites another batch's data, and re-ingesting a batch replaces exactly its own parts.
A part holds its events in the order of the file's lines (readers sort as they need).
Every file is written to a temporary name, fsynced and renamed (like
`warehouse.write_partition`): a run killed mid-write leaves the previous state readable and
complete. The Dagster partition key of a shard is `<date>|<region>` (`partition_key`).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq

from sentinel_assets.contracts import TELEMETRY_EVENT_SCHEMA
from sentinel_assets.telemetry import record_id as event_ids
from sentinel_assets.warehouse import PARQUET_COMPRESSION, write_partition

EVENTS = "telemetry_events"
DEAD_LETTERS = "dead_letters"
BATCHES = "batches"
LAKE_META = "lake.json"
EVENT_DTYPES: dict[str, pl.DataType] = {
    name: column.dtype.type for name, column in TELEMETRY_EVENT_SCHEMA.columns.items()
}


def partition_key(day: date | str, region: str) -> str:
    """Dagster's key of a date x region partition (dimensions in name order: date, region)."""
    return f"{day}|{region}"


def split_partition_key(key: str) -> tuple[str, str]:
    day, _, region = key.partition("|")
    return day, region


def events_folder(lake: Path, day: str, region: str) -> Path:
    return lake / EVENTS / f"date={day}" / f"region={region}"


def event_part(lake: Path, day: str, region: str, batch: str) -> Path:
    return events_folder(lake, day, region) / f"batch-{batch}.parquet"


def dead_letters_file(lake: Path, batch: str) -> Path:
    return lake / DEAD_LETTERS / f"batch={batch}.parquet"


def manifest_file(lake: Path, batch: str) -> Path:
    return lake / BATCHES / f"{batch}.json"


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")


def write_frame(frame: pl.DataFrame, path: Path) -> None:
    write_partition(frame, path)


def sink_atomic(frame: pl.LazyFrame, path: Path) -> None:
    """Stream a lazy frame to `path` atomically (temporary name, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        frame.sink_parquet(tmp, compression=PARQUET_COMPRESSION)
        _fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# Columns whose values repeat within a part: dictionary-encoded. Statistics only where readers
# prune on them (device, time, id): the others cost a quarter of the writing for nothing.
_DICTIONARY_COLUMNS = (
    "partition_key", "region", "event_date", "model", "site", "hardware_rev", "firmware_from",
    "firmware_to", "update_status", "failure_kind", "commit_state", "source_file", "ingested_at",
)  # fmt: skip
_STATISTICS_COLUMNS = ("record_id", "device_id", "ts", "line_number")


class PartWriter:
    """A part written chunk after chunk (one row group each) to a staging file, so a file's
    events reach their part in one write, however many chunks it takes: memory holds one
    chunk and the part's ids (for duplicates), never the part's rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: list[pl.Series] = []
        self._writer: pq.ParquetWriter | None = None

    def append(self, events: pl.DataFrame) -> None:
        # Arrow's string views are Polars' own strings: no copy on the way to the writer.
        table = events.to_arrow(compat_level=pl.CompatLevel.newest())
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self.path,
                table.schema,
                compression=PARQUET_COMPRESSION,
                use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in table.column_names],
                write_statistics=[c for c in _STATISTICS_COLUMNS if c in table.column_names],
            )
        self._writer.write_table(table)
        self.ids.append(events["record_id"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def replace_atomic(source: Path, path: Path) -> None:
    """Move a finished file (on the same file system) into place: fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _fsync_replace(source, path)


def write_manifest(lake: Path, manifest: dict[str, Any]) -> None:
    _write_json(manifest_file(lake, manifest["batch"]), manifest)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True), encoding="utf-8")
        _fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def record_id_scheme(lake: Path) -> str | None:
    """How the lake's event ids were computed (None: before schemes were recorded)."""
    path = lake / LAKE_META
    return json.loads(path.read_text("utf-8")).get("record_id") if path.exists() else None


def ensure_record_ids(lake: Path) -> int:
    """Bring a lake written under an earlier record-id scheme to the current one: every part's
    ids recomputed from its own values (vectorized, atomic per part, idempotent, so a run
    killed half-way or two at once end the same), then the scheme recorded. Returns the
    parts rewritten (0 when the lake is current or new)."""
    if record_id_scheme(lake) == event_ids.SCHEME:
        return 0
    parts = event_files(lake)
    for part in parts:
        frame = pl.read_parquet(part, hive_partitioning=False)
        rehashed = frame.with_columns(event_ids.record_ids(frame))
        write_frame(rehashed.select(frame.columns), part)
    _write_json(lake / LAKE_META, {"record_id": event_ids.SCHEME})
    return len(parts)


def read_manifest(lake: Path, batch: str) -> dict[str, Any] | None:
    path = manifest_file(lake, batch)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def read_manifests(lake: Path) -> list[dict[str, Any]]:
    """Every batch's manifest, oldest ingestion first."""
    folder = lake / BATCHES
    manifests = [json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))]
    return sorted(manifests, key=lambda m: (m["ingested_at"], m["batch"]))


def earlier_parts(lake: Path, day: str, region: str, batch: str, ingested_at: str) -> list[Path]:
    """Parts of the partition written by batches ingested before this one (their events win
    ties: a resent event is a duplicate of the first batch that brought it)."""
    parts = []
    for part in sorted(events_folder(lake, day, region).glob("batch-*.parquet")):
        other = part.stem.removeprefix("batch-")
        if other == batch:
            continue
        manifest = read_manifest(lake, other)
        if manifest is None or (manifest["ingested_at"], other) < (ingested_at, batch):
            parts.append(part)
    return parts


def record_ids(parts: list[Path]) -> pl.Series:
    if not parts:
        return pl.Series("record_id", [], dtype=pl.Int64)
    return pl.scan_parquet(parts).select("record_id").collect()["record_id"]


def event_files(lake: Path) -> list[Path]:
    return sorted((lake / EVENTS).glob("date=*/region=*/batch-*.parquet"))


def scan_events(lake: Path) -> pl.LazyFrame:
    """Every event of the lake (an empty frame of the right schema when there is none)."""
    files = event_files(lake)
    if not files:
        return pl.LazyFrame(schema=EVENT_DTYPES)
    return pl.scan_parquet(files, hive_partitioning=False)


def scan_partition(lake: Path, day: str, region: str) -> pl.LazyFrame:
    files = sorted(events_folder(lake, day, region).glob("batch-*.parquet"))
    if not files:
        return pl.LazyFrame(schema=EVENT_DTYPES)
    return pl.scan_parquet(files, hive_partitioning=False)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_lake_views(conn: duckdb.DuckDBPyConnection, lake: Path) -> list[str]:
    """Views `telemetry_events` and `dead_letters` over the lake (those with files)."""
    created = []
    globs = {
        EVENTS: lake / EVENTS / "date=*" / "region=*" / "batch-*.parquet",
        DEAD_LETTERS: lake / DEAD_LETTERS / "batch=*.parquet",
    }
    for view, pattern in globs.items():
        if not any(lake.glob(pattern.relative_to(lake).as_posix())):
            continue
        conn.execute(
            f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet("
            f"{_sql_string(pattern.resolve().as_posix())}, hive_partitioning = false, "
            "union_by_name = true)"
        )
        created.append(view)
    return created


def ingested_batches(lake: Path) -> set[str]:
    """Batch ids with a manifest: ingested (or found unreadable) at least once."""
    folder = lake / BATCHES
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()
