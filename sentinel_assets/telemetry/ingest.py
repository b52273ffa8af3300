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
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
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
    STREAM_KIND,
    drop_redelivered,
    is_stream_batch,
    parse_stream_block,
    stream_blocks,
    with_message_identity,
)
from sentinel_assets.telemetry.landing import batch_id, content_hash
from sentinel_assets.telemetry.record_id import record_ids
from sentinel_assets.telemetry.schema import upcast
from sentinel_assets.telemetry.wire import (
    Block,
    UnreadableFile,
    WireChunk,
    parse_block,
    read_blocks,
)

INGEST_WORKERS = 2  # blocks parsed side by side (the 2-core target machine)


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
    frame = rows.with_columns(
        pl.col("ts").dt.date().alias("event_date"), record_ids(rows)
    ).with_columns(
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
    workers: int = INGEST_WORKERS,
) -> IngestResult:
    """Ingest one file into the lake; never raises for bad content (it becomes dead letters).

    `only_partitions` rewrites just those date x region parts (a Dagster backfill of
    `telemetry_events`); the dead letters and the batch manifest are then left as they are.
    """
    job = _Job(path, source_name, only_partitions, now)
    [result] = _ingest([job], lake, workers=workers, regions=regions, models=models)
    return result


def ingest_files(
    paths: Sequence[Path],
    lake: Path,
    *,
    workers: int = INGEST_WORKERS,
    regions: Sequence[str] = REGIONS,
    models: Sequence[str] = MODELS,
) -> Iterator[IngestResult]:
    """`ingest_file` over many files, each published into the lake in the given order as soon
    as it is read: publication order is ingestion order, as if the files were ingested one
    after another (an event resent in a later file is a duplicate of the earlier file's).
    Blocks are parsed `workers` at a time, across files (in threads: the work is Polars,
    DuckDB, NumPy and Arrow, which run without the GIL), so the last big file does not run on
    one core while the other waits."""
    started = datetime.now(UTC)
    jobs = (
        _Job(path, None, None, started + timedelta(microseconds=number))  # ingestion order
        for number, path in enumerate(paths)
    )
    yield from _ingest(jobs, lake, workers=workers, regions=regions, models=models)


@dataclass(frozen=True)
class _Job:
    path: Path
    source_name: str | None
    only_partitions: set[str] | None
    now: datetime | None


@dataclass
class _Staged:
    """One file being read into staged parts (not yet in the lake), or found unreadable."""

    accounting: FileAccounting
    ingested_at: datetime
    staging: Path
    staged: dict[str, lake_io.PartWriter]  # per partition key
    rejected: list[pl.DataFrame]
    only_partitions: set[str] | None
    started: float
    unreadable: UnreadableFile | None = None


@dataclass(frozen=True)
class _ChunkRows:
    """What one block became, ready to be added to its file in order."""

    header_lines: int
    blank_lines: int
    data_lines: int
    duplicates: int  # resent within the block
    rejected: pl.DataFrame | None  # dead-letter rows
    parts: dict[str, pl.DataFrame]  # fresh events per partition key


_END_OF_FILE = None


def _ingest(
    jobs: Iterable[_Job],
    lake: Path,
    *,
    workers: int,
    regions: Sequence[str],
    models: Sequence[str],
) -> Iterator[IngestResult]:
    """Read the files' blocks in order, parse and validate them `workers` at a time, add each
    to its file's staged parts in order, and publish each file once all its blocks are in.
    At most `workers + 2` blocks are in flight (memory stays bounded whatever the files);
    stopping early (an error, or the caller stopped reading) leaves nothing staged."""
    lake_io.ensure_record_ids(lake)
    in_flight: deque[tuple[_Staged, Future[_ChunkRows] | None]] = deque()
    open_files: dict[Path, _Staged] = {}  # by staging folder: read, not yet published
    limit = max(1, workers) + 2

    def settle(until: int) -> Iterator[IngestResult]:
        while len(in_flight) > until:
            staged, future = in_flight.popleft()
            if future is _END_OF_FILE:
                _close(staged.staged)
                del open_files[staged.staging]
                yield _publish(lake, staged)
                continue
            try:
                rows = future.result()
            except UnreadableFile as error:  # a block that is not what its file claims
                staged.unreadable = staged.unreadable or error
                continue
            if staged.unreadable is None:
                _add_chunk(staged, rows)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest") as pool:
        try:
            for job in jobs:
                staged = _open_file(job, lake)
                open_files[staged.staging] = staged
                try:
                    for block in _blocks_of(job.path):
                        task = pool.submit(_chunk_rows, block, staged, regions, models)
                        in_flight.append((staged, task))
                        yield from settle(limit)
                except UnreadableFile as error:
                    staged.unreadable = staged.unreadable or error
                in_flight.append((staged, _END_OF_FILE))
                yield from settle(limit)
            yield from settle(0)
        finally:
            tasks = [future for _, future in in_flight if future is not None]
            for future in tasks:
                future.cancel()
            for future in tasks:
                if not future.cancelled():
                    future.exception()  # wait: nothing is staged after this
            for staged in open_files.values():
                _close(staged.staged)
                shutil.rmtree(staged.staging, ignore_errors=True)


