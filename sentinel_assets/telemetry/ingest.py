"""One landed file -> accepted events in the lake, dead letters, and its accounting.

Per file, every data line is accounted for exactly once:
`data_lines = accepted + duplicates + dead_letters`, where data lines are the physical lines
that are neither the CSV header nor blank (for Parquet: the rows). A duplicate is an event
with the same device, timestamp and payload as one already accepted, earlier in the file or
by a batch ingested before (devices and gateways resend).

`record_id` of an event is a stable 63-bit hash of its V2 payload (device, timestamp and every
reading; `telemetry.record_id`): same content, same id, on every machine and re-ingestion, also
for a V1 record and its V2 resend. That is also the duplicate identity. `record_id` of a dead
letter is the hash of (file SHA-256, line number).

Files are processed chunk by chunk (`wire.CHUNK_BYTES`); accepted events are staged per
(date, region) and moved into the lake only when the whole file was read, so a file that
fails half-way (a truncated gzip) leaves no events behind: it becomes one dead letter.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sentinel_assets.contracts import MODELS, REGIONS
from sentinel_assets.telemetry import lake as lake_io
from sentinel_assets.telemetry.dead_letters import (
    dead_letter_frame,
    empty_dead_letters,
    whole_file_dead_letter,
)
from sentinel_assets.telemetry.envelope import (
    drop_redelivered,
    is_stream_batch,
    stream_chunks,
    with_message_identity,
)
from sentinel_assets.telemetry.landing import batch_id, content_hash
from sentinel_assets.telemetry.record_id import record_id
from sentinel_assets.telemetry.schema import upcast
from sentinel_assets.telemetry.wire import UnreadableFile, read_chunks

INGEST_WORKERS = 2  # files read side by side by `ingest_files` (the 2-core target machine)


@dataclass
class FileAccounting:
    """What became of one file's lines."""

    source_file: str
    sha256: str
    batch: str
    header_lines: int = 0
    blank_lines: int = 0
    data_lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    unreadable: str | None = None  # the whole-file reason, when it could not be read at all
    seconds: float = 0.0
    partitions: dict[str, int] = field(default_factory=dict)  # events written per partition

    @property
    def balanced(self) -> bool:
        """Nothing lost, nothing invented (an unreadable file is one dead letter, no event)."""
        if self.unreadable:
            return self.dead_letters == 1 and self.accepted == 0 and self.duplicates == 0
        return self.data_lines == self.accepted + self.duplicates + self.dead_letters

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "balanced": self.balanced}


@dataclass(frozen=True)
class IngestResult:
    accounting: FileAccounting
    dead_letters: pl.DataFrame

    @property
    def batch(self) -> str:
        return self.accounting.batch


def _utc(moment: datetime) -> pl.Expr:
    return pl.lit(moment).dt.cast_time_unit("us").dt.convert_time_zone("UTC")


def events_from(rows: pl.DataFrame, *, source_file: str, ingested_at: datetime) -> pl.DataFrame:
    """Accepted upcast rows -> `telemetry_events` rows (record key, partition, lineage)."""
    frame = rows.with_columns(pl.col("ts").dt.date().alias("event_date"), record_id()).with_columns(
        # Not `pl.format`: Polars 2.1 panics on it over a filtered (chunked) string column.
        pl.concat_str([pl.col("event_date"), pl.col("region")], separator="|").alias(
            "partition_key"
        ),
        pl.lit(source_file).alias("source_file"),
        _utc(ingested_at).alias("ingested_at"),
    )
    return frame.select([pl.col(name).cast(dtype) for name, dtype in lake_io.EVENT_DTYPES.items()])


def _unreadable(
    accounting: FileAccounting, error: UnreadableFile, ingested_at: datetime
) -> pl.DataFrame:
    accounting.unreadable = error.reason
    accounting.header_lines = accounting.blank_lines = accounting.data_lines = 0
    accounting.accepted = accounting.duplicates = 0
    accounting.dead_letters = 1
    accounting.partitions = {}
    return whole_file_dead_letter(
        error.reason,
        source_file=accounting.source_file,
        source_sha256=accounting.sha256,
        ingested_at=ingested_at,
        detail=error.detail,
    )


def ingest_file(
    path: Path,
    lake: Path,
    *,
    source_name: str | None = None,
    regions: Sequence[str] = REGIONS,
    models: Sequence[str] = MODELS,
    only_partitions: set[str] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Ingest one file into the lake; never raises for bad content (it becomes dead letters).

    `only_partitions` rewrites just those date x region parts (a Dagster backfill of
    `telemetry_events`); the dead letters and the batch manifest are then left as they are.
    """
    lake_io.ensure_record_ids(lake)
    staged = _stage_file(
        path, lake, source_name=source_name, regions=regions, models=models,
        only_partitions=only_partitions, now=now,
    )  # fmt: skip
    return _publish(lake, staged)


def ingest_files(
    paths: Sequence[Path],
    lake: Path,
    *,
    workers: int = INGEST_WORKERS,
    regions: Sequence[str] = REGIONS,
    models: Sequence[str] = MODELS,
) -> Iterator[IngestResult]:
    """`ingest_file` over many files, `workers` of them read at a time (in threads: the work is
    Polars, DuckDB and NumPy, which run without the GIL), each published into the lake in
    the given order as soon as it and every file before it are staged. Publication order is
    ingestion order, as if the files were ingested one after another: an event resent in a
    later file is a duplicate of the earlier file's. At most `workers` files are being read
    or published at once, and `workers + 1` staged and unpublished (memory and disk stay
    bounded whatever the number of files)."""
    lake_io.ensure_record_ids(lake)
    started = datetime.now(UTC)
    width = max(1, workers)
    busy = threading.BoundedSemaphore(width)  # files being read or published: memory bound

    def stage(path: Path, now: datetime) -> _Staged:
        with busy:
            return _stage_file(
                path, lake, source_name=None, regions=regions, models=models,
                only_partitions=None, now=now,
            )  # fmt: skip

    def publish(future: Future[_Staged]) -> IngestResult:
        staged = future.result()
        with busy:
            return _publish(lake, staged)

    pending: deque[Future[_Staged]] = deque()
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="ingest") as pool:
        try:
            for number, path in enumerate(paths):
                now = started + timedelta(microseconds=number)  # ingestion order = list order
                pending.append(pool.submit(stage, path, now))
                if len(pending) > width:
                    yield publish(pending.popleft())
            while pending:
                yield publish(pending.popleft())
        finally:  # stopped early (an error, or the caller stopped reading): nothing left staged
            for future in pending:
                future.cancel()
            for future in pending:
                if not future.cancelled() and future.exception() is None:
                    shutil.rmtree(future.result().staging, ignore_errors=True)


@dataclass
class _Staged:
    """One file read into staged parts (not yet in the lake), or found unreadable."""

    accounting: FileAccounting
    ingested_at: datetime
    staging: Path
    staged: dict[str, lake_io.PartWriter]  # per partition key
    rejected: list[pl.DataFrame]
    only_partitions: set[str] | None
    started: float
    unreadable: UnreadableFile | None = None


def _stage_file(
    path: Path,
    lake: Path,
    *,
    source_name: str | None,
    regions: Sequence[str],
    models: Sequence[str],
    only_partitions: set[str] | None,
    now: datetime | None,
) -> _Staged:
    """Read, upcast, identify and dedupe one file's events into per-partition staged parts:
    nothing in the lake changes, so files can be staged side by side."""
    started = time.perf_counter()
    sha256 = content_hash(path)
    batch = batch_id(sha256)
    previous = lake_io.read_manifest(lake, batch)
    ingested_at = (
        datetime.fromisoformat(previous["ingested_at"]) if previous else (now or datetime.now(UTC))
    )
    accounting = FileAccounting(source_name or path.name, sha256, batch)
    staging = lake / "_staging" / f"{batch}-{uuid.uuid4().hex}"
    result = _Staged(accounting, ingested_at, staging, {}, [], only_partitions, started)
    staged, rejected = result.staged, result.rejected
    try:
        # `*.mqtt.jsonl`: the MQTT consumer's batches, one message envelope a line.
        chunks = stream_chunks(path) if is_stream_batch(path) else read_chunks(path)
        for chunk in chunks:
            accounting.header_lines += chunk.header_lines
            accounting.blank_lines += chunk.blank_lines
            accounting.data_lines += chunk.records.height
            rows = upcast(chunk.records, regions=regions, models=models)
            if rows.rejected.height:
                rejected.append(
                    dead_letter_frame(
                        with_message_identity(rows.rejected, chunk.records),
                        source_file=accounting.source_file,
                        source_sha256=sha256,
                        ingested_at=ingested_at,
                    )
                )
            events = events_from(
                rows.valid, source_file=accounting.source_file, ingested_at=ingested_at
            )
            # Resends within the chunk here; across chunks when they are published.
            fresh = events.filter(pl.col("record_id").is_first_distinct())
            accounting.duplicates += events.height - fresh.height
            if only_partitions is not None:
                fresh = fresh.filter(pl.col("partition_key").is_in(list(only_partitions)))
            for (key,), part in fresh.partition_by(
                "partition_key", as_dict=True, maintain_order=True
            ).items():
                writer = staged.get(str(key))
                if writer is None:
                    writer = staged[str(key)] = lake_io.PartWriter(
                        staging / f"{len(staged)}.parquet"
                    )
                writer.append(part)
    except UnreadableFile as error:
        result.unreadable = error
    except BaseException:
        _close(staged)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _close(staged)
    return result


def _close(staged: dict[str, lake_io.PartWriter]) -> None:
    for writer in staged.values():
        writer.close()


def _publish(lake: Path, staged: _Staged) -> IngestResult:
    """Move a staged file into the lake: its events (less those an earlier batch brought),
    its dead letters and its manifest; the staging folder goes in any case."""
    accounting, ingested_at = staged.accounting, staged.ingested_at
    batch, only_partitions = accounting.batch, staged.only_partitions
    try:
        if staged.unreadable is not None:
            dead = _unreadable(accounting, staged.unreadable, ingested_at)
            if only_partitions is None:
                _publish_dead_letters(lake, batch, dead)
                lake_io.write_manifest(lake, _manifest(accounting, ingested_at))
            accounting.seconds = time.perf_counter() - staged.started
            return IngestResult(accounting, dead)
        lake_duplicates = _publish_events(lake, batch, ingested_at, staged.staged, accounting)
        accounting.duplicates += lake_duplicates
        dead = pl.concat(staged.rejected) if staged.rejected else empty_dead_letters()
        kept = drop_redelivered(dead, _earlier_dead_letters(lake, batch))
        accounting.duplicates += dead.height - kept.height  # stream messages redelivered
        dead = kept
        accounting.dead_letters = dead.height
        accounting.accepted = accounting.data_lines - accounting.duplicates - dead.height
        if only_partitions is None:
            _publish_dead_letters(lake, batch, dead)
            lake_io.write_manifest(lake, _manifest(accounting, ingested_at))
        accounting.seconds = time.perf_counter() - staged.started
        return IngestResult(accounting, dead)
    finally:
        shutil.rmtree(staged.staging, ignore_errors=True)


def _publish_events(
    lake: Path,
    batch: str,
    ingested_at: datetime,
    staged: dict[str, lake_io.PartWriter],
    accounting: FileAccounting,
) -> int:
    """Move staged parts into the lake, dropping the events an earlier batch already brought
    and those resent in a later chunk of this file (a resend keeps its first line); returns
    how many were dropped so. A part with nothing to drop (the usual case) is renamed into
    place; otherwise it is streamed into place without those rows."""
    dropped = 0
    for key in sorted(staged):
        day, region = lake_io.split_partition_key(key)
        earlier = lake_io.record_ids(
            lake_io.earlier_parts(lake, day, region, batch, ingested_at.isoformat())
        )
        writer = staged[key]
        ids = pl.concat(writer.ids).to_frame("record_id")
        keep = ids.select(
            pl.col("record_id").is_first_distinct() & ~pl.col("record_id").is_in(earlier.implode())
        ).to_series()
        written = int(keep.sum())
        dropped += ids.height - written
        part = lake_io.event_part(lake, day, region, batch)
        if written == ids.height:
            lake_io.replace_atomic(writer.path, part)
        elif written:
            drop = (~keep).arg_true().implode()
            rows = pl.scan_parquet(writer.path).with_row_index("_row")
            lake_io.sink_atomic(rows.filter(~pl.col("_row").is_in(drop)).drop("_row"), part)
        else:
            part.unlink(missing_ok=True)  # a re-ingestion whose events all came earlier
        if written:
            accounting.partitions[key] = written
    return dropped


def _earlier_dead_letters(lake: Path, batch: str) -> list[Path]:
    mine = lake_io.dead_letters_file(lake, batch)
    return sorted(p for p in mine.parent.glob("batch=*.parquet") if p != mine)


def _publish_dead_letters(lake: Path, batch: str, dead: pl.DataFrame) -> None:
    lake_io.write_frame(dead.sort("line_number"), lake_io.dead_letters_file(lake, batch))


def _manifest(accounting: FileAccounting, ingested_at: datetime) -> dict[str, object]:
    return {
        **accounting.as_dict(),
        "ingested_at": ingested_at.astimezone(UTC).isoformat(),
    }


def rebuild_partition(
    lake: Path,
    key: str,
    batch_files: dict[str, Path],
    *,
    regions: Sequence[str] = REGIONS,
    models: Sequence[str] = MODELS,
) -> pl.DataFrame:
    """Re-read every landed batch that touched a date x region partition (oldest first) and
    rewrite its parts: the historical migration (V1 history upcast by today's rules).
    `batch_files` maps batch id -> its landed file. Returns the partition's events."""
    for manifest in lake_io.read_manifests(lake):
        path = batch_files.get(manifest["batch"])
        if path is not None and key in manifest.get("partitions", {}):
            ingest_file(
                path,
                lake,
                source_name=manifest["source_file"],
                regions=regions,
                models=models,
                only_partitions={key},
            )
    day, region = lake_io.split_partition_key(key)
    return lake_io.scan_partition(lake, day, region).collect().sort("device_id", "ts", "record_id")