def _blocks_of(path: Path) -> Iterator[Block]:
    # `*.mqtt.jsonl`: the MQTT consumer's batches, one message envelope a line.
    return stream_blocks(path) if is_stream_batch(path) else read_blocks(path)


def _parse(block: Block) -> WireChunk:
    return parse_stream_block(block) if block.kind == STREAM_KIND else parse_block(block)


def _open_file(job: _Job, lake: Path) -> _Staged:
    """The file's identity (content hash) and ingestion time; nothing is read yet."""
    started = time.perf_counter()
    sha256 = content_hash(job.path)
    batch = batch_id(sha256)
    previous = lake_io.read_manifest(lake, batch)
    ingested_at = (
        datetime.fromisoformat(previous["ingested_at"])
        if previous
        else (job.now or datetime.now(UTC))
    )
    accounting = FileAccounting(job.source_name or job.path.name, sha256, batch)
    staging = lake / "_staging" / f"{batch}-{uuid.uuid4().hex}"
    return _Staged(accounting, ingested_at, staging, {}, [], job.only_partitions, started)


def _chunk_rows(
    block: Block, staged: _Staged, regions: Sequence[str], models: Sequence[str]
) -> _ChunkRows:
    """Parse, upcast, identify and dedupe one block (reads `staged`, changes nothing: blocks
    of a file are worked side by side)."""
    accounting, ingested_at = staged.accounting, staged.ingested_at
    chunk = _parse(block)
    rows = upcast(chunk.records, regions=regions, models=models)
    rejected = None
    if rows.rejected.height:
        rejected = dead_letter_frame(
            with_message_identity(rows.rejected, chunk.records),
            source_file=accounting.source_file,
            source_sha256=accounting.sha256,
            ingested_at=ingested_at,
        )
    events = events_from(rows.valid, source_file=accounting.source_file, ingested_at=ingested_at)
    # Resends within the block here; across blocks when the file is published.
    fresh = events.filter(pl.col("record_id").is_first_distinct())
    duplicates = events.height - fresh.height
    if staged.only_partitions is not None:
        fresh = fresh.filter(pl.col("partition_key").is_in(list(staged.only_partitions)))
    parts = fresh.partition_by("partition_key", as_dict=True, maintain_order=True)
    return _ChunkRows(
        header_lines=chunk.header_lines,
        blank_lines=chunk.blank_lines,
        data_lines=chunk.records.height,
        duplicates=duplicates,
        rejected=rejected,
        parts={str(key): part for (key,), part in parts.items()},
    )


def _add_chunk(staged: _Staged, rows: _ChunkRows) -> None:
    """Add a block's rows to its file, in the file's order (parts are written as they come)."""
    accounting = staged.accounting
    accounting.header_lines += rows.header_lines
    accounting.blank_lines += rows.blank_lines
    accounting.data_lines += rows.data_lines
    accounting.duplicates += rows.duplicates
    if rows.rejected is not None:
        staged.rejected.append(rows.rejected)
    for key, part in rows.parts.items():
        writer = staged.staged.get(key)
        if writer is None:
            path = staged.staging / f"{len(staged.staged)}.parquet"
            writer = staged.staged[key] = lake_io.PartWriter(path)
        writer.append(part)


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
